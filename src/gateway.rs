//! The gateway process: its shared state, and starting and stopping its listeners.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::audit::AuditLog;
use crate::codec::xml::XmlLimits;
use crate::config::Config;
use crate::identity::VerifiedTokens;
use crate::outbox::Outbox;
use crate::server::{self, ConnLimits, SharedTls};
use crate::subscriptions::Subscriptions;
use crate::upstream::AfClient;
use crate::{delivery, events, exchange, ops, tls};

/// State shared by every request.
pub struct Gateway {
    pub config: Config,
    /// The `kommun` listener's TLS configuration, swapped on reload.
    pub kommun_tls: SharedTls,
    pub af: AfClient,
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
    /// A payload was erased and the store's files may still hold it: the delivery worker
    /// empties the write-ahead log (see [`Outbox::erase_from_files`]). True at start, for
    /// what a killed gateway erased last.
    pub erasures_due: std::sync::atomic::AtomicBool,
    pub delivery_stats: Arc<delivery::DeliveryStats>,
    /// Rates per client and operation, requests under way, the quota towards AF.
    pub limiter: crate::limit::Limiter,
    /// What operators see on `/metrics` and `/status`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The last `/readyz` answer, reused briefly.
    pub readiness: ops::ReadinessCache,
    /// Spans to an OpenTelemetry collector, when `[telemetry]` names one.
    pub telemetry: Option<crate::telemetry::Exporter>,
    /// The `kommun` listener's certificates and CRLs as last (re)loaded, for expiry.
    kommun_inventory: std::sync::RwLock<KommunInventory>,
    /// Held while the gateway runs: one gateway per store (its writer and its delivery worker
    /// assume they are alone).
    _store_lock: std::fs::File,
}

/// Certificates named as the configuration names them (`key`, or `key[i]` for a bundle).
fn named(
    key: &str,
    certs: Vec<rustls_pki_types::CertificateDer<'static>>,
) -> Vec<crate::config::NamedCertificate> {
    let many = certs.len() > 1;
    certs
        .into_iter()
        .enumerate()
        .map(|(i, der)| crate::config::NamedCertificate {
            name: if many {
                format!("{key}[{i}]")
            } else {
                key.to_owned()
            },
            der,
        })
        .collect()
}

/// The `kommun` listener's certificates and CRLs, as loaded.
struct KommunInventory {
    certificates: Vec<crate::config::NamedCertificate>,
    crls: Vec<rustls_pki_types::CertificateRevocationListDer<'static>>,
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
    let tls_config = tls::mtls_server_config(
        config.kommun_tls.chain.clone(),
        config.kommun_tls.key.clone_key(),
        &config.kommun_client_ca,
        &config.kommun_client_crls,
    )
    .map_err(|e| format!("kommun listener TLS: {e}"))?;
    let kommun_tls: SharedTls = Arc::new(std::sync::RwLock::new(Arc::new(tls_config)));
    let af = AfClient::new(config.af.clone(), &config.system_id, &config.environment)
        .map_err(|e| format!("AF client: {e}"))?;
    let audit = AuditLog::start(
        &config.audit.store,
        Some(&config.audit.signing_key),
        config.audit.policy,
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
    let af_tls: SharedTls = Arc::new(std::sync::RwLock::new(config.events.tls.clone()));
    let admin = server::bind(config.admin_bind, "admin").await?;
    let kommun_addr = kommun.local_addr().map_err(|e| e.to_string())?;
    let admin_addr = admin.local_addr().map_err(|e| e.to_string())?;
    let limits = ConnLimits {
        handshake_timeout: config.limits.tls_handshake_timeout,
        header_read_timeout: config.limits.header_read_timeout,
        keep_alive_timeout: config.limits.keep_alive_timeout,
        max_connections: config.limits.max_connections,
        max_per_certificate: config.limits.max_connections_per_certificate,
        max_pending_per_connection: config.limits.max_pending_bytes_per_connection,
        max_pending_per_certificate: config.limits.max_pending_bytes_per_certificate,
        handshakes: crate::admission::HandshakeLimits {
            max: config.limits.max_handshakes,
            per_address: config.limits.max_handshakes_per_address,
            rate_per_address: config.limits.new_connections_per_address.quota().ok(),
        },
        ..ConnLimits::default()
    };
    let limiter = crate::limit::Limiter::new(&config);
    let metrics = Arc::new(crate::metrics::Metrics::new(
        audit.stats.commit_seconds.clone(),
    ));
    metrics.prepare(&config);
    let kommun_inventory = std::sync::RwLock::new(KommunInventory {
        certificates: config
            .certificates
            .iter()
            .filter(|c| c.name.starts_with("kommun."))
            .cloned()
            .collect(),
        crls: config.kommun_client_crls.clone(),
    });
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let telemetry = match config.telemetry.clone() {
        Some(settings) => {
            let (exporter, task) = crate::telemetry::Exporter::start(settings, rx.clone())
                .map_err(|e| format!("telemetry: {e}"))?;
            tasks.spawn(async move {
                let _ = task.await;
            });
            Some(exporter)
        }
        None => None,
    };
    let gw = Arc::new(Gateway {
        telemetry,
        kommun_inventory,
        metrics,
        readiness: ops::ReadinessCache::default(),
        kommun_tls: kommun_tls.clone(),
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
                .get_or_create(&crate::metrics::ListenerLabels { listener })
                .clone(),
            handshaking: gw
                .metrics
                .handshakes_in_progress
                .get_or_create(&crate::metrics::ListenerLabels { listener })
                .clone(),
            closed_early: gw.metrics.connections_closed_early.clone(),
        }),
        ..limits.clone()
    };
    let g = gw.clone();
    tasks.spawn(server::serve_tls(
        kommun,
        kommun_tls,
        on("kommun", exchange::refused_by_http),
        rx.clone(),
        move |peer, req| exchange::serve_kommun(g.clone(), peer, req),
    ));
    let g = gw.clone();
    tasks.spawn(server::serve_tls(
        af_listener,
        af_tls,
        on("af", events::refused_by_http),
        rx.clone(),
        move |peer, req| events::serve_af(g.clone(), peer, req),
    ));
    tasks.spawn(delivery::run(gw.clone(), rx.clone()));
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
        ops::serve_admin(g.clone(), req)
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
    /// Reads certificates, keys, CRLs and JWKS files again. What fails to load keeps the
    /// version in use, so a half-written file never takes the listener down; requests in flight
    /// finish with what they started with.
    pub fn reload(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.config.kommun_files.load() {
            Ok(loaded) => {
                let swapped = match self.kommun_tls.write() {
                    Ok(mut current) => {
                        *current = Arc::new(loaded.config);
                        true
                    }
                    Err(_) => {
                        problems.push("kommun TLS: the lock is poisoned".to_owned());
                        false
                    }
                };
                // What is in use now, as parsed for it: the expiry figures follow.
                if swapped && let Ok(mut inventory) = self.kommun_inventory.write() {
                    let mut certificates = named("kommun.cert", loaded.chain);
                    certificates.extend(named("kommun.client_ca", loaded.client_ca));
                    *inventory = KommunInventory {
                        certificates,
                        crls: loaded.crls,
                    };
                }
            }
            Err(e) => problems.push(format!("kommun TLS: {e}")),
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

    /// Every certificate and CRL in use now, soonest expiry first: the `kommun` listener's
    /// as last reloaded, the rest as configured at start.
    pub fn expiries(&self) -> Vec<crate::metrics::Expiry> {
        let inventory = self
            .kommun_inventory
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut certificates: Vec<_> = self
            .config
            .certificates
            .iter()
            .filter(|c| !c.name.starts_with("kommun."))
            .cloned()
            .collect();
        certificates.extend(inventory.certificates.iter().cloned());
        // Identity-provider keys that came with a certificate (x5c), as fetched or read now.
        for client in &self.config.clients {
            for (i, der) in client.idp.key_certificates() {
                certificates.push(crate::config::NamedCertificate {
                    name: format!("clients.{}.jwks[{i}]", client.name),
                    der,
                });
            }
        }
        crate::metrics::expiries(&certificates, &inventory.crls)
    }

    /// Every file a reload reads.
    fn watched_files(&self) -> Vec<std::path::PathBuf> {
        let mut files = self.config.kommun_files.all();
        files.extend(
            self.config
                .clients
                .iter()
                .filter_map(|c| c.idp.jwks_file().map(Path::to_owned)),
        );
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
            _ = tokio::time::sleep(gw.config.reload_poll) => {
                let now = stamp(&files);
                if now == last {
                    continue;
                }
                last = now;
                "a file changed"
            }
        };
        let mut problems = gw.reload();
        if reason == "SIGHUP" {
            // An operator's SIGHUP also fetches remote JWKS now.
            for client in gw.config.clients.iter().filter(|c| c.idp.is_remote()) {
                if let Err(e) = client.idp.refresh().await {
                    problems.push(format!("client {}: {e}", client.name));
                }
            }
        }
        if problems.is_empty() {
            tracing::info!(reason, "certificates, keys, CRLs and JWKS reloaded");
        } else {
            for p in problems {
                tracing::warn!(reason, problem = %p, "reload kept the previous version");
            }
        }
    }
}
