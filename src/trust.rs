//! Trust edges: what verifies each kind of peer — the case systems and AF on the listeners,
//! AF's server and the case systems' endpoints outbound. Each edge has its CA bundle and its
//! CRLs of the moment: from files, from URLs, and from the distribution points its CA
//! certificates and its peers' certificates name (fetched by [`crate::crl_fetch`]).
//!
//! The verifiers are rustls's WebPKI ones with those CRLs (a CRL past its next update refuses
//! every certificate of its CA), wrapped so that a certificate naming a distribution point
//! whose CRL brygga does not hold yet is refused until it is fetched, and a client
//! certificate must say it is for client authentication.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};

use crate::crl_fetch::CrlFetcher;
use crate::tls;

/// Where one edge's CRLs come from, as configured: files, and URLs fetched by brygga.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrlSources {
    /// The configuration key of the list (`kommun.client_crls`): `key[i]` names entry i.
    pub key: String,
    pub files: Vec<(usize, PathBuf)>,
    pub urls: Vec<(usize, String)>,
}

impl CrlSources {
    /// Splits the entries of `key`: `http://` and `https://` are fetched, the rest are files
    /// (relative to `dir`).
    pub fn from_entries(key: &str, entries: &[String], dir: &Path) -> Self {
        let mut out = CrlSources {
            key: key.to_owned(),
            ..CrlSources::default()
        };
        for (i, e) in entries.iter().enumerate() {
            if is_url(e) {
                out.urls.push((i, e.clone()));
            } else {
                let p = Path::new(e);
                out.files.push((
                    i,
                    if p.is_absolute() {
                        p.to_owned()
                    } else {
                        dir.join(p)
                    },
                ));
            }
        }
        out
    }

    /// The CRLs in the files, each named by its entry (`kommun.client_crls[0]`).
    pub fn load_files(&self) -> Result<Vec<NamedCrl>, String> {
        let mut out = Vec::new();
        for (i, f) in &self.files {
            for der in tls::load_crls(f).map_err(|e| e.to_string())? {
                out.push(NamedCrl {
                    name: format!("{}[{i}]", self.key),
                    der,
                });
            }
        }
        Ok(out)
    }
}

/// A CRL and what operators call it: its configuration entry, or the URL it was fetched from.
#[derive(Debug, Clone)]
pub struct NamedCrl {
    pub name: String,
    pub der: CertificateRevocationListDer<'static>,
}

fn is_url(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The files behind one edge: its CA bundle and its CRL sources.
#[derive(Debug, Clone)]
pub struct EdgeFiles {
    /// How operators and logs name it: `kommun`, `af-listener`, `af`, `delivery.stockholm`.
    pub name: String,
    pub ca: PathBuf,
    pub crls: CrlSources,
}

impl EdgeFiles {
    /// Every file a reload watches.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.ca.clone()];
        v.extend(self.crls.files.iter().map(|(_, f)| f.clone()));
        v
    }
}

/// One edge as loaded now.
#[derive(Debug, Clone)]
pub struct Edge {
    pub name: String,
    pub roots: Vec<CertificateDer<'static>>,
    /// One CRL per issuer, the newest of those read and fetched.
    pub crls: Vec<NamedCrl>,
    /// The raw issuer names that have a CRL here.
    crl_issuers: BTreeSet<Vec<u8>>,
    /// The URLs this edge's CRLs are fetched from (configured and named by its CAs).
    pub urls: Vec<String>,
    /// Those of them never fetched yet: until they are, which CA they speak for is unknown,
    /// so every certificate is refused (fail closed; `/readyz` says why).
    pub pending: Vec<String>,
    fetcher: Arc<CrlFetcher>,
}

impl Edge {
    /// The edge with these CAs and CRLs read from its files: asks the fetcher for the
    /// configured URLs and the distribution points the CA certificates name, and takes what
    /// it holds of them.
    pub fn new(
        files: &EdgeFiles,
        roots: Vec<CertificateDer<'static>>,
        read: Vec<NamedCrl>,
        fetcher: &Arc<CrlFetcher>,
    ) -> Edge {
        let mut urls: Vec<(String, String)> = files
            .crls
            .urls
            .iter()
            .map(|(i, u)| (u.clone(), format!("{}[{i}]", files.crls.key)))
            .collect();
        if fetcher.follows_distribution_points() {
            for ca in &roots {
                urls.extend(distribution_points(ca).into_iter().map(|u| (u.clone(), u)));
            }
        }
        urls.sort();
        urls.dedup_by(|a, b| a.0 == b.0);
        for (url, _) in &urls {
            fetcher.want(url, &files.name, &roots);
        }
        // What the fetcher holds for this edge: its own URLs (named as configured), and the
        // distribution points its peers' certificates named (by their URL).
        let mut crls = read;
        let mut pending = Vec::new();
        let held = fetcher.held_for(&files.name);
        for (url, name) in &urls {
            if !held.iter().any(|(u, _)| u == url) {
                pending.push(url.clone());
            }
            crls.extend(
                held.iter()
                    .filter(|(u, _)| u == url)
                    .map(|(_, der)| NamedCrl {
                        name: name.clone(),
                        der: der.clone(),
                    }),
            );
        }
        crls.extend(
            held.into_iter()
                .filter(|(u, _)| !urls.iter().any(|(own, _)| own == u))
                .map(|(url, der)| NamedCrl { name: url, der }),
        );
        let crls = newest_per_issuer(crls);
        let crl_issuers = crls.iter().filter_map(|c| issuer_of_crl(&c.der)).collect();
        let urls = urls.into_iter().map(|(u, _)| u).collect();
        Edge {
            name: files.name.clone(),
            roots,
            crls,
            crl_issuers,
            urls,
            pending,
            fetcher: fetcher.clone(),
        }
    }

    /// The CRLs as rustls takes them.
    fn crl_ders(&self) -> impl Iterator<Item = CertificateRevocationListDer<'static>> + '_ {
        self.crls.iter().map(|c| c.der.clone())
    }

    fn root_store(&self) -> Result<RootCertStore, String> {
        let mut store = RootCertStore::empty();
        for ca in &self.roots {
            store
                .add(ca.clone())
                .map_err(|e| format!("{}: {e}", self.name))?;
        }
        Ok(store)
    }

    /// WebPKI's verdict on a peer's chain, and what it teaches: a certificate that chains to
    /// this edge's CAs (verified, or refused only because its CA's CRL is not held) and names
    /// a distribution point whose CRL is not here yet has that CRL fetched, and is refused
    /// until it is. Only such certificates are learned from, so no stranger can make brygga
    /// fetch a URL of its choosing.
    fn learn<V>(
        &self,
        verdict: Result<V, rustls::Error>,
        end_entity: &CertificateDer<'_>,
    ) -> Result<V, rustls::Error> {
        match verdict {
            Ok(v) => self.revocation_known(end_entity).map(|()| v),
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownRevocationStatus)) => {
                let _ = self.revocation_known(end_entity);
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownRevocationStatus,
                ))
            }
            Err(e) => Err(e),
        }
    }

    fn revocation_known(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if !self.pending.is_empty() {
            // Per handshake: debug only (`/readyz` and `brygga_crl_source_ok` say it once).
            tracing::debug!(edge = %self.name, pending = ?self.pending, "a configured CRL has not been fetched yet; certificates are refused until it is");
            self.fetcher.wake();
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownRevocationStatus,
            ));
        }
        if !self.fetcher.follows_distribution_points() {
            return Ok(());
        }
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(end_entity.as_ref()) else {
            // WebPKI refuses what cannot be parsed.
            return Ok(());
        };
        let points = points_of(&cert);
        if points.is_empty() || self.crl_issuers.contains(cert.issuer().as_raw()) {
            return Ok(());
        }
        let mut asked = false;
        for url in &points {
            asked |= self.fetcher.want(url, &self.name, &self.roots);
        }
        if asked {
            tracing::info!(edge = %self.name, points = ?points, "a certificate names a CRL distribution point whose CRL is not held yet; refused until it is fetched");
        }
        Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownRevocationStatus,
        ))
    }
}

/// The URLs (http, https) of the CRL distribution points a certificate names.
pub fn distribution_points(der: &CertificateDer<'_>) -> Vec<String> {
    x509_parser::parse_x509_certificate(der.as_ref())
        .map(|(_, c)| points_of(&c))
        .unwrap_or_default()
}

fn points_of(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
            for p in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &p.distribution_point {
                    for n in names {
                        if let GeneralName::URI(uri) = n
                            && is_url(uri)
                        {
                            out.push((*uri).to_owned());
                        }
                    }
                }
            }
        }
    }
    out
}

/// The raw DER of a CRL's issuer name.
pub fn issuer_of_crl(crl: &CertificateRevocationListDer<'_>) -> Option<Vec<u8>> {
    x509_parser::parse_x509_crl(crl.as_ref())
        .ok()
        .map(|(_, c)| c.issuer().as_raw().to_vec())
}

/// Of several CRLs by one issuer, the one issued last (a file left behind by a fetch, or the
/// other way round, must not hide a newer revocation).
fn newest_per_issuer(crls: Vec<NamedCrl>) -> Vec<NamedCrl> {
    let mut best: HashMap<Vec<u8>, (i64, NamedCrl)> = HashMap::new();
    let mut unreadable = Vec::new();
    for crl in crls {
        let Ok((_, parsed)) = x509_parser::parse_x509_crl(crl.der.as_ref()) else {
            // WebPKI will say what is wrong with it.
            unreadable.push(crl);
            continue;
        };
        let issued = parsed.last_update().timestamp();
        let issuer = parsed.issuer().as_raw().to_vec();
        match best.get(&issuer) {
            Some((at, _)) if *at >= issued => {}
            _ => {
                best.insert(issuer, (issued, crl.clone()));
            }
        }
    }
    let mut out: Vec<_> = best.into_values().map(|(_, c)| c).collect();
    out.extend(unreadable);
    out
}

/// The verifier of an mTLS listener's clients on `edge`.
pub fn client_verifier(
    edge: &Edge,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let inner =
        WebPkiClientVerifier::builder_with_provider(Arc::new(edge.root_store()?), provider.clone())
            .with_crls(edge.crl_ders())
            // A CRL past its nextUpdate no longer says who is revoked: refuse rather than trust it.
            .enforce_revocation_expiration()
            .build()
            .map_err(|e| format!("{}: client certificate verifier: {e}", edge.name))?;
    Ok(Arc::new(EdgeClientVerifier {
        inner,
        edge: edge.clone(),
    }))
}

/// The verifier of a server brygga calls on `edge`.
pub fn server_verifier(
    edge: &Edge,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let inner =
        WebPkiServerVerifier::builder_with_provider(Arc::new(edge.root_store()?), provider.clone())
            .with_crls(edge.crl_ders())
            .enforce_revocation_expiration()
            .build()
            .map_err(|e| format!("{}: server certificate verifier: {e}", edge.name))?;
    Ok(Arc::new(EdgeServerVerifier {
        inner,
        edge: edge.clone(),
    }))
}

/// WebPKI's client verifier, refusing a certificate whose CRL is not known yet, and one that
/// does not name client authentication among its uses (RFC 5280 lets a certificate without
/// the extension serve any purpose; a case system's certificate must say what it is for).
#[derive(Debug)]
struct EdgeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    edge: Edge,
}

fn for_client_auth(end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(end_entity.as_ref()) else {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ));
    };
    match cert.extended_key_usage() {
        Ok(Some(eku)) if eku.value.client_auth || eku.value.any => Ok(()),
        _ => Err(rustls::Error::InvalidCertificate(
            CertificateError::InvalidPurpose,
        )),
    }
}

impl ClientCertVerifier for EdgeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now);
        let verified = self.edge.learn(verified, end_entity)?;
        for_client_auth(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// WebPKI's server verifier, refusing a certificate whose CRL is not known yet.
#[derive(Debug)]
struct EdgeServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    edge: Edge,
}

impl ServerCertVerifier for EdgeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        self.edge.learn(verified, end_entity)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
