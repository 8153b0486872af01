//! The gateway process: its shared state, starting and stopping its listeners, and reloading
//! what may change while it runs (certificates, keys, CRLs, JWKS, pseudonym keys).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::access::crl_fetch::CrlFetcher;
use crate::access::identity::VerifiedTokens;
use crate::access::pseudo::Pseudonymizer;
use crate::config::{Config, TlsMaterial};
use crate::contract::xml::XmlLimits;
use crate::gateway::server::{self, ConnLimits, ListenerTls};
use crate::gateway::tls::{self, DeliveryClients, Held};
use crate::gateway::upstream::AfClient;
use crate::gateway::{delivery, events, exchange};
use crate::ops::admin;
use crate::store::audit::AuditLog;
use crate::store::outbox::Outbox;
use crate::store::subscriptions::Subscriptions;

/// State shared by every request.
pub struct Gateway {
    pub config: Config,
    /// The listeners' TLS, swapped on reload; each swap verifies the open connections again.
    pub kommun_tls: watch::Sender<Arc<ListenerTls>>,
    pub af_listener_tls: watch::Sender<Arc<ListenerTls>>,
    pub af: AfClient,
    /// The clients towards the case systems' endpoints, swapped on reload.
    delivery_clients: RwLock<Arc<DeliveryClients>>,
    /// CRLs fetched from URLs, for every edge.
    pub crls: Arc<CrlFetcher>,
    /// The pseudonym keys, swapped on reload.
    pseudonyms: RwLock<Arc<Pseudonymizer>>,
    /// The certificates and CRLs each reloadable piece holds now, for expiry figures.
    held: RwLock<BTreeMap<&'static str, Held>>,
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
    pub delivery_stats: Arc<delivery::DeliveryStats>,
    /// Rates per client and operation, requests under way, the quota towards AF.
    pub limiter: crate::access::limit::Limiter,
    /// What operators see on `/metrics` and `/status`.
    pub metrics: Arc<crate::ops::metrics::Metrics>,
    /// The last `/readyz` answer, reused briefly.
    pub readiness: admin::ReadinessCache,
    /// Spans to an OpenTelemetry collector, when `[telemetry]` names one.
    pub telemetry: Option<crate::ops::telemetry::Exporter>,
    /// Held while the gateway runs: one gateway per store (its writer and its delivery worker
    /// assume they are alone).
    _store_lock: std::fs::File,
}

/// Every piece of the gateway's TLS, built from its material and the CRLs held now.
struct Pieces {
    kommun: Result<(Arc<ListenerTls>, Held), String>,
    af_listener: Result<(Arc<ListenerTls>, Held), String>,
    af: Result<(rustls::ClientConfig, Held), String>,
    delivery: (DeliveryClients, Held, Vec<String>),
}

/// The material of each piece as configured (at start), or read again from its files (on
/// reload; a piece whose files fail to load keeps its place as an error).
struct Material {
    kommun: Result<TlsMaterial, String>,
    af_listener: Result<TlsMaterial, String>,
    af: Result<TlsMaterial, String>,
    delivery: Result<
        (
            crate::config::CertAndKey,
            BTreeMap<String, crate::config::ClientDelivery>,
        ),
        String,
    >,
}

impl Material {
    fn configured(config: &Config) -> Self {
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

    fn build(self, config: &Config, fetcher: &Arc<CrlFetcher>) -> Pieces {
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

/// A started gateway: where it listens, and how to stop it.
pub struct RunningGateway {
    pub kommun_addr: SocketAddr,
    /// The `af` listener, where AF pushes its events.
    pub af_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The event outbox, for operators' tools and tests.
    pub outbox: Arc<Outbox>,
    pub delivery_stats: Arc<delivery::DeliveryStats>,
    /// Reads tried once more towards AF.
    pub af_retries: Arc<std::sync::atomic::AtomicU64>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl RunningGateway {
    /// Stops accepting, lets in-flight requests finish, and returns when all listeners are done.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Binds every listener (so the addresses are known and connectable when this returns) and
/// starts serving.
pub async fn start(config: Config) -> Result<RunningGateway, String> {
    let fetcher = CrlFetcher::new(config.revocation.clone());
    let mut pieces = Material::configured(&config).build(&config, &fetcher);
    // CRLs named by URL are fetched before the first connection: until then their CAs'
    // certificates would be refused.
    if fetcher.status().iter().any(|s| !s.held) {
        let _ = tokio::time::timeout(
            config.revocation.timeout + std::time::Duration::from_secs(1),
            fetcher.fetch_due(),
        )
        .await;
        pieces = Material::configured(&config).build(&config, &fetcher);
    }
    let (kommun_tls, kommun_held) = pieces
        .kommun
        .map_err(|e| format!("kommun listener TLS: {e}"))?;
    let (af_listener_tls, af_listener_held) = pieces
        .af_listener
        .map_err(|e| format!("af listener TLS: {e}"))?;
    let (af_tls, af_held) = pieces.af.map_err(|e| format!("TLS towards AF: {e}"))?;
    let (delivery_clients, delivery_held, problems) = pieces.delivery;
    for p in problems {
        tracing::error!(problem = %p, "no delivery client; those events wait in the outbox");
    }
    let af = AfClient::new(
        config.af.clone(),
        af_tls,
        &config.system_id,
        &config.environment,
    )
    .map_err(|e| format!("AF client: {e}"))?;
    let audit = AuditLog::start(
        &config.audit.store,
        Some(&config.audit.signing_key),
        config.audit.policy.clone(),
    )
    .map_err(|e| format!("{}: {e}", config.audit.store.display()))?;
    // After the audit log made the store's directory (0700).
    let store_lock = lock_store(&config.audit.store)?;
    let subscriptions = Arc::new(
        Subscriptions::open(&config.audit.store)
            .map_err(|e| format!("{}: {e}", config.audit.store.display()))?,
    );
    let outbox = Arc::new(
        Outbox::open(&config.audit.store)
            .map_err(|e| format!("{}: {e}", config.audit.store.display()))?,
    );
    let kommun = server::bind(config.kommun_bind, "kommun").await?;
    let af_listener = server::bind(config.events.bind, "af").await?;
    let af_addr = af_listener.local_addr().map_err(|e| e.to_string())?;
    let admin = server::bind(config.admin_bind, "admin").await?;
    let kommun_addr = kommun.local_addr().map_err(|e| e.to_string())?;
    let admin_addr = admin.local_addr().map_err(|e| e.to_string())?;
    let limits = ConnLimits {
        handshake_timeout: config.limits.tls_handshake_timeout,
        header_read_timeout: config.limits.header_read_timeout,
        keep_alive_timeout: config.limits.keep_alive_timeout,
        max_connections: config.limits.max_connections,
        max_per_certificate: config.limits.max_connections_per_certificate,
        max_connection_age: config.limits.max_connection_age,
        max_pending_per_connection: config.limits.max_pending_bytes_per_connection,
        max_pending_per_certificate: config.limits.max_pending_bytes_per_certificate,
        handshakes: crate::gateway::admission::HandshakeLimits {
            max: config.limits.max_handshakes,
            per_address: config.limits.max_handshakes_per_address,
            rate_per_address: config.limits.new_connections_per_address.quota().ok(),
        },
        ..ConnLimits::default()
    };
    let limiter = crate::access::limit::Limiter::new(&config);
    let metrics = Arc::new(crate::ops::metrics::Metrics::new(
        audit.stats.commit_seconds.clone(),
    ));
    metrics.prepare(&config);
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let telemetry = match config.telemetry.clone() {
        Some(settings) => {
            let (exporter, task) = crate::ops::telemetry::Exporter::start(settings, rx.clone())
                .map_err(|e| format!("telemetry: {e}"))?;
            tasks.spawn(async move {
                let _ = task.await;
            });
            Some(exporter)
        }
        None => None,
    };
    let (kommun_tls, kommun_watch) = watch::channel(kommun_tls);
    let (af_listener_tls, af_listener_watch) = watch::channel(af_listener_tls);
    let gw = Arc::new(Gateway {
        telemetry,
        metrics,
        readiness: admin::ReadinessCache::default(),
        kommun_tls,
        af_listener_tls,
        delivery_clients: RwLock::new(Arc::new(delivery_clients)),
        crls: fetcher.clone(),
        pseudonyms: RwLock::new(Arc::new(config.pseudonyms.clone())),
        event_batches: tokio::sync::Semaphore::new(config.events.max_batches_in_flight),
        held: RwLock::new(BTreeMap::from([
            ("kommun", kommun_held),
            ("af-listener", af_listener_held),
            ("af", af_held),
            ("delivery", delivery_held),
        ])),
        config,
        af,
        xml_limits: XmlLimits::default(),
        tokens: VerifiedTokens::new(10_000),
        audit,
        subscriptions,
        outbox,
        delivery_wake: Arc::new(tokio::sync::Notify::new()),
        erasures_due: std::sync::atomic::AtomicBool::new(true),
        delivery_stats: Arc::default(),
        limiter,
        _store_lock: store_lock,
    });
    // Each listener counts its open connections in its own gauge.
    let on = |listener: &'static str, refuse: server::Refuse| ConnLimits {
        refuse,
        observe: Some(server::ListenerMetrics {
            listener,
            open: gw
                .metrics
                .open_connections
                .get_or_create(&crate::ops::metrics::ListenerLabels { listener })
                .clone(),
            handshaking: gw
                .metrics
                .handshakes_in_progress
                .get_or_create(&crate::ops::metrics::ListenerLabels { listener })
                .clone(),
            closed_early: gw.metrics.connections_closed_early.clone(),
        }),
        ..limits.clone()
    };
    let g = gw.clone();
    tasks.spawn(server::serve_tls(
        kommun,
        kommun_watch,
        on("kommun", exchange::refused_by_http),
        rx.clone(),
        move |peer, req| exchange::serve_kommun(g.clone(), peer, req),
    ));
    let g = gw.clone();
    tasks.spawn(server::serve_tls(
        af_listener,
        af_listener_watch,
        on("af", events::refused_by_http),
        rx.clone(),
        move |peer, req| events::serve_af(g.clone(), peer, req),
    ));
    tasks.spawn(delivery::run(gw.clone(), rx.clone()));
    tasks.spawn(fetcher.run(rx.clone()));
    tasks.spawn(watch_for_reload(gw.clone(), rx.clone()));
    // Remote JWKS: fetched once now, then kept fresh.
    for client in gw.config.clients.iter().filter(|c| c.idp.is_remote()) {
        if let Err(e) = client.idp.refresh().await {
            tracing::warn!(client = %client.name, error = %e, "JWKS could not be fetched; this client's tokens are refused until it can");
        }
        let (client, mut stop, every) = (client.clone(), rx.clone(), gw.config.jwks_refresh);
        tasks.spawn(async move {
            loop {
                let stopped = async {
                    let _ = stop.wait_for(|s| *s).await;
                };
                tokio::select! {
                    _ = stopped => return,
                    _ = tokio::time::sleep(every) => {
                        if let Err(e) = client.idp.refresh().await {
                            tracing::warn!(client = %client.name, error = %e, "JWKS refresh failed; the keys in use stay");
                        }
                    }
                }
            }
        });
    }
    let g = gw.clone();
    let admin_limits = on("admin", ConnLimits::default().refuse);
    tasks.spawn(server::serve_plain(admin, admin_limits, rx, move |req| {
        admin::serve_admin(g.clone(), req)
    }));
    tracing::info!(%kommun_addr, %af_addr, %admin_addr, "brygga is serving");
    Ok(RunningGateway {
        kommun_addr,
        af_addr,
        admin_addr,
        outbox: gw.outbox.clone(),
        delivery_stats: gw.delivery_stats.clone(),
        af_retries: gw.af.retry_count.clone(),
        shutdown,
        tasks,
    })
}

/// Takes the store's lock file (`<store>.lock`), or says which store another gateway holds.
fn lock_store(store: &std::path::Path) -> Result<std::fs::File, String> {
    let mut name = store.as_os_str().to_owned();
    name.push(".lock");
    let path = std::path::PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "{}: another brygga gateway is using this store; one gateway per store",
            store.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("{}: {e}", path.display())),
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
    fn watched_files(&self) -> Vec<std::path::PathBuf> {
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
fn stamp(files: &[std::path::PathBuf]) -> Vec<Option<(std::time::SystemTime, u64)>> {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// Reloads on SIGHUP and when a watched file changes, until shutdown.
async fn watch_for_reload(gw: Arc<Gateway>, mut shutdown: watch::Receiver<bool>) {
    let files = gw.watched_files();
    let mut last = stamp(&files);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let reason = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = hangup => "SIGHUP",
            _ = gw.crls.changed.notified() => "a new CRL was fetched",
            _ = tokio::time::sleep(gw.config.reload_poll) => {
                let now = stamp(&files);
                if now != last {
                    last = now;
                    "a file changed"
                } else if gw.delivery_clients().age() >= gw.config.limits.max_connection_age {
                    // Pooled connections to the case systems do not outlive it either.
                    "connections reached limits.max_connection_age"
                } else {
                    continue;
                }
            }
        };
        let mut problems = gw.reload();
        gw.metrics
            .reload_problems
            .set(i64::try_from(problems.len()).unwrap_or(i64::MAX));
        if reason == "SIGHUP" {
            // An operator's SIGHUP also fetches remote JWKS now.
            for client in gw.config.clients.iter().filter(|c| c.idp.is_remote()) {
                if let Err(e) = client.idp.refresh().await {
                    problems.push(format!("client {}: {e}", client.name));
                }
            }
        }
        if problems.is_empty() {
            tracing::info!(
                reason,
                "certificates, keys, CRLs, JWKS and pseudonym keys reloaded"
            );
        } else {
            for p in problems {
                tracing::warn!(reason, problem = %p, "reload kept the previous version");
            }
        }
    }
}
