//! Configuration: a TOML file (`deny_unknown_fields`) turned once into validated runtime types.
//!
//! Every problem is collected with its key, so `brygga check-config` reports them all at once.
//! Relative paths are resolved against the directory of the configuration file.

mod check;
mod clients;
pub mod example_keys;
mod file;
mod file_access;
mod runtime;
mod sections;
mod settings;

use check::*;
pub use file::*;
pub use file_access::*;
pub use runtime::*;
use sections::*;
pub use settings::*;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::access::identity::IdpKeys;
use crate::access::tls;
use crate::model::{Datakategori, Kommunkod, Operation, Organisationsnummer};

/// Connections brygga keeps open to others (AF, case systems, identity providers, the
/// collector) are dropped after this long unused: below the 5 s at which many servers close
/// idle ones (Node.js, Apache), so brygga does not send a request into a connection the far
/// end is closing.
pub const OUTBOUND_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// The values of `AF-Environment`.
pub const ENVIRONMENTS: [&str; 5] = ["U1", "I1", "T1", "T2", "PROD"];

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |key: &str, reason: String| ConfigError {
            file: path.to_owned(),
            problems: vec![Problem {
                key: key.to_owned(),
                reason,
            }],
        };
        let text = std::fs::read_to_string(path).map_err(|e| err("(file)", e.to_string()))?;
        let file: ConfigFile = toml::from_str(&text).map_err(|e| {
            let key = e
                .span()
                .map(|s| format!("line {}", text[..s.start].lines().count().max(1)))
                .unwrap_or_else(|| "(file)".into());
            err(&key, e.message().to_owned())
        })?;
        let dir = path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut config = Self::from_file(file, &dir).map_err(|problems| ConfigError {
            file: path.to_owned(),
            problems,
        })?;
        config.file = Some(path.to_owned());
        Ok(config)
    }

    /// The pseudonym keys as the configuration file lists them now (a reload: a key added to
    /// a domain writes from then on, and every key is searched).
    pub fn pseudonyms_now(&self) -> Result<crate::access::pseudo::Pseudonymizer, String> {
        let path = self
            .file
            .as_deref()
            .ok_or("the configuration was not read from a file")?;
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: ConfigFile =
            toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut c = Checker {
            dir: dir.to_owned(),
            problems: Vec::new(),
            loaded: Vec::new(),
        };
        let keys = pseudonym_keys(&mut c, &file.pseudonyms);
        match c.problems.first() {
            None => Ok(keys),
            Some(p) => Err(format!("{}: {}", p.key, p.reason)),
        }
    }

    /// The files the pseudonym keys are read from.
    pub fn pseudonym_files(&self) -> Vec<PathBuf> {
        self.pseudonym_files.clone()
    }

    /// Validates a parsed file; relative paths are taken from `dir`.
    pub fn from_file(f: ConfigFile, dir: &Path) -> Result<Config, Vec<Problem>> {
        let mut c = Checker {
            dir: dir.to_owned(),
            problems: Vec::new(),
            loaded: Vec::new(),
        };
        c.gateway(&f.gateway);
        let (kommun_bind, kommun, admin_bind, events) = c.listeners(&f);
        let af_rate = f
            .limits
            .af_rate
            .and_then(|r| c.rate("limits.af_rate".into(), r));
        let delivery = c.delivery(&f.delivery);
        let (af_tls, client_secret, retry_budget) = c.limits_and_af(&f);
        let telemetry = c.telemetry(&f.telemetry);
        let syften = c.syften(&f.syften);
        let pseudonyms = pseudonym_keys(&mut c, &f.pseudonyms);
        let pseudonym_files = f
            .pseudonyms
            .iter()
            .filter_map(|k| k.file.as_ref().map(|p| c.path(p)))
            .collect();
        let audit = c.audit(&f.audit);
        let (clients, endpoints) = c.clients(&f, &syften);

        let revocation = RevocationSettings {
            refresh: f.revocation.refresh,
            retry: f.revocation.retry,
            timeout: f.revocation.timeout,
            max_bytes: f.revocation.max_bytes,
            follow_distribution_points: f.revocation.follow_distribution_points,
            forget_unused_after: f.revocation.forget_unused_after,
        };
        match (kommun_bind, kommun, admin_bind, af_tls) {
            (Some(kb), Some((kommun, kommun_files)), Some(ab), Some((af_tls, af_files)))
                if c.problems.is_empty()
                    && let Some(events) = events
                    && let Some(delivery) = delivery =>
            {
                Ok(Config {
                    system_id: f.gateway.system_id,
                    environment: f.gateway.environment,
                    kommun_bind: kb,
                    kommun,
                    kommun_files,
                    reload_poll: f.gateway.reload_poll,
                    revocation,
                    file: None,
                    events,
                    delivery,
                    af_rate,
                    endpoints,
                    admin_bind: ab,
                    limits: f.limits,
                    af: AfSettings {
                        base_url: f.af.base_url.trim_end_matches('/').to_owned(),
                        tls: af_tls,
                        files: af_files,
                        token_url: f.af.token_url,
                        client_id: f.af.client_id,
                        client_secret,
                        timeout: f.af.timeout,
                        connect_timeout: f.af.connect_timeout,
                        breaker_failures: f.af.breaker_failures,
                        breaker_open: f.af.breaker_open,
                        retry_budget,
                        max_connections: f.af.max_connections,
                        max_connection_age: f.limits.max_connection_age,
                    },
                    jwks_refresh: f.jwt.jwks_refresh,
                    token_rules: TokenRules {
                        audience: f.jwt.audience,
                        leeway: f.jwt.leeway.as_secs(),
                        max_lifetime: f.jwt.max_lifetime.as_secs(),
                        replay_protection: f.jwt.replay_protection,
                    },
                    syften,
                    clients,
                    pseudonyms,
                    pseudonym_files,
                    audit,
                    certificates: std::mem::take(&mut c.loaded),
                    health: f.health,
                    log_level: f.log.level,
                    telemetry,
                })
            }
            _ => Err(c.problems),
        }
    }

    /// The client whose certificate carries this organisation number.
    pub fn client(&self, orgnr: &Organisationsnummer) -> Option<&Arc<Client>> {
        self.clients.iter().find(|c| c.orgnr == *orgnr)
    }
}
