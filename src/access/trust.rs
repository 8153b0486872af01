//! Trust edges: what verifies each kind of peer — the case systems and AF on the listeners,
//! AF's server and the case systems' endpoints outbound. Each edge has its CA bundle and its
//! CRLs of the moment: from files, from URLs, and from the distribution points its CA
//! certificates and its peers' certificates name (fetched by [`crate::access::crl_fetch`]).
//!
//! The verifiers are rustls's WebPKI ones with those CRLs (a CRL past its next update refuses
//! every certificate of its CA), wrapped so that a certificate naming a distribution point
//! whose CRL brygga does not hold yet is refused until it is fetched, and a client
//! certificate must say it is for client authentication.
//!
//! A peer's distribution points are learned only once its chain verifies *and* it has proved
//! it holds the certificate's key: rustls checks the chain before the peer's signature over
//! the handshake, so in a handshake such a certificate passes the chain check on probation
//! and is refused at the signature, which then has its CRLs fetched. A copied certificate
//! (certificates travel in clear in TLS 1.2) makes brygga fetch nothing.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};

use crate::access::crl_fetch::CrlFetcher;

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

    /// The CRLs in the files, each named by its entry (`kommun.client_crls[0]`), each one
    /// WebPKI reads and one of `signers` (the edge's CAs) signed.
    pub fn load_files(&self, signers: &[CertificateDer<'_>]) -> Result<Vec<NamedCrl>, String> {
        let mut out = Vec::new();
        for (i, f) in &self.files {
            let name = format!("{}[{i}]", self.key);
            for der in crate::access::crl::read_file(f, Some(signers))
                .map_err(|e| format!("{name} {e}"))?
            {
                out.push(NamedCrl {
                    name: name.clone(),
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

/// At most this many distribution points are taken from one certificate: a CA names one or
/// two; the rest of a long list is not fetched.
pub const MAX_POINTS_PER_CERTIFICATE: usize = 2;

/// At most this many certificates wait for their peer's proof at once, per edge.
const MAX_ON_PROBATION: usize = 1024;

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
    /// CRLs it was given and did not take, and why (an older one than the one in use).
    pub problems: Vec<String>,
    /// What each certificate on probation (by its SHA-256) would have fetched once its peer
    /// proves its key: its own points and those of its intermediates.
    on_probation: Arc<Mutex<HashMap<[u8; 32], Vec<String>>>>,
    fetcher: Arc<CrlFetcher>,
}

/// When a verifier may learn from a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Learning {
    /// In a handshake: once the peer has signed it with the certificate's key.
    AfterProof,
    /// Verifying an open connection again: its peer proved that at its handshake.
    Now,
}

/// What the chain check says, beyond WebPKI.
enum Judged {
    Verified,
    /// The certificate's CRL is not held: it is refused at the peer's signature, which then
    /// has that CRL fetched.
    OnProbation,
}

fn revocation_unknown() -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::UnknownRevocationStatus)
}

impl Edge {
    /// The edge with these CAs and CRLs read from its files: asks the fetcher for the
    /// configured URLs and the distribution points the CA certificates name, and takes what
    /// it holds of them. A CRL older than the one of its issuer in use keeps that one.
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
        let (crls, problems) = fetcher.taken.settle(&files.name, newest_per_issuer(crls));
        let crl_issuers = crls.iter().filter_map(|c| issuer_of_crl(&c.der)).collect();
        let urls = urls.into_iter().map(|(u, _)| u).collect();
        Edge {
            name: files.name.clone(),
            roots,
            crls,
            crl_issuers,
            urls,
            pending,
            problems,
            on_probation: Arc::default(),
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

    /// WebPKI's verdict on a peer's chain, completed. A chain that verifies, or is refused
    /// only because a CRL it needs is not held, teaches: a certificate naming a distribution
    /// point whose CRL is not here has it fetched and is refused until then — in a handshake
    /// only after its peer signed with its key (see [`Edge::proven`]). Only such chains are
    /// learned from, so no stranger can make brygga fetch a URL of its choosing.
    fn judge(
        &self,
        verdict: Result<(), rustls::Error>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        learning: Learning,
    ) -> Result<Judged, rustls::Error> {
        let status_unknown = match verdict {
            Ok(()) => false,
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownRevocationStatus)) => {
                true
            }
            Err(e) => return Err(e),
        };
        if !self.pending.is_empty() {
            // Per handshake: debug only (`/readyz` and `brygga_crl_source_ok` say it once).
            tracing::debug!(edge = %self.name, pending = ?self.pending, "a configured CRL has not been fetched yet; certificates are refused until it is");
            // A configured CRL may be an intermediate's.
            self.know(intermediates, now);
            self.fetcher.wake();
            return Err(revocation_unknown());
        }
        if !self.fetcher.follows_distribution_points() {
            return match status_unknown {
                true => Err(revocation_unknown()),
                false => Ok(Judged::Verified),
            };
        }
        let Ok((_, leaf)) = x509_parser::parse_x509_certificate(end_entity.as_ref()) else {
            // WebPKI refuses what cannot be parsed.
            return match status_unknown {
                true => Err(revocation_unknown()),
                false => Ok(Judged::Verified),
            };
        };
        if self.crl_missing(&leaf) {
            let verified = self.know(intermediates, now);
            let lesson = self.lesson(&leaf, &verified);
            return match learning {
                Learning::AfterProof => {
                    let mut waiting = self.on_probation.lock().unwrap_or_else(|p| p.into_inner());
                    if waiting.len() >= MAX_ON_PROBATION {
                        // Only what to fetch is lost: the leaf's own points are taken then.
                        waiting.clear();
                    }
                    waiting.insert(fingerprint(end_entity), lesson);
                    Ok(Judged::OnProbation)
                }
                Learning::Now => {
                    self.teach(&lesson);
                    Err(revocation_unknown())
                }
            };
        }
        if status_unknown {
            // The certificate's own CRL is held; an intermediate's is not. Its points are
            // learned at once, before the peer's proof: they come from a CA certificate
            // verified up to this edge's CAs, so they are the CA's choice, not the peer's.
            let verified = self.know(intermediates, now);
            let lesson = self.lesson(&leaf, &verified);
            self.teach(&lesson);
            return Err(revocation_unknown());
        }
        if self.fetcher.learns() {
            let mut used = points_of(&leaf);
            for i in intermediates {
                used.extend(distribution_points(i));
            }
            self.fetcher.touch(&used);
        }
        Ok(Judged::Verified)
    }

    /// The peer has signed the handshake with `end_entity`'s key: a certificate that was on
    /// probation is refused now, and its CRLs are fetched. Decided from the certificate and
    /// this edge alone, as [`Edge::judge`] decided, so no other handshake can change it.
    fn proven(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if !self.fetcher.follows_distribution_points() {
            return Ok(());
        }
        let Ok((_, leaf)) = x509_parser::parse_x509_certificate(end_entity.as_ref()) else {
            return Ok(());
        };
        if !self.crl_missing(&leaf) {
            return Ok(());
        }
        let lesson = self
            .on_probation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fingerprint(end_entity))
            .unwrap_or_else(|| points_of(&leaf));
        self.teach(&lesson);
        Err(revocation_unknown())
    }

    /// Whether `cert` names a distribution point and no CRL of its issuer is held here.
    fn crl_missing(&self, cert: &X509Certificate<'_>) -> bool {
        !points_of(cert).is_empty() && !self.crl_issuers.contains(cert.issuer().as_raw())
    }

    /// The intermediates among `intermediates` verified up to this edge's CAs, now known to
    /// the fetcher as signers of CRLs.
    fn know(
        &self,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Vec<CertificateDer<'static>> {
        if intermediates.is_empty() {
            return Vec::new();
        }
        let verified = verified_intermediates(&self.roots, intermediates, now);
        if !verified.is_empty() {
            self.fetcher.know(&self.name, verified.clone());
        }
        verified
    }

    /// The distribution points of `leaf` and of the `verified` intermediates whose CRL is not
    /// held here.
    fn lesson(
        &self,
        leaf: &X509Certificate<'_>,
        verified: &[CertificateDer<'static>],
    ) -> Vec<String> {
        let mut out = Vec::new();
        if self.crl_missing(leaf) {
            out.extend(points_of(leaf));
        }
        for der in verified {
            if let Ok((_, ca)) = x509_parser::parse_x509_certificate(der.as_ref())
                && self.crl_missing(&ca)
            {
                out.extend(points_of(&ca));
            }
        }
        out.dedup();
        out
    }

    /// Has the fetcher fetch these learned distribution points for this edge.
    fn teach(&self, points: &[String]) {
        let mut asked = false;
        for url in points {
            asked |= self.fetcher.learn(url, &self.name, &self.roots);
        }
        if asked {
            tracing::info!(edge = %self.name, points = ?points, "a verified certificate names a CRL distribution point whose CRL is not held yet; refused until it is fetched");
        }
    }
}

fn fingerprint(der: &CertificateDer<'_>) -> [u8; 32] {
    Sha256::digest(der.as_ref()).into()
}

/// Of the intermediates a peer sent, those that chain up to `roots`: each a CA, valid at
/// `now`, signed by a root or by one already found. At most four are looked at.
pub fn verified_intermediates(
    roots: &[CertificateDer<'_>],
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Vec<CertificateDer<'static>> {
    let Ok(at) = x509_parser::time::ASN1Time::from_timestamp(
        i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
    ) else {
        return Vec::new();
    };
    fn parse<'a>(der: &'a CertificateDer<'_>) -> Option<X509Certificate<'a>> {
        x509_parser::parse_x509_certificate(der.as_ref())
            .ok()
            .map(|(_, c)| c)
    }
    let mut signers: Vec<X509Certificate<'_>> = roots.iter().filter_map(parse).collect();
    let mut left: Vec<(&CertificateDer<'_>, X509Certificate<'_>)> = intermediates
        .iter()
        .take(4)
        .filter_map(|der| Some((der, parse(der)?)))
        .collect();
    let mut out = Vec::new();
    loop {
        let found = left.iter().position(|(_, c)| {
            c.is_ca()
                && c.validity().is_valid_at(at)
                && signers.iter().any(|s| {
                    s.subject().as_raw() == c.issuer().as_raw()
                        && c.verify_signature(Some(s.public_key())).is_ok()
                })
        });
        let Some(i) = found else {
            return out;
        };
        let (der, cert) = left.swap_remove(i);
        out.push(der.clone().into_owned());
        signers.push(cert);
    }
}

/// The URLs (http, https) of the CRL distribution points a certificate names, at most
/// [`MAX_POINTS_PER_CERTIFICATE`].
pub fn distribution_points(der: &CertificateDer<'_>) -> Vec<String> {
    x509_parser::parse_x509_certificate(der.as_ref())
        .map(|(_, c)| points_of(&c))
        .unwrap_or_default()
}

fn points_of(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
            for p in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &p.distribution_point {
                    for n in names {
                        if let GeneralName::URI(uri) = n
                            && is_url(uri)
                            && !out.iter().any(|u| u == uri)
                        {
                            out.push((*uri).to_owned());
                        }
                    }
                }
            }
        }
    }
    out.truncate(MAX_POINTS_PER_CERTIFICATE);
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
    let mut best: HashMap<Vec<u8>, (crate::access::crl::Issued, NamedCrl)> = HashMap::new();
    let mut unreadable = Vec::new();
    for named in crls {
        // Every CRL was checked where it came in; the clock is not asked again here.
        let Ok(crl) = crate::access::crl::read(named.der.clone(), i64::MAX / 2) else {
            // WebPKI will say what is wrong with it.
            unreadable.push(named);
            continue;
        };
        match best.get(&crl.issuer) {
            Some((at, _)) if !at.older_than(&crl.issued) => {}
            _ => {
                best.insert(crl.issuer, (crl.issued, named));
            }
        }
    }
    let mut out: Vec<_> = best.into_values().map(|(_, c)| c).collect();
    out.extend(unreadable);
    out
}

/// A listener's verifier for handshakes, and the one for its open connections.
pub type ClientVerifiers = (Arc<dyn ClientCertVerifier>, Arc<dyn ClientCertVerifier>);

/// The verifiers of an mTLS listener's clients on `edge`: the one for its handshakes, and
/// the one that verifies its open connections again (their peers proved their keys at their
/// handshakes, so nothing waits on a proof there).
pub fn client_verifiers(
    edge: &Edge,
    provider: &Arc<CryptoProvider>,
) -> Result<ClientVerifiers, String> {
    let inner =
        WebPkiClientVerifier::builder_with_provider(Arc::new(edge.root_store()?), provider.clone())
            .with_crls(edge.crl_ders())
            // A CRL past its nextUpdate no longer says who is revoked: refuse rather than trust it.
            .enforce_revocation_expiration()
            .build()
            .map_err(|e| format!("{}: client certificate verifier: {e}", edge.name))?;
    let verifier = |learning| -> Arc<dyn ClientCertVerifier> {
        Arc::new(EdgeClientVerifier {
            inner: inner.clone(),
            edge: edge.clone(),
            learning,
        })
    };
    Ok((verifier(Learning::AfterProof), verifier(Learning::Now)))
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
    learning: Learning,
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
        let verdict = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
            .map(|_| ());
        if let Err(e) = &verdict
            && *e != revocation_unknown()
        {
            return Err(e.clone());
        }
        for_client_auth(end_entity)?;
        // On probation, it is refused at its signature (below): a handshake cannot end
        // without it.
        self.edge
            .judge(verdict, end_entity, intermediates, now, self.learning)
            .map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let valid = self.inner.verify_tls12_signature(message, cert, dss)?;
        self.edge.proven(cert)?;
        Ok(valid)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let valid = self.inner.verify_tls13_signature(message, cert, dss)?;
        self.edge.proven(cert)?;
        Ok(valid)
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
        let verdict = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map(|_| ());
        self.edge
            .judge(
                verdict,
                end_entity,
                intermediates,
                now,
                Learning::AfterProof,
            )
            .map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let valid = self.inner.verify_tls12_signature(message, cert, dss)?;
        self.edge.proven(cert)?;
        Ok(valid)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let valid = self.inner.verify_tls13_signature(message, cert, dss)?;
        self.edge.proven(cert)?;
        Ok(valid)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
