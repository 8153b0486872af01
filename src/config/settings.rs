//! The settings other layers are built from, as plain values: rates and their quotas, how
//! CRLs are fetched, the token rules, the telemetry collector. They live here, below the
//! layers that use them, so that the configuration does not reach up into those layers.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;

/// Requests per second and how many may come at once above that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Rate {
    /// The governor quota, or why there is none (a zero).
    pub fn quota(self) -> Result<Quota, String> {
        let per_second = NonZeroU32::new(self.per_second).ok_or("per_second must be at least 1")?;
        let burst = NonZeroU32::new(self.burst).ok_or("burst must be at least 1")?;
        Ok(Quota::per_second(per_second).allow_burst(burst))
    }
}

/// A rate as configured, with its quota built once.
#[derive(Debug, Clone, Copy)]
pub struct Configured {
    pub rate: Rate,
    pub quota: Quota,
}

/// How CRLs are fetched (`[revocation]`).
#[derive(Debug, Clone)]
pub struct RevocationSettings {
    /// Fetched again at least this often (sooner when the CRL's next update comes first).
    pub refresh: Duration,
    /// After a failed fetch.
    pub retry: Duration,
    /// One fetch, connect to last byte.
    pub timeout: Duration,
    /// The largest CRL read.
    pub max_bytes: usize,
    /// Whether distribution points named in certificates are fetched (else only the URLs
    /// configured).
    pub follow_distribution_points: bool,
    /// A distribution point learned from a peer's certificate is forgotten, with its CRL, when
    /// no verified certificate has named it for this long.
    pub forget_unused_after: Duration,
}

impl Default for RevocationSettings {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(3600),
            retry: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            max_bytes: 10 * 1024 * 1024,
            follow_distribution_points: true,
            forget_unused_after: Duration::from_secs(24 * 3600),
        }
    }
}

/// How to reach the collector.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// The OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: String,
    pub service_name: String,
    /// CA bundle for an `https://` collector.
    pub ca: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub timeout: Duration,
}

/// The rules every token must meet, from the configuration.
#[derive(Debug, Clone)]
pub struct TokenRules {
    pub audience: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: u64,
    /// The longest lifetime (`exp - iat`) accepted, in seconds.
    pub max_lifetime: u64,
    /// Every token must carry a `jti`, and each is accepted once.
    pub replay_protection: bool,
}
