//! The gateway's TLS of the moment, piece by piece: the `kommun` and `af` listeners, the
//! client towards AF, the clients towards the case systems. Each piece is built from its
//! material (as read at start, or read again from its files on reload) and its edge's CRLs
//! (see [`crate::access::trust`]), and swapped whole; a piece that fails to build keeps the one in use.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::access::crl_fetch::CrlFetcher;
use crate::access::tls;
use crate::access::trust::{self, Edge, EdgeFiles, NamedCrl};
use crate::config::{CertAndKey, ClientDelivery, NamedCertificate, TlsMaterial};
use crate::gateway::server::ListenerTls;

/// A listener's TLS: its certificate, and the verifier of its clients on `edge`.
pub fn listener(
    edge: &EdgeFiles,
    m: TlsMaterial,
    fetcher: &Arc<CrlFetcher>,
) -> Result<(Arc<ListenerTls>, Edge), String> {
    let edge = Edge::new(edge, m.roots, m.crls, fetcher);
    let (handshakes, again) = trust::client_verifiers(&edge, &tls::provider())?;
    let config = tls::mtls_server_config_with(m.identity.chain, m.identity.key, handshakes)
        .map_err(|e| e.to_string())?;
    Ok((
        Arc::new(ListenerTls {
            config: Arc::new(config),
            verifier: again,
        }),
        edge,
    ))
}

/// A client's TLS towards the servers of `edge`, presenting `identity`.
pub fn client(
    edge: &EdgeFiles,
    roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    crls: Vec<NamedCrl>,
    identity: &CertAndKey,
    fetcher: &Arc<CrlFetcher>,
) -> Result<(rustls::ClientConfig, Edge), String> {
    let edge = Edge::new(edge, roots, crls, fetcher);
    let verifier = trust::server_verifier(&edge, &tls::provider())?;
    let config = tls::client_config_with(
        verifier,
        Some((identity.chain.clone(), identity.key.clone_key())),
    )
    .map_err(|e| e.to_string())?;
    Ok((config, edge))
}

/// One mTLS HTTP client per case system that has an endpoint, and the edges they verify with.
/// A case system whose client cannot be built is named in the problems; its events wait.
pub struct DeliveryClients {
    pub clients: HashMap<String, reqwest::Client>,
    pub edges: Vec<Edge>,
    built: std::time::Instant,
}

impl DeliveryClients {
    /// Built from each endpoint's CA and CRLs, presenting `identity`.
    pub fn build(
        identity: &CertAndKey,
        endpoints: &BTreeMap<String, ClientDelivery>,
        timeout: Duration,
        fetcher: &Arc<CrlFetcher>,
    ) -> (Self, Vec<String>) {
        let mut clients = HashMap::new();
        let mut edges = Vec::new();
        let mut problems = Vec::new();
        for (name, endpoint) in endpoints {
            let built = client(
                &endpoint.trust,
                endpoint.ca.clone(),
                endpoint.crls.clone(),
                identity,
                fetcher,
            )
            .and_then(|(tls, edge)| {
                let http = reqwest::Client::builder()
                    .tls_backend_preconfigured(tls)
                    .no_proxy()
                    .pool_idle_timeout(crate::config::OUTBOUND_IDLE_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(timeout)
                    .build()
                    .map_err(|e| e.to_string())?;
                Ok((http, edge))
            });
            match built {
                Ok((http, edge)) => {
                    clients.insert(name.clone(), http);
                    edges.push(edge);
                }
                Err(e) => problems.push(format!("delivery to {name}: {e}")),
            }
        }
        (
            Self {
                clients,
                edges,
                built: std::time::Instant::now(),
            },
            problems,
        )
    }

    /// How long ago these were built.
    pub fn age(&self) -> Duration {
        self.built.elapsed()
    }
}

/// Each endpoint with its CA and CRL files read again.
pub fn reread_endpoints(
    endpoints: &BTreeMap<String, ClientDelivery>,
) -> Result<BTreeMap<String, ClientDelivery>, String> {
    endpoints
        .iter()
        .map(|(name, e)| {
            let ca = tls::load_certs(&e.trust.ca).map_err(|err| format!("{name}: {err}"))?;
            let crls = e
                .trust
                .crls
                .load_files(&ca)
                .map_err(|err| format!("{name}: {err}"))?;
            Ok((
                name.clone(),
                ClientDelivery {
                    ca,
                    crls,
                    ..e.clone()
                },
            ))
        })
        .collect()
}

/// Certificates named as the configuration names them (`key`, or `key[i]` for a bundle).
pub fn named(
    key: &str,
    certs: &[rustls_pki_types::CertificateDer<'static>],
) -> Vec<NamedCertificate> {
    let many = certs.len() > 1;
    certs
        .iter()
        .enumerate()
        .map(|(i, der)| NamedCertificate {
            name: if many {
                format!("{key}[{i}]")
            } else {
                key.to_owned()
            },
            der: der.clone(),
        })
        .collect()
}

/// What a piece holds of certificates and CRLs, for expiry figures, and the CRLs it was given
/// but did not take.
#[derive(Debug, Clone, Default)]
pub struct Held {
    pub certificates: Vec<NamedCertificate>,
    pub crls: Vec<NamedCrl>,
    /// Why a CRL was not taken (an older one than the one in use): reload problems.
    pub problems: Vec<String>,
}

impl Held {
    /// Brygga's own certificate under `cert_key`, the edge's CAs under `ca_key`, its CRLs.
    pub fn of(cert_key: &str, identity: &CertAndKey, ca_key: &str, edge: &Edge) -> Self {
        let mut certificates = named(cert_key, &identity.chain);
        certificates.extend(named(ca_key, &edge.roots));
        Self {
            certificates,
            crls: edge.crls.clone(),
            problems: edge.problems.clone(),
        }
    }
}
