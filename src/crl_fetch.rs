//! CRLs brygga fetches itself: from the URLs the configuration lists and the distribution
//! points certificates name. Each is fetched with a deadline and a size limit, checked (a CRL
//! signed by a CA of the edge that wants it, not older than the one held), kept until a
//! better one comes, and fetched again before its next update or every `revocation.refresh`.
//! A failed fetch keeps the last good CRL and is tried again after `revocation.retry`; once
//! that CRL is past its next update, the certificates of its CA are refused (fail closed),
//! and `/readyz` says so. A new CRL wakes the gateway's reload, which also re-verifies the
//! connections already open.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use tokio::sync::{Notify, watch};

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
}

impl Default for RevocationSettings {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(3600),
            retry: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            max_bytes: 10 * 1024 * 1024,
            follow_distribution_points: true,
        }
    }
}

/// At most this many URLs are fetched: certificates name their distribution points, and a
/// CA's certificates name few.
pub const MAX_SOURCES: usize = 64;

#[derive(Debug, Clone)]
struct Held {
    der: CertificateRevocationListDer<'static>,
    this_update: i64,
    next_update: Option<i64>,
}

#[derive(Debug)]
struct Source {
    /// The edges that want it.
    edges: BTreeSet<String>,
    /// The CAs one of which must have signed it.
    issuers: Vec<CertificateDer<'static>>,
    held: Option<Held>,
    failures: u64,
    last_error: Option<String>,
    last_success: Option<SystemTime>,
    due: Instant,
}

/// What operators see of one source (`/metrics`, `/readyz`, the status page).
#[derive(Debug, Clone)]
pub struct SourceStatus {
    pub url: String,
    pub edges: Vec<String>,
    pub held: bool,
    /// Seconds until the held CRL's next update (negative: past it).
    pub next_update_in: Option<f64>,
    pub failures: u64,
    pub last_error: Option<String>,
    pub last_success: Option<SystemTime>,
}

impl SourceStatus {
    /// Why certificates of this source's CA are refused now, if they are.
    pub fn problem(&self) -> Option<String> {
        if !self.held {
            return Some(format!(
                "{}: no CRL fetched yet{}",
                self.url,
                self.last_error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
        }
        match self.next_update_in {
            Some(s) if s < 0.0 => Some(format!(
                "{}: the CRL held is past its next update and no newer one could be fetched{}",
                self.url,
                self.last_error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            )),
            _ => None,
        }
    }
}

/// The CRLs fetched from URLs, shared by every edge.
#[derive(Debug)]
pub struct CrlFetcher {
    settings: RevocationSettings,
    sources: Mutex<BTreeMap<String, Source>>,
    /// A new source is wanted.
    wake: Notify,
    /// A CRL changed: the gateway reloads.
    pub changed: Notify,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl CrlFetcher {
    pub fn new(settings: RevocationSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            sources: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            changed: Notify::new(),
        })
    }

    pub fn follows_distribution_points(&self) -> bool {
        self.settings.follow_distribution_points
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Source>> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for `url` on behalf of `edge`, whose CAs may have signed it. True when it was not
    /// wanted before (its first fetch is then due at once).
    pub fn want(&self, url: &str, edge: &str, issuers: &[CertificateDer<'static>]) -> bool {
        let mut sources = self.lock();
        if let Some(s) = sources.get_mut(url) {
            s.edges.insert(edge.to_owned());
            for i in issuers {
                if !s.issuers.contains(i) {
                    s.issuers.push(i.clone());
                }
            }
            return false;
        }
        if sources.len() >= MAX_SOURCES {
            tracing::warn!(
                url,
                max = MAX_SOURCES,
                "too many CRL sources; this one is not fetched"
            );
            return false;
        }
        sources.insert(
            url.to_owned(),
            Source {
                edges: BTreeSet::from([edge.to_owned()]),
                issuers: issuers.to_vec(),
                held: None,
                failures: 0,
                last_error: None,
                last_success: None,
                due: Instant::now(),
            },
        );
        drop(sources);
        self.wake.notify_one();
        true
    }

    /// The CRLs held for the sources `edge` wants, by URL.
    pub fn held_for(&self, edge: &str) -> Vec<(String, CertificateRevocationListDer<'static>)> {
        self.lock()
            .iter()
            .filter(|(_, s)| s.edges.contains(edge))
            .filter_map(|(u, s)| Some((u.clone(), s.held.as_ref()?.der.clone())))
            .collect()
    }

    /// Fetches what is due now, without waiting for the next round (a refused handshake
    /// needs a CRL not held yet).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Every source as operators see it.
    pub fn status(&self) -> Vec<SourceStatus> {
        let now = now_secs();
        self.lock()
            .iter()
            .map(|(url, s)| SourceStatus {
                url: url.clone(),
                edges: s.edges.iter().cloned().collect(),
                held: s.held.is_some(),
                next_update_in: s
                    .held
                    .as_ref()
                    .and_then(|h| h.next_update)
                    .map(|n| (n - now) as f64),
                failures: s.failures,
                last_error: s.last_error.clone(),
                last_success: s.last_success,
            })
            .collect()
    }

    /// Fetches every source that is due now.
    pub async fn fetch_due(&self) {
        let due: Vec<(String, Vec<CertificateDer<'static>>)> = {
            let now = Instant::now();
            self.lock()
                .iter()
                .filter(|(_, s)| s.due <= now)
                .map(|(u, s)| (u.clone(), s.issuers.clone()))
                .collect()
        };
        for (url, issuers) in due {
            let fetched = self.fetch(&url, &issuers).await;
            self.settle(&url, fetched);
        }
    }

    /// Fetches what is due until `shutdown`; a fetch of every wanted source is due at once.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            self.fetch_due().await;
            let next = self
                .lock()
                .values()
                .map(|s| s.due)
                .min()
                .unwrap_or_else(|| Instant::now() + self.settings.refresh);
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(next.into()) => {}
            }
        }
    }

    /// Keeps a fetched CRL (or the failure) and says when to fetch again.
    fn settle(&self, url: &str, fetched: Result<Held, String>) {
        let mut changed = false;
        {
            let mut sources = self.lock();
            let Some(s) = sources.get_mut(url) else {
                return;
            };
            let now = Instant::now();
            match fetched {
                Ok(new) => {
                    match &s.held {
                        Some(old) if new.this_update < old.this_update => {
                            s.failures += 1;
                            s.last_error = Some(
                                "the CRL served is older than the one held; the held one stays"
                                    .into(),
                            );
                        }
                        Some(old) if old.der == new.der => {
                            s.last_error = None;
                            s.last_success = Some(SystemTime::now());
                        }
                        _ => {
                            changed = true;
                            s.held = Some(new);
                            s.last_error = None;
                            s.last_success = Some(SystemTime::now());
                        }
                    }
                    // Again before the next update, or at the refresh, whichever is sooner.
                    let until_next = s
                        .held
                        .as_ref()
                        .and_then(|h| h.next_update)
                        .map(|n| Duration::from_secs((n - now_secs()).max(0) as u64))
                        .unwrap_or(self.settings.refresh);
                    s.due = now
                        + self
                            .settings
                            .refresh
                            .min(until_next)
                            .max(self.settings.retry.min(self.settings.refresh));
                }
                Err(e) => {
                    tracing::warn!(url, error = %e, "a CRL could not be fetched; the last good one stays");
                    s.failures += 1;
                    s.last_error = Some(e);
                    s.due = now + self.settings.retry;
                }
            }
        }
        if changed {
            tracing::info!(url, "a new CRL was fetched");
            self.changed.notify_one();
        }
    }

    async fn fetch(&self, url: &str, issuers: &[CertificateDer<'static>]) -> Result<Held, String> {
        let tls = crate::tls::client_config(issuers, None).map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.settings.timeout)
            .connect_timeout(self.settings.timeout)
            .build()
            .map_err(|e| e.to_string())?;
        let mut response = http
            .get(url)
            .send()
            .await
            .map_err(|e| crate::error::error_chain(&e))?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status().as_u16()));
        }
        let max = self.settings.max_bytes;
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(format!("larger than revocation.max_bytes ({max})"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| crate::error::error_chain(&e))?
        {
            if body.len() + chunk.len() > max {
                return Err(format!("larger than revocation.max_bytes ({max})"));
            }
            body.extend_from_slice(&chunk);
        }
        check(&body, issuers)
    }
}

/// A CRL as served (DER, or PEM), signed by one of `issuers`.
fn check(body: &[u8], issuers: &[CertificateDer<'static>]) -> Result<Held, String> {
    let der = if body.starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::pem_slice_iter(body)
            .next()
            .ok_or("PEM without an X509 CRL block")?
            .map_err(|e| format!("not a CRL: {e}"))?
    } else {
        CertificateRevocationListDer::from(body.to_vec())
    };
    let (_, crl) =
        x509_parser::parse_x509_crl(der.as_ref()).map_err(|e| format!("not a CRL: {e}"))?;
    let issuer = crl.issuer().as_raw();
    let signer = issuers
        .iter()
        .filter_map(|c| x509_parser::parse_x509_certificate(c.as_ref()).ok())
        .find(|(_, c)| c.subject().as_raw() == issuer)
        .ok_or("its issuer is not a CA of the edge that wants it")?;
    crl.verify_signature(signer.1.public_key())
        .map_err(|e| format!("its signature does not verify with its CA's key: {e}"))?;
    let held = Held {
        this_update: crl.last_update().timestamp(),
        next_update: crl.next_update().map(|t| t.timestamp()),
        der: der.clone(),
    };
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crl_must_be_signed_by_a_ca_of_the_edge() {
        let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-example");
        let kommun_ca = crate::tls::load_certs(&certs.join("kommun-ca.pem")).unwrap();
        let af_ca = crate::tls::load_certs(&certs.join("af-ca.pem")).unwrap();
        let pem = std::fs::read(certs.join("kommun-ca.crl.pem")).unwrap();
        assert!(check(&pem, &kommun_ca).is_ok());
        let der = CertificateRevocationListDer::pem_slice_iter(&pem)
            .next()
            .unwrap()
            .unwrap();
        assert!(check(der.as_ref(), &kommun_ca).is_ok());
        assert!(
            check(&pem, &af_ca)
                .unwrap_err()
                .contains("not a CA of the edge")
        );
        // One bit changed in the signed part.
        let mut forged = der.as_ref().to_vec();
        let at = forged.len() / 2;
        forged[at] ^= 1;
        assert!(check(&forged, &kommun_ca).is_err());
        assert!(check(b"garbage", &kommun_ca).is_err());
    }
}
