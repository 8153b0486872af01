//! The gateway's shared state (`start.rs` starts and stops it), and reloading
//! what may change while it runs (certificates, keys, CRLs, JWKS, pseudonym keys).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::access::crl_fetch::CrlFetcher;
use crate::access::identity::VerifiedTokens;
use crate::access::pseudo::Pseudonymizer;
use crate::config::{Config, TlsMaterial};
use crate::contract::xml::XmlLimits;
use crate::gateway::server::ListenerTls;
use crate::gateway::tls::{self, DeliveryClients, Held};
use crate::gateway::upstream::AfClient;
use crate::ops::status_page::ReadinessCache;
use crate::store::audit::AuditLog;
use crate::store::outbox::Outbox;
use crate::store::subscriptions::Subscriptions;

/// What the delivery worker (`delivery.rs`) has done since start, for metrics.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Receipted deliveries.
    pub delivered: std::sync::atomic::AtomicU64,
    /// Attempts that failed (reached or not); each is retried or given up.
    pub failed: std::sync::atomic::AtomicU64,
    /// Deliveries given up (dead-lettered).
    pub given_up: std::sync::atomic::AtomicU64,
}

/// State shared by every request.
pub struct Gateway {
    pub config: Config,
    /// The listeners' TLS, swapped on reload; each swap verifies the open connections again.
    pub kommun_tls: watch::Sender<Arc<ListenerTls>>,
    pub af_listener_tls: watch::Sender<Arc<ListenerTls>>,
    pub af: AfClient,
    /// The clients towards the case systems' endpoints, swapped on reload.
    pub(crate) delivery_clients: RwLock<Arc<DeliveryClients>>,
    /// CRLs fetched from URLs, for every edge.
    pub crls: Arc<CrlFetcher>,
    /// The pseudonym keys, swapped on reload.
    pub(crate) pseudonyms: RwLock<Arc<Pseudonymizer>>,
    /// The certificates and CRLs each reloadable piece holds now, for expiry figures.
    pub(crate) held: RwLock<BTreeMap<&'static str, Held>>,
    pub xml_limits: XmlLimits,
    /// Case-worker tokens already verified, until they expire.
    pub tokens: VerifiedTokens,
    /// The audit chain's writer: every answer waits for its record to be durable.
    pub audit: AuditLog,
    /// Who follows which person's events, in the same store.
    pub subscriptions: Arc<Subscriptions>,
    /// AF's events and their deliveries, in the same store.
    pub outbox: Arc<Outbox>,
    /// Wakes the delivery worker when new deliveries are stored.
    pub delivery_wake: Arc<tokio::sync::Notify>,
    /// Event batches being read on the `af` listener (`events.max_batches_in_flight`).
    pub event_batches: tokio::sync::Semaphore,
    /// A payload was erased and the store's files may still hold it: the delivery worker
    /// empties the write-ahead log (see [`Outbox::erase_from_files`]). True at start, for
    /// what a killed gateway erased last.
    pub erasures_due: std::sync::atomic::AtomicBool,
    pub delivery_stats: Arc<DeliveryStats>,
    /// Rates per client and operation, requests under way, the quota towards AF.
    pub limiter: crate::access::limit::Limiter,
    /// What operators see on `/metrics` and `/status`.
    pub metrics: Arc<crate::ops::metrics::Metrics>,
    /// The last `/readyz` answer, reused briefly.
    pub readiness: ReadinessCache,
    /// Spans to an OpenTelemetry collector, when `[telemetry]` names one.
    pub telemetry: Option<crate::ops::telemetry::Exporter>,
    /// Held while the gateway runs: one gateway per store (its writer and its delivery worker
    /// assume they are alone).
    pub(crate) _store_lock: std::fs::File,
}

/// Every piece of the gateway's TLS, built from its material and the CRLs held now.
pub(crate) struct Pieces {
    pub(crate) kommun: Result<(Arc<ListenerTls>, Held), String>,
    pub(crate) af_listener: Result<(Arc<ListenerTls>, Held), String>,
    pub(crate) af: Result<(rustls::ClientConfig, Held), String>,
    pub(crate) delivery: (DeliveryClients, Held, Vec<String>),
}

/// The material of each piece as configured (at start), or read again from its files (on
/// reload; a piece whose files fail to load keeps its place as an error).
pub(crate) struct Material {
    pub(crate) kommun: Result<TlsMaterial, String>,
    pub(crate) af_listener: Result<TlsMaterial, String>,
    pub(crate) af: Result<TlsMaterial, String>,
    pub(crate) delivery: Result<
        (
            crate::config::CertAndKey,
            BTreeMap<String, crate::config::ClientDelivery>,
        ),
        String,
    >,
}

impl Material {
    pub(crate) fn configured(config: &Config) -> Self {
        Self {
            kommun: Ok(config.kommun.clone()),
            af_listener: Ok(config.events.tls.clone()),
            af: Ok(config.af.tls.clone()),
            delivery: Ok((config.delivery.identity.clone(), config.endpoints.clone())),
        }
    }

    fn from_files(config: &Config) -> Self {
        Self {
            kommun: config.kommun_files.load(),
            af_listener: config.events.files.load(),
            af: config.af.files.load(),
            delivery: config
                .delivery
                .identity_files
                .load()
                .and_then(|identity| Ok((identity, tls::reread_endpoints(&config.endpoints)?))),
        }
    }

    pub(crate) fn build(self, config: &Config, fetcher: &Arc<CrlFetcher>) -> Pieces {
        let listener = |m: Result<TlsMaterial, String>,
                        files: &crate::config::TlsFiles,
                        cert_key: &str,
                        ca_key: &str| {
            m.and_then(|m| {
                let identity = m.identity.clone();
                let (tls, edge) = tls::listener(&files.trust, m, fetcher)?;
                Ok((tls, Held::of(cert_key, &identity, ca_key, &edge)))
            })
        };
        let af = self.af.and_then(|m| {
            let (tls, edge) = tls::client(
                &config.af.files.trust,
                m.roots,
                m.crls,
                &m.identity,
                fetcher,
            )?;
            Ok((tls, Held::of("af.client_cert", &m.identity, "af.ca", &edge)))
        });
        let delivery = match self.delivery {
            Ok((identity, endpoints)) => {
                let (clients, problems) =
                    DeliveryClients::build(&identity, &endpoints, config.delivery.timeout, fetcher);
                let mut held = Held {
                    certificates: tls::named("delivery.client_cert", &identity.chain),
                    ..Held::default()
                };
                for edge in &clients.edges {
                    held.certificates
                        .extend(tls::named(&format!("{}.ca", edge.name), &edge.roots));
                    held.crls.extend(edge.crls.iter().cloned());
                    held.problems.extend(edge.problems.iter().cloned());
                }
                (clients, held, problems)
            }
            Err(e) => (
                DeliveryClients::build(
                    &config.delivery.identity,
                    &BTreeMap::new(),
                    config.delivery.timeout,
                    fetcher,
                )
                .0,
                Held::default(),
                vec![format!("delivery: {e}")],
            ),
        };
        Pieces {
            kommun: listener(
                self.kommun,
                &config.kommun_files,
                "kommun.cert",
                "kommun.client_ca",
            ),
            af_listener: listener(
                self.af_listener,
                &config.events.files,
                "events.cert",
                "events.client_ca",
            ),
            af,
            delivery,
        }
    }
}

impl Gateway {
    /// The pseudonym keys of the moment.
    pub fn pseudonyms(&self) -> Arc<Pseudonymizer> {
        self.pseudonyms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The clients towards the case systems of the moment.
    pub fn delivery_clients(&self) -> Arc<DeliveryClients> {
        self.delivery_clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn hold(&self, piece: &'static str, held: Held) {
        self.held
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(piece, held);
    }

    /// Reads every certificate, key, CRL, JWKS and pseudonym key again, and takes the CRLs
    /// fetched since. Each piece on its own: one whose file fails to load keeps the version
    /// in use (a half-written file never takes a listener down) and is named among the
    /// problems. Connections already open on a listener are verified again with what it
    /// loaded; requests in flight finish with what they started with.
    pub fn reload(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let pieces = Material::from_files(&self.config).build(&self.config, &self.crls);
        match pieces.kommun {
            Ok((tls, held)) => {
                self.kommun_tls.send_replace(tls);
                problems.extend(held.problems.iter().cloned());
                self.hold("kommun", held);
            }
            Err(e) => problems.push(format!("kommun listener TLS: {e}")),
        }
        match pieces.af_listener {
            Ok((tls, held)) => {
                self.af_listener_tls.send_replace(tls);
                problems.extend(held.problems.iter().cloned());
                self.hold("af-listener", held);
            }
            Err(e) => problems.push(format!("af listener TLS: {e}")),
        }
        match pieces.af.and_then(|(tls, held)| {
            self.af.set_tls(tls)?;
            Ok(held)
        }) {
            Ok(held) => {
                problems.extend(held.problems.iter().cloned());
                self.hold("af", held)
            }
            Err(e) => problems.push(format!("TLS towards AF: {e}")),
        }
        let (clients, held, delivery_problems) = pieces.delivery;
        problems.extend(held.problems.iter().cloned());
        if delivery_problems.is_empty() {
            *self
                .delivery_clients
                .write()
                .unwrap_or_else(|p| p.into_inner()) = Arc::new(clients);
            self.hold("delivery", held);
        } else {
            problems.extend(delivery_problems);
        }
        match std::fs::read(&self.config.audit.signing_key_file)
            .map_err(|e| e.to_string())
            .and_then(|pem| self.audit.set_signing_key(&pem).map_err(|e| e.to_string()))
        {
            Ok(Some(kid)) => {
                tracing::info!(key_id = %kid, "audit checkpoints are signed with a new key from now on")
            }
            Ok(None) => {}
            Err(e) => problems.push(format!(
                "audit.signing_key {}: {e}",
                self.config.audit.signing_key_file.display()
            )),
        }
        match self.config.pseudonyms_now() {
            Ok(keys) => {
                let refused = self.pseudonyms().refusals(&keys);
                if refused.is_empty() {
                    *self.pseudonyms.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys)
                } else {
                    problems.extend(refused.into_iter().map(|r| format!("pseudonyms: {r}")));
                }
            }
            Err(e) => problems.push(format!("pseudonyms: {e}")),
        }
        for client in &self.config.clients {
            if let Err(e) = client.idp.reload() {
                problems.push(format!("client {}: {e}", client.name));
            }
        }
        // A key removed from a JWKS must not live on in the cache of verified tokens.
        self.tokens.clear();
        problems
    }

    /// Every certificate and CRL in use now, soonest expiry first: each reloadable piece's
    /// as last loaded, the rest as configured at start.
    pub fn expiries(&self) -> Vec<crate::ops::metrics::Expiry> {
        const RELOADED: [&str; 5] = ["kommun.", "events.", "af.", "delivery.", "clients["];
        let mut certificates: Vec<_> = self
            .config
            .certificates
            .iter()
            .filter(|c| !RELOADED.iter().any(|p| c.name.starts_with(p)) || c.name.contains(".idp."))
            .cloned()
            .collect();
        let mut crls = Vec::new();
        for held in self.held.read().unwrap_or_else(|p| p.into_inner()).values() {
            certificates.extend(held.certificates.iter().cloned());
            crls.extend(held.crls.iter().cloned());
        }
        // Identity-provider keys that came with a certificate (x5c), as fetched or read now.
        for client in &self.config.clients {
            for (i, der) in client.idp.key_certificates() {
                certificates.push(crate::config::NamedCertificate {
                    name: format!("clients.{}.jwks[{i}]", client.name),
                    der,
                });
            }
        }
        crate::ops::metrics::expiries(&certificates, &crls)
    }

    /// Every file a reload reads.
    pub(crate) fn watched_files(&self) -> Vec<std::path::PathBuf> {
        let c = &self.config;
        let mut files = c.kommun_files.all();
        files.extend(c.events.files.all());
        files.extend(c.af.files.all());
        files.extend(c.delivery.identity_files.all());
        for e in c.endpoints.values() {
            files.extend(e.trust.files());
        }
        files.push(c.audit.signing_key_file.clone());
        files.extend(c.pseudonym_files());
        files.extend(c.file.iter().cloned());
        files.extend(
            c.clients
                .iter()
                .filter_map(|c| c.idp.jwks_file().map(Path::to_owned)),
        );
        files.sort();
        files.dedup();
        files
    }
}

/// What a file looks like from outside: changes when it is replaced or rewritten.
pub(crate) fn stamp(files: &[std::path::PathBuf]) -> Vec<Option<(std::time::SystemTime, u64)>> {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}
