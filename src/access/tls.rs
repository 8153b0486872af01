//! TLS set-up in one place: one crypto provider (aws-lc-rs), TLS 1.2 and 1.3 only, PEM loading.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

/// The process-wide crypto provider. Installed once; later calls are no-ops.
pub fn provider() -> Arc<CryptoProvider> {
    let p = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let _ = p.as_ref().clone().install_default();
    p
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Why TLS material could not be loaded or used; names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// All certificates in a PEM file; at least one.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_err(path, e))
}

fn roots(cas: &[CertificateDer<'static>]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for ca in cas {
        store.add(ca.clone())?;
    }
    Ok(store)
}

/// The CRLs in a PEM file.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if crls.is_empty() {
        return Err(file_err(path, "no X509 CRL block found"));
    }
    Ok(crls)
}

/// A server config that requires a client certificate issued by one of `client_cas`, valid
/// now, for client authentication, and — when `crls` are given — not revoked (a certificate
/// whose CA has no CRL among them is then refused too).
pub fn mtls_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_cas: &[CertificateDer<'static>],
    crls: &[CertificateRevocationListDer<'static>],
) -> Result<rustls::ServerConfig, TlsError> {
    mtls_server_config_with(chain, key, webpki_client_verifier(client_cas, crls)?)
}

/// WebPKI's verifier of client certificates issued by one of `client_cas`, valid now, for
/// client authentication, and — when `crls` are given — not revoked (a certificate whose CA
/// has no CRL among them is then refused too).
pub fn webpki_client_verifier(
    client_cas: &[CertificateDer<'static>],
    crls: &[CertificateRevocationListDer<'static>],
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots(client_cas)?), provider())
        .with_crls(crls.iter().cloned())
        // A CRL past its nextUpdate no longer says who is revoked: refuse rather than trust it.
        .enforce_revocation_expiration()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))
}

/// A server config that requires a client certificate `verifier` accepts, on every
/// handshake: no session is resumed.
pub fn mtls_server_config_with(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    // A resumed session restores the client certificate without asking the verifier: one
    // expired or revoked since, or whose CRL went stale, would be served. No session cache
    // (TLS 1.2 session ids, TLS 1.3 stateful tickets), and tickets no one can redeem.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.ticketer = Arc::new(Unredeemable);
    cfg.send_tls13_tickets = 1;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A client config trusting `server_cas`, presenting `identity` when given.
pub fn client_config(
    server_cas: &[CertificateDer<'static>],
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots(server_cas)?);
    let mut cfg = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    // reqwest keeps our ALPN list as is: without h2 here it would only speak HTTP/1.1.
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A client config whose servers `verifier` must accept on every handshake (no session is
/// resumed: that would skip it), presenting `identity` when given.
pub fn client_config_with(
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Session tickets that resume nothing: every one is refused, so each handshake is a full
/// one and the verifier sees every certificate.
///
/// One is sent all the same, for its timing: after a TLS 1.3 handshake with client
/// authentication the client speaks last (its Finished); with nothing from the server then,
/// a client that leaves Nagle's algorithm on holds its first request until the server's
/// delayed acknowledgement (40 ms on Linux). The ticket carries that acknowledgement at
/// once: 200 new connections took 0.44 s with it and 8.9 s without
/// (`connections::a_client_honouring_the_announced_keep_alive_loses_nothing`).
#[derive(Debug)]
struct Unredeemable;

impl rustls::server::ProducesTickets for Unredeemable {
    fn enabled(&self) -> bool {
        true
    }

    /// Zero: "discard at once" (RFC 8446 §4.6.1), so clients do not even offer it.
    fn lifetime(&self) -> u32 {
        0
    }

    fn encrypt(&self, _plain: &[u8]) -> Option<Vec<u8>> {
        Some(b"brygga: no resumption".to_vec())
    }

    fn decrypt(&self, _cipher: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_listener_ticket_resumes_anything() {
        let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-example");
        let cfg = mtls_server_config(
            load_certs(&certs.join("gateway-kommun.pem")).unwrap(),
            load_key(&certs.join("gateway-kommun.key")).unwrap(),
            &load_certs(&certs.join("kommun-ca.pem")).unwrap(),
            &[],
        )
        .unwrap();
        let ticket = cfg.ticketer.encrypt(b"a session").unwrap();
        assert_eq!(cfg.ticketer.decrypt(&ticket), None);
        assert_eq!(cfg.ticketer.lifetime(), 0);
        assert!(!cfg.session_storage.can_cache());
    }
}
