//! The gateway process: its shared state, and starting and stopping its listeners.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::codec::xml::XmlLimits;
use crate::config::Config;
use crate::identity::VerifiedTokens;
use crate::server::{self, ConnLimits};
use crate::upstream::AfClient;
use crate::{exchange, ops, tls};

/// State shared by every request.
pub struct Gateway {
    pub config: Config,
    pub af: AfClient,
    pub xml_limits: XmlLimits,
    /// Case-worker tokens already verified, until they expire.
    pub tokens: VerifiedTokens,
}

/// A started gateway: where it listens, and how to stop it.
pub struct RunningGateway {
    pub kommun_addr: SocketAddr,
    pub admin_addr: SocketAddr,
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
    let af = AfClient::new(config.af.clone(), &config.system_id, &config.environment)
        .map_err(|e| format!("AF client: {e}"))?;
    let kommun = server::bind(config.kommun_bind, "kommun").await?;
    let admin = server::bind(config.admin_bind, "admin").await?;
    let kommun_addr = kommun.local_addr().map_err(|e| e.to_string())?;
    let admin_addr = admin.local_addr().map_err(|e| e.to_string())?;
    let limits = ConnLimits {
        handshake_timeout: config.limits.tls_handshake_timeout,
        header_read_timeout: config.limits.header_read_timeout,
        ..ConnLimits::default()
    };
    let gw = Arc::new(Gateway {
        config,
        af,
        xml_limits: XmlLimits::default(),
        tokens: VerifiedTokens::new(10_000),
    });
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let g = gw.clone();
    tasks.spawn(server::serve_tls(
        kommun,
        TlsAcceptor::from(Arc::new(tls_config)),
        limits,
        rx.clone(),
        move |peer, req| exchange::serve_kommun(g.clone(), peer, req),
    ));
    let g = gw.clone();
    tasks.spawn(server::serve_plain(admin, limits, rx, move |req| {
        ops::serve_admin(g.clone(), req)
    }));
    tracing::info!(%kommun_addr, %admin_addr, "brygga is serving");
    Ok(RunningGateway {
        kommun_addr,
        admin_addr,
        shutdown,
        tasks,
    })
}
