//! What the file becomes once checked: the runtime configuration the gateway starts from,
//! and the problems a check reports.

use super::*;

/// One problem in a configuration: the key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub reason: String,
}

/// All problems found in a configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} problem(s) in the configuration",
            self.file.display(),
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  {}: {}", p.key, p.reason)?;
        }
        Ok(())
    }
}

/// A certificate chain and its key.
#[derive(Debug)]
pub struct CertAndKey {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for CertAndKey {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// Validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub system_id: String,
    pub environment: String,
    pub kommun_bind: SocketAddr,
    /// The `kommun` listener's certificate, and the CAs and CRLs its clients are checked with.
    pub kommun: TlsMaterial,
    /// Where that came from, to read it again on reload.
    pub kommun_files: TlsFiles,
    pub reload_poll: Duration,
    /// How CRLs named by URL are fetched.
    pub revocation: RevocationSettings,
    /// The configuration file, read again on reload for its pseudonym keys.
    pub file: Option<PathBuf>,
    pub events: EventsSettings,
    pub delivery: DeliverySettings,
    /// The quota towards AF shared by all clients.
    pub af_rate: Option<Configured>,
    /// Each client's event endpoint, by client name; a client without one has its events
    /// wait in the outbox.
    pub endpoints: BTreeMap<String, ClientDelivery>,
    pub admin_bind: SocketAddr,
    pub limits: LimitsFile,
    pub af: AfSettings,
    pub token_rules: TokenRules,
    pub jwks_refresh: Duration,
    pub syften: BTreeMap<String, Syfte>,
    pub clients: Vec<Arc<Client>>,
    pub pseudonyms: crate::access::pseudo::Pseudonymizer,
    pub(super) pseudonym_files: Vec<PathBuf>,
    pub audit: AuditSettings,
    /// Every certificate the configuration names (servers', clients', CAs'), for expiry
    /// metrics and readiness.
    pub certificates: Vec<NamedCertificate>,
    pub health: HealthFile,
    pub log_level: Option<String>,
    pub telemetry: Option<TelemetrySettings>,
}

/// A certificate and the configuration key it came from (`kommun.cert`, `af.ca`, …).
#[derive(Debug, Clone)]
pub struct NamedCertificate {
    pub name: String,
    pub der: CertificateDer<'static>,
}

/// The `af` listener: where, its TLS (AF's CA only), and who may send.
#[derive(Clone)]
pub struct EventsSettings {
    pub bind: SocketAddr,
    pub tls: TlsMaterial,
    pub files: TlsFiles,
    pub sender: Organisationsnummer,
    pub max_body_bytes: usize,
    pub max_batches_in_flight: usize,
}

impl fmt::Debug for EventsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventsSettings")
            .field("bind", &self.bind)
            .field("sender", &self.sender)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// Where the audit chain is kept and how it is signed.
#[derive(Clone)]
pub struct AuditSettings {
    pub store: PathBuf,
    /// The checkpoint key, PKCS#8 PEM.
    pub signing_key: Vec<u8>,
    /// Its file, read again on reload.
    pub signing_key_file: PathBuf,
    /// The public halves (PEM) of the keys that signed before it.
    pub previous_public_keys: Vec<Vec<u8>>,
    pub policy: CheckpointPolicy,
}

impl fmt::Debug for AuditSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSettings")
            .field("store", &self.store)
            .field("signing_key", &"…")
            .field("policy", &self.policy)
            .finish()
    }
}

impl AuditSettings {
    /// The public half of the checkpoint key (SubjectPublicKeyInfo PEM), for verification.
    pub fn public_key_pem(&self) -> Result<String, String> {
        let pem = std::str::from_utf8(&self.signing_key).map_err(|e| e.to_string())?;
        let pair = rcgen::KeyPair::from_pem(pem).map_err(|e| e.to_string())?;
        Ok(pair.public_key_pem())
    }
}

/// A certificate chain and key as files, to read again on reload.
#[derive(Debug, Clone)]
pub struct IdentityFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl IdentityFiles {
    pub fn load(&self) -> Result<CertAndKey, String> {
        Ok(CertAndKey {
            chain: tls::load_certs(&self.cert).map_err(|e| e.to_string())?,
            key: tls::load_key(&self.key).map_err(|e| e.to_string())?,
        })
    }

    pub fn all(&self) -> Vec<PathBuf> {
        vec![self.cert.clone(), self.key.clone()]
    }
}

/// One side of a TLS connection as loaded: the certificate brygga presents, and the CAs and
/// CRL files that verify the other side (CRLs from URLs come from the fetcher).
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    pub identity: CertAndKey,
    pub roots: Vec<CertificateDer<'static>>,
    pub crls: Vec<crate::access::trust::NamedCrl>,
}

/// The files behind [`TlsMaterial`], and the URLs of the peer's CRLs.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub identity: IdentityFiles,
    pub trust: crate::access::trust::EdgeFiles,
}

impl TlsFiles {
    /// Reads every file again.
    pub fn load(&self) -> Result<TlsMaterial, String> {
        let roots = tls::load_certs(&self.trust.ca).map_err(|e| e.to_string())?;
        Ok(TlsMaterial {
            identity: self.identity.load()?,
            crls: self.trust.crls.load_files(&roots)?,
            roots,
        })
    }

    /// Every file a reload watches.
    pub fn all(&self) -> Vec<PathBuf> {
        let mut v = self.identity.all();
        v.extend(self.trust.files());
        v
    }
}

/// How to reach AF.
#[derive(Debug, Clone)]
pub struct AfSettings {
    pub base_url: String,
    /// The client certificate towards AF, and AF's CAs and CRL files.
    pub tls: TlsMaterial,
    pub files: TlsFiles,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub breaker_failures: u32,
    pub breaker_open: Duration,
    pub retry_budget: Option<Configured>,
    pub max_connections: u32,
    /// Connections towards AF are replaced when this old (`limits.max_connection_age`).
    pub max_connection_age: Duration,
}

/// A secret whose `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// A purpose and its legal basis.
#[derive(Debug, Clone)]
pub struct Syfte {
    pub kod: String,
    pub beskrivning: String,
    pub lagrum: String,
    /// Every wording of the legal basis a request may state, normalised.
    pub(super) accepted: Vec<String>,
    pub kategorier: HashSet<Datakategori>,
}

impl Syfte {
    /// Whether a request may state `lagrum` for this purpose: one of its configured wordings,
    /// whitespace and letter case aside.
    pub fn accepts(&self, lagrum: &str) -> bool {
        let stated = normalise_lagrum(lagrum);
        self.accepted.contains(&stated)
    }
}

/// A legal basis compared as a person reads it: runs of whitespace as one space, no case.
pub(super) fn normalise_lagrum(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// A municipal client, identified by the organisation number in its certificate.
#[derive(Debug)]
pub struct Client {
    pub name: String,
    pub orgnr: Organisationsnummer,
    pub kommunkod: Kommunkod,
    pub operations: HashSet<Operation>,
    pub syften: HashSet<String>,
    /// Operations whose purposes are narrower than `syften`.
    pub syften_per_operation: HashMap<Operation, HashSet<String>>,
    pub handlaggare_prefix: Vec<String>,
    pub bind_tokens_to_certificate: bool,
    pub idp: IdpKeys,
    pub rate: Configured,
    pub rate_per_operation: HashMap<Operation, Configured>,
    pub max_concurrent: usize,
}

/// A client's event endpoint, ready to connect to.
#[derive(Clone)]
pub struct ClientDelivery {
    pub url: String,
    pub ca: Vec<CertificateDer<'static>>,
    pub crls: Vec<crate::access::trust::NamedCrl>,
    /// Where its CA and CRLs came from, to read them again on reload.
    pub trust: crate::access::trust::EdgeFiles,
}

impl fmt::Debug for ClientDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientDelivery")
            .field("url", &self.url)
            .finish()
    }
}

/// The gateway's side of delivery: its client certificate and the retry rules.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub identity: CertAndKey,
    pub identity_files: IdentityFiles,
    pub timeout: Duration,
    pub first_retry: Duration,
    pub max_retry: Duration,
    pub max_age: Duration,
    pub drain: Duration,
}

/// When to write a checkpoint, and where else it goes.
#[derive(Debug, Clone)]
pub struct CheckpointPolicy {
    pub every_records: u64,
    pub every: Duration,
    /// An append-only file outside the store that every checkpoint is also written to, so a
    /// store replaced, emptied or cut is caught (`brygga audit verify --witness`).
    pub witness: Option<std::path::PathBuf>,
    /// Records older than this are pruned (gallring), behind a signed checkpoint; None keeps
    /// them all.
    pub retention: Option<Duration>,
}

impl CheckpointPolicy {
    /// How often the writer looks for records past the retention period.
    pub fn prune_interval(&self) -> Option<Duration> {
        self.retention
            .map(|r| (r / 10).clamp(Duration::from_millis(100), Duration::from_secs(3600)))
    }
}
