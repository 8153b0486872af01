//! Starting and stopping the gateway: the store locked and opened, every listener bound and
//! served, the delivery worker and the reload watcher spawned; then draining on shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::access::crl_fetch::CrlFetcher;
use crate::access::identity::VerifiedTokens;
use crate::config::Config;
use crate::contract::xml::XmlLimits;
use crate::gateway::admin;
use crate::gateway::server::{self, ConnLimits};
use crate::gateway::state::{Gateway, Material, stamp};
use crate::gateway::upstream::AfClient;
use crate::gateway::{delivery, events, exchange};
use crate::ops::status_page::ReadinessCache;
use crate::store::audit::AuditLog;
use crate::store::outbox::Outbox;
use crate::store::subscriptions::Subscriptions;

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
        readiness: ReadinessCache::default(),
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
