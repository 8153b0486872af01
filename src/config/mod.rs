//! Configuration: a TOML file (`deny_unknown_fields`) turned once into validated runtime types.
//!
//! Every problem is collected with its key, so `brygga check-config` reports them all at once.
//! Relative paths are resolved against the directory of the configuration file.

pub mod example_keys;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::access::identity::IdpKeys;
use crate::access::tls;
use crate::model::{Datakategori, Kommunkod, Operation, Organisationsnummer};

/// The file as written. Each field is documented in `config/example.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub gateway: GatewayFile,
    pub kommun: KommunListenerFile,
    pub events: EventsListenerFile,
    pub delivery: DeliveryFile,
    pub admin: AdminListenerFile,
    #[serde(default)]
    pub limits: LimitsFile,
    pub af: AfFile,
    pub jwt: JwtFile,
    pub syften: Vec<SyfteFile>,
    pub clients: Vec<ClientFile>,
    /// Pseudonym keys, per domain; the last key of a domain writes.
    pub pseudonyms: Vec<PseudonymKeyFile>,
    pub audit: AuditFile,
    #[serde(default)]
    pub health: HealthFile,
    #[serde(default)]
    pub log: LogFile,
    #[serde(default)]
    pub telemetry: TelemetryFile,
    #[serde(default)]
    pub revocation: RevocationFile,
}

/// How brygga fetches CRLs named by URL (in a `crls` list, or as a certificate's
/// distribution point).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationFile {
    /// Fetched again at least this often; sooner when the CRL's next update comes first.
    #[serde(with = "humantime_serde")]
    pub refresh: Duration,
    /// After a failed fetch (the last good CRL stays until its next update).
    #[serde(with = "humantime_serde")]
    pub retry: Duration,
    /// One fetch, connect to last byte.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The largest CRL read.
    pub max_bytes: usize,
    /// Fetch the CRL distribution points that CA certificates and peers' certificates name; a
    /// certificate naming one whose CRL is not held yet is refused until it is fetched.
    pub follow_distribution_points: bool,
    /// A distribution point learned from a peer's certificate is forgotten, with its CRL, when
    /// no verified certificate has named it for this long.
    #[serde(with = "humantime_serde")]
    pub forget_unused_after: Duration,
}

impl Default for RevocationFile {
    fn default() -> Self {
        let d = crate::access::crl_fetch::RevocationSettings::default();
        Self {
            refresh: d.refresh,
            retry: d.retry,
            timeout: d.timeout,
            max_bytes: d.max_bytes,
            follow_distribution_points: d.follow_distribution_points,
            forget_unused_after: d.forget_unused_after,
        }
    }
}

/// Optional OpenTelemetry export of each exchange's spans (OTLP/HTTP JSON).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryFile {
    /// The collector's OTLP/HTTP traces URL (`http://…:4318/v1/traces`); none: no export.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
    /// CA bundle (PEM) for an `https://` collector.
    pub ca: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for TelemetryFile {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "brygga".into(),
            ca: None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// What `/readyz` demands and how long its answer is reused.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthFile {
    /// Not ready when a configured certificate expires (or a CRL's next update is due) in
    /// fewer days than this.
    pub min_certificate_days: u32,
    /// The status page warns, and the alert fires, below this many days.
    pub warn_certificate_days: u32,
    /// Not ready when a client's remote JWKS was last fetched longer ago than this.
    #[serde(with = "humantime_serde")]
    pub jwks_max_age: Duration,
    /// A readiness answer is reused for this long, so probes cannot drive calls to AF.
    #[serde(with = "humantime_serde")]
    pub cache: Duration,
}

impl Default for HealthFile {
    fn default() -> Self {
        Self {
            min_certificate_days: 7,
            warn_certificate_days: 30,
            jwks_max_age: Duration::from_secs(3600),
            cache: Duration::from_secs(2),
        }
    }
}

/// Logging of `brygga serve`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    /// A tracing filter: a level, or levels per module (`info,brygga::gateway::exchange=debug`).
    /// `RUST_LOG`, when set, wins.
    #[serde(default)]
    pub level: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    /// The audit store: an SQLite file (created if missing, with its directory, mode 0700).
    pub store: PathBuf,
    /// The Ed25519 key (PKCS#8 PEM) that signs checkpoints.
    pub signing_key: PathBuf,
    /// The public halves (PEM) of keys that signed checkpoints before the current one: `brygga
    /// audit verify` checks each checkpoint with the key its key id names.
    #[serde(default)]
    pub previous_public_keys: Vec<PathBuf>,
    /// A checkpoint after this many records …
    #[serde(default = "default_checkpoint_records")]
    pub checkpoint_every_records: u64,
    /// … or this long after the last one, whichever comes first.
    #[serde(with = "humantime_serde", default = "default_checkpoint_every")]
    pub checkpoint_every: Duration,
    /// A file outside the store (another disk, a mount another host copies from) that every
    /// checkpoint is appended to as well: `brygga audit verify --witness FILE` then proves the
    /// store still holds every head it witnessed.
    #[serde(default)]
    pub witness: Option<PathBuf>,
    /// Gallring: records older than this are removed, behind a signed checkpoint that becomes
    /// the chain's start (at least a day; unset keeps every record).
    #[serde(with = "humantime_serde", default)]
    pub retention: Option<Duration>,
}

fn default_checkpoint_records() -> u64 {
    1000
}

fn default_checkpoint_every() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PseudonymKeyFile {
    /// `audit`, `subscriptions`, or a follow-up recipient's domain.
    pub domain: String,
    /// Written into every pseudonym made with this key, e.g. `a1`.
    pub id: String,
    /// A file holding the key as hex (at least 32 bytes) …
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// … or an environment variable holding it.
    #[serde(default)]
    pub env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// Sent to AF as `AF-SystemId`.
    pub system_id: String,
    /// Sent to AF as `AF-Environment`: U1, I1, T1, T2 or PROD.
    pub environment: String,
    /// How often certificate, key, CRL and JWKS files are checked for changes (they are also
    /// reloaded on SIGHUP).
    #[serde(with = "humantime_serde", default = "default_reload_poll")]
    pub reload_poll: Duration,
}

fn default_reload_poll() -> Duration {
    Duration::from_secs(2)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KommunListenerFile {
    pub bind: String,
    /// Server certificate chain (PEM) presented to case systems.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA bundle (PEM) that municipal client certificates must chain to.
    pub client_ca: PathBuf,
    /// CRLs: files (PEM), or `http://`/`https://` URLs brygga fetches. When any is given, a
    /// revoked client certificate is refused at the handshake, and so is one whose CA has no
    /// CRL here.
    #[serde(default)]
    pub client_crls: Vec<String>,
}

/// The `af` listener, where AF pushes its events.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsListenerFile {
    pub bind: String,
    /// Server certificate chain (PEM) presented to AF.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA bundle (PEM) that AF's client certificate must chain to: AF's CA only.
    pub client_ca: PathBuf,
    /// CRLs of AF's CA, files or URLs (as `kommun.client_crls`).
    #[serde(default)]
    pub client_crls: Vec<String>,
    /// The organisation number in AF's client certificate; no other sender is accepted.
    pub sender_orgnr: String,
    /// The largest batch body accepted.
    #[serde(default = "default_events_body")]
    pub max_body_bytes: usize,
    /// Batches read at once; more are refused (429, Retry-After) before their bodies are read,
    /// so the listener holds at most this many bodies.
    #[serde(default = "default_batches_in_flight")]
    pub max_batches_in_flight: usize,
}

fn default_batches_in_flight() -> usize {
    8
}

fn default_events_body() -> usize {
    1024 * 1024
}

fn default_rate() -> crate::access::limit::Rate {
    crate::access::limit::Rate {
        per_second: 50,
        burst: 100,
    }
}

fn default_max_concurrent() -> usize {
    64
}

/// How AF's events are delivered to the case systems.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryFile {
    /// The gateway's client certificate (PEM) towards the case systems' endpoints.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// One delivery attempt, connect to receipt.
    #[serde(with = "humantime_serde", default = "default_delivery_timeout")]
    pub timeout: Duration,
    /// The wait before the first retry; it doubles each time, with jitter …
    #[serde(with = "humantime_serde", default = "default_first_retry")]
    pub first_retry: Duration,
    /// … up to this.
    #[serde(with = "humantime_serde", default = "default_max_retry")]
    pub max_retry: Duration,
    /// An event not delivered this long after it arrived is given up (dead-lettered).
    #[serde(with = "humantime_serde", default = "default_max_age")]
    pub max_age: Duration,
    /// On shutdown, pending deliveries get one more attempt for at most this long.
    #[serde(with = "humantime_serde", default = "default_drain")]
    pub drain: Duration,
}

fn default_drain() -> Duration {
    Duration::from_secs(5)
}

fn default_delivery_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_first_retry() -> Duration {
    Duration::from_secs(1)
}
fn default_max_retry() -> Duration {
    Duration::from_secs(300)
}
fn default_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// Where a client's case system receives AF's events.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientDeliveryFile {
    /// An https URL, e.g. `https://arende.stockholm.example/brygga/handelser`.
    pub url: String,
    /// The CA (PEM) the endpoint's server certificate must chain to.
    pub ca: PathBuf,
    /// CRLs of that CA, files or URLs (as `kommun.client_crls`).
    #[serde(default)]
    pub crls: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminListenerFile {
    pub bind: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsFile {
    /// Largest request body accepted; more is refused with 413.
    pub max_body_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub tls_handshake_timeout: Duration,
    /// Time allowed for a request head (slowloris protection), counted on a kept connection
    /// from the end of the previous answer: an idle connection is closed then.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// The idle time announced to HTTP/1.1 clients as `Keep-Alive: timeout=N`: at least a
    /// second shorter than `header_read_timeout`, so a client that honours it never sends a
    /// request into a connection the gateway is closing.
    #[serde(with = "humantime_serde", default = "default_keep_alive")]
    pub keep_alive_timeout: Duration,
    /// Time allowed to receive a request body.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Calls towards AF per second, shared by all clients (AF's own quota); none: unlimited.
    #[serde(default)]
    pub af_rate: Option<crate::access::limit::Rate>,
    /// The whole exchange of one request, arrival to answer (above the AF and body deadlines).
    #[serde(with = "humantime_serde", default = "default_operation_deadline")]
    pub operation_deadline: Duration,
    /// Connections open at once on each listener; more are closed as they come.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections open at once with one client certificate.
    #[serde(default = "default_max_per_certificate")]
    pub max_connections_per_certificate: usize,
    /// A connection older than this is closed gracefully (and pooled connections towards AF
    /// and the case systems are replaced), so a revocation or a new certificate reaches it.
    #[serde(with = "humantime_serde", default = "default_max_connection_age")]
    pub max_connection_age: Duration,
    /// Bytes of answers built and not yet sent on one connection (HTTP/2 streams whose
    /// window the client keeps shut), counting 2 KiB for each stream; a connection that goes
    /// over with more than one answer pending is closed.
    #[serde(default = "default_max_pending_per_connection")]
    pub max_pending_bytes_per_connection: usize,
    /// The same for all connections of one client certificate together.
    #[serde(default = "default_max_pending_per_certificate")]
    pub max_pending_bytes_per_certificate: usize,
    /// Connections in their TLS handshake at once, per listener (they have not shown a
    /// certificate yet, and take no place of `max_connections`). When all are taken, the
    /// oldest handshake is closed to make room.
    #[serde(default = "default_max_handshakes")]
    pub max_handshakes: usize,
    /// Connections in their TLS handshake at once from one source (an IPv4 address, an
    /// IPv6 /64); more are closed as they come.
    #[serde(default = "default_max_handshakes_per_address")]
    pub max_handshakes_per_address: usize,
    /// New connections per second (and burst) from one source, per TLS listener; more are
    /// closed as they come (each handshake costs the gateway a key exchange and a signature).
    #[serde(default = "default_new_connections_per_address")]
    pub new_connections_per_address: crate::access::limit::Rate,
    /// `false` turns off the rate, concurrency and AF-quota limits (not the connection caps,
    /// deadlines or sizes): only for measuring what the limits cost (`brygga bench`).
    #[serde(default = "default_true")]
    pub enforce_rate_limits: bool,
}

fn default_keep_alive() -> Duration {
    Duration::from_secs(5)
}

fn default_true() -> bool {
    true
}

fn default_operation_deadline() -> Duration {
    // Above the JWKS fetch (10 s), the body (10 s) and the AF call (5 s) together.
    Duration::from_secs(30)
}

fn default_max_connections() -> usize {
    10_000
}

fn default_max_per_certificate() -> usize {
    512
}

fn default_max_connection_age() -> Duration {
    Duration::from_secs(3600)
}

fn default_max_pending_per_connection() -> usize {
    2 * 1024 * 1024
}

fn default_max_pending_per_certificate() -> usize {
    16 * 1024 * 1024
}

fn default_max_handshakes() -> usize {
    1024
}

fn default_max_handshakes_per_address() -> usize {
    // Room for a case system behind one NAT address opening its whole pool at once.
    128
}

fn default_new_connections_per_address() -> crate::access::limit::Rate {
    crate::access::limit::Rate {
        per_second: 100,
        burst: 500,
    }
}

impl Default for LimitsFile {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            // Two round trips and a signature: seconds on the slowest link.
            tls_handshake_timeout: Duration::from_secs(3),
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: default_keep_alive(),
            body_read_timeout: Duration::from_secs(10),
            af_rate: None,
            operation_deadline: default_operation_deadline(),
            max_connections: default_max_connections(),
            max_connections_per_certificate: default_max_per_certificate(),
            max_connection_age: default_max_connection_age(),
            max_pending_bytes_per_connection: default_max_pending_per_connection(),
            max_pending_bytes_per_certificate: default_max_pending_per_certificate(),
            max_handshakes: default_max_handshakes(),
            max_handshakes_per_address: default_max_handshakes_per_address(),
            new_connections_per_address: default_new_connections_per_address(),
            enforce_rate_limits: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AfFile {
    /// Base URL of AF's API, `https://…` (no trailing slash needed).
    pub base_url: String,
    /// CA bundle that AF's server certificate must chain to.
    pub ca: PathBuf,
    /// CRLs of that CA, files or URLs (as `kommun.client_crls`).
    #[serde(default)]
    pub crls: Vec<String>,
    /// The gateway's client certificate and key towards AF.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// AF's OAuth2 token endpoint (client credentials).
    pub token_url: String,
    pub client_id: String,
    /// Name of an environment variable holding the client secret, if AF requires one on top
    /// of the client certificate.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Deadline for one AF call, token fetch included.
    #[serde(with = "humantime_serde", default = "default_af_timeout")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde", default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Calls in a row that show AF down (unreachable, timed out, 5xx) before the breaker
    /// opens and calls fail at once …
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// … for this long; then one call probes.
    #[serde(with = "humantime_serde", default = "default_breaker_open")]
    pub breaker_open: Duration,
    /// A read that failed because AF could not be reached or answered 502/503/504 is tried
    /// once more within its deadline, while these retries stay within this rate.
    #[serde(default = "default_retry_budget")]
    pub retry_budget: crate::access::limit::Rate,
    /// Calls to AF under way at once, so connections to AF: one more waits for a free one
    /// within its deadline (then 504 `AF_TIDSGRANS`).
    #[serde(default = "default_af_max_connections")]
    pub max_connections: u32,
}

fn default_af_max_connections() -> u32 {
    100
}

fn default_af_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_retry_budget() -> crate::access::limit::Rate {
    crate::access::limit::Rate {
        per_second: 10,
        burst: 20,
    }
}

fn default_breaker_failures() -> u32 {
    5
}

fn default_breaker_open() -> Duration {
    Duration::from_millis(500)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtFile {
    /// The `aud` every case-worker token must carry.
    pub audience: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(with = "humantime_serde", default = "default_leeway")]
    pub leeway: Duration,
    /// The longest token lifetime (`exp - iat`) accepted.
    #[serde(with = "humantime_serde", default = "default_max_lifetime")]
    pub max_lifetime: Duration,
    /// Require a `jti` in every token and accept each token once.
    #[serde(default)]
    pub replay_protection: bool,
    /// How often JWKS fetched from a URL are fetched again.
    #[serde(with = "humantime_serde", default = "default_jwks_refresh")]
    pub jwks_refresh: Duration,
}

fn default_jwks_min_refresh() -> Duration {
    Duration::from_secs(60)
}

fn default_jwks_grace() -> Duration {
    Duration::from_secs(3600)
}

fn default_jwks_refresh() -> Duration {
    Duration::from_secs(600)
}

fn default_max_lifetime() -> Duration {
    Duration::from_secs(3600)
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyfteFile {
    pub kod: String,
    pub beskrivning: String,
    /// The legal basis, as recorded for what is disclosed under this purpose; a request's
    /// `Lagrum` must state it, or one of `lagrum_godtas`.
    pub lagrum: String,
    /// Other wordings of the legal basis a request may state for this purpose.
    #[serde(default)]
    pub lagrum_godtas: Vec<String>,
    /// The data categories this purpose may see; everything else is removed from answers.
    pub kategorier: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    /// A short name for logs and metrics (never personal data).
    pub name: String,
    /// Organisation number as in the client certificate, e.g. 212000-0142.
    pub orgnr: String,
    pub kommunkod: String,
    /// Operations this client may call.
    pub operations: Vec<String>,
    /// Purpose codes this client may use.
    pub syften: Vec<String>,
    /// Narrower purposes for some operations: operation name → the purposes allowed for it.
    #[serde(default)]
    pub syften_per_operation: BTreeMap<String, Vec<String>>,
    /// If given, the case worker's HSA-id must start with one of these.
    #[serde(default)]
    pub handlaggare_prefix: Vec<String>,
    /// Require RFC 8705 certificate-bound tokens (`cnf.x5t#S256`) from this client.
    #[serde(default)]
    pub bind_tokens_to_certificate: bool,
    pub idp: IdpFile,
    /// Where this client's case system receives AF's events; without it, its subscriptions'
    /// events wait in the outbox until it is configured (or they are given up).
    #[serde(default)]
    pub delivery: Option<ClientDeliveryFile>,
    /// Requests per second and burst, all operations together (default 50 and 100).
    #[serde(default = "default_rate")]
    pub rate: crate::access::limit::Rate,
    /// Narrower rates for single operations.
    #[serde(default)]
    pub rate_per_operation: BTreeMap<String, crate::access::limit::Rate>,
    /// Requests under way at once (default 64).
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpFile {
    pub issuer: String,
    /// JWKS file with the identity provider's public keys (or `jwks_url`).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// HTTPS URL of the JWKS (or `jwks_file`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// CA bundle the JWKS URL's server certificate must chain to.
    #[serde(default)]
    pub jwks_ca: Option<PathBuf>,
    /// An unknown `kid` fetches the JWKS again at most this often.
    #[serde(with = "humantime_serde", default = "default_jwks_min_refresh")]
    pub jwks_min_refresh: Duration,
    /// How long a key that left the JWKS is still accepted.
    #[serde(with = "humantime_serde", default = "default_jwks_grace")]
    pub jwks_grace: Duration,
    /// The only algorithm accepted from this issuer: ES256, RS256 or EdDSA.
    pub algorithm: String,
}

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
    pub revocation: crate::access::crl_fetch::RevocationSettings,
    /// The configuration file, read again on reload for its pseudonym keys.
    pub file: Option<PathBuf>,
    pub events: EventsSettings,
    pub delivery: DeliverySettings,
    /// The quota towards AF shared by all clients.
    pub af_rate: Option<crate::access::limit::Configured>,
    /// Each client's event endpoint, by client name; a client without one has its events
    /// wait in the outbox.
    pub endpoints: BTreeMap<String, ClientDelivery>,
    pub admin_bind: SocketAddr,
    pub limits: LimitsFile,
    pub af: AfSettings,
    pub token_rules: crate::access::identity::TokenRules,
    pub jwks_refresh: Duration,
    pub syften: BTreeMap<String, Syfte>,
    pub clients: Vec<Arc<Client>>,
    pub pseudonyms: crate::access::pseudo::Pseudonymizer,
    pseudonym_files: Vec<PathBuf>,
    pub audit: AuditSettings,
    /// Every certificate the configuration names (servers', clients', CAs'), for expiry
    /// metrics and readiness.
    pub certificates: Vec<NamedCertificate>,
    pub health: HealthFile,
    pub log_level: Option<String>,
    pub telemetry: Option<crate::ops::telemetry::TelemetrySettings>,
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
    pub policy: crate::store::audit::CheckpointPolicy,
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
    pub retry_budget: Option<crate::access::limit::Configured>,
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
    accepted: Vec<String>,
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
fn normalise_lagrum(s: &str) -> String {
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
    pub rate: crate::access::limit::Configured,
    pub rate_per_operation: HashMap<Operation, crate::access::limit::Configured>,
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

/// The pseudonym keys of `[[pseudonyms]]`; problems go to `c`.
fn pseudonym_keys(
    c: &mut Checker,
    entries: &[PseudonymKeyFile],
) -> crate::access::pseudo::Pseudonymizer {
    let mut pseudonyms = crate::access::pseudo::Pseudonymizer::default();
    for (i, k) in entries.iter().enumerate() {
        let key = format!("pseudonyms[{i}]");
        let file = k.file.as_ref().map(|p| c.path(p));
        match crate::access::pseudo::read_key(file.as_deref(), k.env.as_deref()) {
            Ok(bytes) => {
                if let Err(e) = pseudonyms.add_key(&k.domain, &k.id, &bytes) {
                    c.fail(&key, e);
                }
            }
            Err(e) => c.fail(&key, e),
        }
    }
    for domain in ["audit", "subscriptions"] {
        if !pseudonyms.has_domain(domain) && !entries.iter().any(|k| k.domain == domain) {
            c.fail(
                "pseudonyms",
                format!("a key for the domain '{domain}' is required"),
            );
        }
    }
    pseudonyms
}

/// The values of `AF-Environment`.
pub const ENVIRONMENTS: [&str; 5] = ["U1", "I1", "T1", "T2", "PROD"];

struct Checker {
    dir: PathBuf,
    problems: Vec<Problem>,
    /// Every certificate read, by the key it was configured under: for expiry warnings.
    loaded: Vec<NamedCertificate>,
}

impl Checker {
    /// A configured rate with its quota, or the problem with it.
    fn rate(
        &mut self,
        key: String,
        r: crate::access::limit::Rate,
    ) -> Option<crate::access::limit::Configured> {
        match r.quota() {
            Ok(quota) => Some(crate::access::limit::Configured { rate: r, quota }),
            Err(e) => {
                self.fail(key, e);
                None
            }
        }
    }

    fn fail(&mut self, key: impl Into<String>, reason: impl fmt::Display) {
        self.problems.push(Problem {
            key: key.into(),
            reason: reason.to_string(),
        });
    }
    fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.dir.join(p)
        }
    }
    fn addr(&mut self, key: &str, s: &str) -> Option<SocketAddr> {
        s.parse()
            .map_err(|_| {
                self.fail(
                    key,
                    format!("'{s}' is not an address such as 127.0.0.1:8443"),
                )
            })
            .ok()
    }
    fn certs(&mut self, key: &str, p: &Path) -> Option<Vec<CertificateDer<'static>>> {
        let p = self.path(p);
        let certs = tls::load_certs(&p).map_err(|e| self.fail(key, e)).ok()?;
        for (i, der) in certs.iter().enumerate() {
            self.loaded.push(NamedCertificate {
                name: if certs.len() == 1 {
                    key.to_owned()
                } else {
                    format!("{key}[{i}]")
                },
                der: der.clone(),
            });
        }
        Some(certs)
    }
    fn key(&mut self, key: &str, p: &Path) -> Option<PrivateKeyDer<'static>> {
        let p = self.path(p);
        tls::load_key(&p).map_err(|e| self.fail(key, e)).ok()
    }
    /// CRL entries: files are read now (each CRL one WebPKI reads, signed by one of `cas`
    /// when they loaded), URLs checked (fetched once the gateway runs).
    fn crl_sources(
        &mut self,
        key: &str,
        entries: &[String],
        cas: Option<&[CertificateDer<'static>]>,
    ) -> (
        crate::access::trust::CrlSources,
        Vec<crate::access::trust::NamedCrl>,
    ) {
        let sources = crate::access::trust::CrlSources::from_entries(key, entries, &self.dir);
        for (i, url) in &sources.urls {
            match reqwest::Url::parse(url) {
                Ok(u) if u.host().is_some() => {}
                _ => self.fail(format!("{key}[{i}]"), "not a URL with a host"),
            }
        }
        let mut crls = Vec::new();
        for (i, file) in &sources.files {
            match crate::access::crl::read_file(file, cas) {
                Ok(found) => {
                    crls.extend(found.into_iter().map(|der| crate::access::trust::NamedCrl {
                        name: format!("{key}[{i}]"),
                        der,
                    }))
                }
                Err(err) => self.fail(format!("{key}[{i}]"), err),
            }
        }
        (sources, crls)
    }

    /// One side of a TLS connection: brygga's certificate and key, and the CAs and CRLs that
    /// verify the other side (each named by its key), with the files they came from.
    fn tls(
        &mut self,
        edge: &str,
        cert: (&str, &Path),
        key: (&str, &Path),
        ca: (&str, &Path),
        crls: (&str, &[String]),
    ) -> Option<(TlsMaterial, TlsFiles)> {
        let chain = self.certs(cert.0, cert.1);
        let private = self.key(key.0, key.1);
        let roots = self.certs(ca.0, ca.1);
        let (sources, loaded) = self.crl_sources(crls.0, crls.1, roots.as_deref());
        let files = TlsFiles {
            identity: IdentityFiles {
                cert: self.path(cert.1),
                key: self.path(key.1),
            },
            trust: crate::access::trust::EdgeFiles {
                name: edge.to_owned(),
                ca: self.path(ca.1),
                crls: sources,
            },
        };
        Some((
            TlsMaterial {
                identity: CertAndKey {
                    chain: chain?,
                    key: private?,
                },
                roots: roots?,
                crls: loaded,
            },
            files,
        ))
    }

    fn https(&mut self, key: &str, s: &str) {
        match reqwest::Url::parse(s) {
            Ok(u) if u.scheme() == "https" && u.host().is_some() => {}
            Ok(_) => self.fail(key, "must be an https:// URL with a host"),
            Err(e) => self.fail(key, format!("not a URL: {e}")),
        }
    }
    fn positive(&mut self, key: &str, d: Duration) {
        if d.is_zero() {
            self.fail(key, "must be longer than zero");
        }
    }
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |key: &str, reason: String| ConfigError {
            file: path.to_owned(),
            problems: vec![Problem {
                key: key.to_owned(),
                reason,
            }],
        };
        let text = std::fs::read_to_string(path).map_err(|e| err("(file)", e.to_string()))?;
        let file: ConfigFile = toml::from_str(&text).map_err(|e| {
            let key = e
                .span()
                .map(|s| format!("line {}", text[..s.start].lines().count().max(1)))
                .unwrap_or_else(|| "(file)".into());
            err(&key, e.message().to_owned())
        })?;
        let dir = path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut config = Self::from_file(file, &dir).map_err(|problems| ConfigError {
            file: path.to_owned(),
            problems,
        })?;
        config.file = Some(path.to_owned());
        Ok(config)
    }

    /// The pseudonym keys as the configuration file lists them now (a reload: a key added to
    /// a domain writes from then on, and every key is searched).
    pub fn pseudonyms_now(&self) -> Result<crate::access::pseudo::Pseudonymizer, String> {
        let path = self
            .file
            .as_deref()
            .ok_or("the configuration was not read from a file")?;
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: ConfigFile =
            toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut c = Checker {
            dir: dir.to_owned(),
            problems: Vec::new(),
            loaded: Vec::new(),
        };
        let keys = pseudonym_keys(&mut c, &file.pseudonyms);
        match c.problems.first() {
            None => Ok(keys),
            Some(p) => Err(format!("{}: {}", p.key, p.reason)),
        }
    }

    /// The files the pseudonym keys are read from.
    pub fn pseudonym_files(&self) -> Vec<PathBuf> {
        self.pseudonym_files.clone()
    }

    /// Validates a parsed file; relative paths are taken from `dir`.
    pub fn from_file(f: ConfigFile, dir: &Path) -> Result<Config, Vec<Problem>> {
        let mut c = Checker {
            dir: dir.to_owned(),
            problems: Vec::new(),
            loaded: Vec::new(),
        };
        let valid_id = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if !valid_id(&f.gateway.system_id) {
            c.fail(
                "gateway.system_id",
                "must be 1-64 of A-Z, a-z, 0-9, '.', '_', '-'",
            );
        }
        if !ENVIRONMENTS.contains(&f.gateway.environment.as_str()) {
            c.fail(
                "gateway.environment",
                format!("must be one of {ENVIRONMENTS:?}"),
            );
        }
        let kommun_bind = c.addr("kommun.bind", &f.kommun.bind);
        let kommun = c.tls(
            "kommun",
            ("kommun.cert", &f.kommun.cert),
            ("kommun.key", &f.kommun.key),
            ("kommun.client_ca", &f.kommun.client_ca),
            ("kommun.client_crls", &f.kommun.client_crls),
        );
        let admin_bind = c.addr("admin.bind", &f.admin.bind);
        let events_bind = c.addr("events.bind", &f.events.bind);
        let events_tls = c.tls(
            "af-listener",
            ("events.cert", &f.events.cert),
            ("events.key", &f.events.key),
            ("events.client_ca", &f.events.client_ca),
            ("events.client_crls", &f.events.client_crls),
        );
        for (key, t) in [("kommun.cert", &kommun), ("events.cert", &events_tls)] {
            if let Some((m, _)) = t
                && let Err(e) = tls::mtls_server_config(
                    m.identity.chain.clone(),
                    m.identity.key.clone_key(),
                    &m.roots,
                    &m.crls.iter().map(|c| c.der.clone()).collect::<Vec<_>>(),
                )
            {
                c.fail(key, e);
            }
        }
        let events_sender = Organisationsnummer::parse(&f.events.sender_orgnr)
            .map_err(|e| c.fail("events.sender_orgnr", e))
            .ok();
        if !(1024..=64 * 1024 * 1024).contains(&f.events.max_body_bytes) {
            c.fail("events.max_body_bytes", "must be from 1024 to 67108864");
        }
        if !(1..=1024).contains(&f.events.max_batches_in_flight) {
            c.fail("events.max_batches_in_flight", "must be from 1 to 1024");
        }
        let af_rate = f
            .limits
            .af_rate
            .and_then(|r| c.rate("limits.af_rate".into(), r));
        let delivery_chain = c.certs("delivery.client_cert", &f.delivery.client_cert);
        let delivery_key = c.key("delivery.client_key", &f.delivery.client_key);
        let d = &f.delivery;
        for (k, v) in [
            ("delivery.timeout", d.timeout),
            ("delivery.first_retry", d.first_retry),
            ("delivery.max_retry", d.max_retry),
            ("delivery.max_age", d.max_age),
        ] {
            c.positive(k, v);
        }
        if d.first_retry > d.max_retry {
            c.fail(
                "delivery.first_retry",
                "must not be longer than delivery.max_retry",
            );
        }
        for (k, v, most, said) in [
            ("delivery.timeout", d.timeout, 300, "5m"),
            ("delivery.max_retry", d.max_retry, 24 * 3600, "24h"),
            ("delivery.max_age", d.max_age, 30 * 24 * 3600, "30 days"),
            ("delivery.drain", d.drain, 300, "5m"),
        ] {
            if v > Duration::from_secs(most) {
                c.fail(k, format!("must be at most {said}"));
            }
        }
        let delivery = match (delivery_chain, delivery_key) {
            (Some(chain), Some(key)) => Some(DeliverySettings {
                identity: CertAndKey { chain, key },
                identity_files: IdentityFiles {
                    cert: c.path(&f.delivery.client_cert),
                    key: c.path(&f.delivery.client_key),
                },
                timeout: d.timeout,
                first_retry: d.first_retry,
                max_retry: d.max_retry,
                max_age: d.max_age,
                drain: d.drain,
            }),
            _ => None,
        };
        let events = match (events_bind, events_tls, events_sender) {
            (Some(bind), Some((tls, files)), Some(sender)) => Some(EventsSettings {
                bind,
                tls,
                files,
                sender,
                max_body_bytes: f.events.max_body_bytes,
                max_batches_in_flight: f.events.max_batches_in_flight,
            }),
            _ => None,
        };

        let l = &f.limits;
        if !(1024..=16 * 1024 * 1024).contains(&l.max_body_bytes) {
            c.fail("limits.max_body_bytes", "must be from 1024 to 16777216");
        }
        c.positive("limits.tls_handshake_timeout", l.tls_handshake_timeout);
        c.positive("limits.header_read_timeout", l.header_read_timeout);
        if l.keep_alive_timeout + Duration::from_secs(1) > l.header_read_timeout {
            c.fail(
                "limits.keep_alive_timeout",
                "must be at least 1s shorter than limits.header_read_timeout, at which an idle connection is closed",
            );
        }
        c.positive("limits.body_read_timeout", l.body_read_timeout);
        // Deadlines are added to the clock: an absurd one would overflow it.
        for (key, d) in [
            ("limits.tls_handshake_timeout", l.tls_handshake_timeout),
            ("limits.header_read_timeout", l.header_read_timeout),
            ("limits.body_read_timeout", l.body_read_timeout),
            ("af.timeout", f.af.timeout),
            ("af.connect_timeout", f.af.connect_timeout),
            ("gateway.reload_poll", f.gateway.reload_poll),
        ] {
            if d > Duration::from_secs(3600) {
                c.fail(key, "must be at most 1h");
            }
        }
        c.positive("gateway.reload_poll", f.gateway.reload_poll);

        c.https("af.base_url", &f.af.base_url);
        c.https("af.token_url", &f.af.token_url);
        let af_tls = c.tls(
            "af",
            ("af.client_cert", &f.af.client_cert),
            ("af.client_key", &f.af.client_key),
            ("af.ca", &f.af.ca),
            ("af.crls", &f.af.crls),
        );
        let r = &f.revocation;
        for (key, d, most) in [
            ("revocation.refresh", r.refresh, 7 * 24 * 3600),
            ("revocation.retry", r.retry, 24 * 3600),
            ("revocation.timeout", r.timeout, 300),
            (
                "revocation.forget_unused_after",
                r.forget_unused_after,
                30 * 24 * 3600,
            ),
        ] {
            c.positive(key, d);
            if d > Duration::from_secs(most) {
                c.fail(
                    key,
                    format!(
                        "must be at most {}",
                        humantime::format_duration(Duration::from_secs(most))
                    ),
                );
            }
        }
        if !(1024..=1024 * 1024 * 1024).contains(&r.max_bytes) {
            c.fail("revocation.max_bytes", "must be from 1024 to 1073741824");
        }
        c.positive("limits.max_connection_age", f.limits.max_connection_age);
        if f.af.client_id.trim().is_empty() {
            c.fail("af.client_id", "must not be empty");
        }
        let client_secret = match &f.af.client_secret_env {
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Some(Secret(v)),
                _ => {
                    c.fail(
                        "af.client_secret_env",
                        format!("environment variable {var} is not set"),
                    );
                    None
                }
            },
            None => None,
        };
        c.positive("af.timeout", f.af.timeout);
        c.positive("af.connect_timeout", f.af.connect_timeout);
        c.positive("limits.operation_deadline", f.limits.operation_deadline);
        if f.limits.operation_deadline > Duration::from_secs(300) {
            c.fail("limits.operation_deadline", "must be at most 5m");
        }
        if !(1..=1_000_000).contains(&f.limits.max_connections) {
            c.fail("limits.max_connections", "must be from 1 to 1000000");
        }
        let pending = 64 * 1024..=1024 * 1024 * 1024;
        if !pending.contains(&f.limits.max_pending_bytes_per_connection) {
            c.fail(
                "limits.max_pending_bytes_per_connection",
                "must be from 65536 to 1073741824",
            );
        }
        if !pending.contains(&f.limits.max_pending_bytes_per_certificate)
            || f.limits.max_pending_bytes_per_certificate
                < f.limits.max_pending_bytes_per_connection
        {
            c.fail(
                "limits.max_pending_bytes_per_certificate",
                "must be from limits.max_pending_bytes_per_connection to 1073741824",
            );
        }
        if !(1..=100_000).contains(&f.limits.max_handshakes) {
            c.fail("limits.max_handshakes", "must be from 1 to 100000");
        }
        if !(1..=f.limits.max_handshakes.max(1)).contains(&f.limits.max_handshakes_per_address) {
            c.fail(
                "limits.max_handshakes_per_address",
                "must be from 1 to limits.max_handshakes",
            );
        }
        c.rate(
            "limits.new_connections_per_address".into(),
            f.limits.new_connections_per_address,
        );
        if !(1..=f.limits.max_connections.max(1))
            .contains(&f.limits.max_connections_per_certificate)
        {
            c.fail(
                "limits.max_connections_per_certificate",
                "must be from 1 to limits.max_connections",
            );
        }
        c.positive("af.breaker_open", f.af.breaker_open);
        let retry_budget = c.rate("af.retry_budget".into(), f.af.retry_budget);
        if f.health.warn_certificate_days < f.health.min_certificate_days {
            c.fail(
                "health.warn_certificate_days",
                "must be at least health.min_certificate_days",
            );
        }
        if f.health.cache > Duration::from_secs(60) {
            c.fail("health.cache", "must be at most 60s");
        }
        c.positive("health.jwks_max_age", f.health.jwks_max_age);
        if f.health.jwks_max_age <= f.jwt.jwks_refresh {
            c.fail(
                "health.jwks_max_age",
                "must be longer than jwt.jwks_refresh, or every refresh cycle makes the gateway not ready",
            );
        }
        if let Some(level) = &f.log.level
            && let Err(e) = tracing_subscriber::EnvFilter::try_new(level)
        {
            c.fail("log.level", format!("not a log filter: {e}"));
        }
        let telemetry = match &f.telemetry.otlp_endpoint {
            None => None,
            Some(url) => {
                let parsed = reqwest::Url::parse(url);
                let ca = match &f.telemetry.ca {
                    Some(p) => c.certs("telemetry.ca", p),
                    None => Some(Vec::new()),
                };
                match parsed {
                    Ok(u) if u.host().is_none() || !matches!(u.scheme(), "http" | "https") => {
                        c.fail(
                            "telemetry.otlp_endpoint",
                            "must be an http:// or https:// URL with a host",
                        );
                        None
                    }
                    Ok(u) if u.scheme() == "https" && f.telemetry.ca.is_none() => {
                        c.fail(
                            "telemetry.ca",
                            "an https:// collector needs the CA bundle it chains to",
                        );
                        None
                    }
                    Ok(_) => {
                        if f.telemetry.service_name.trim().is_empty()
                            || f.telemetry.service_name.len() > 64
                        {
                            c.fail("telemetry.service_name", "must be 1 to 64 characters");
                        }
                        c.positive("telemetry.timeout", f.telemetry.timeout);
                        ca.map(|ca| crate::ops::telemetry::TelemetrySettings {
                            endpoint: url.clone(),
                            service_name: f.telemetry.service_name.clone(),
                            ca,
                            timeout: f.telemetry.timeout,
                        })
                    }
                    Err(e) => {
                        c.fail("telemetry.otlp_endpoint", format!("not a URL: {e}"));
                        None
                    }
                }
            }
        };
        if !(1..=10_000).contains(&f.af.max_connections) {
            c.fail("af.max_connections", "must be from 1 to 10000");
        }
        if !(1..=1000).contains(&f.af.breaker_failures) {
            c.fail("af.breaker_failures", "must be from 1 to 1000");
        }

        if f.jwt.audience.trim().is_empty() {
            c.fail("jwt.audience", "must not be empty");
        }
        if f.jwt.leeway > Duration::from_secs(300) {
            c.fail("jwt.leeway", "must be at most 5m");
        }
        if f.jwt.max_lifetime.is_zero() || f.jwt.max_lifetime > Duration::from_secs(24 * 3600) {
            c.fail(
                "jwt.max_lifetime",
                "must be longer than zero and at most 24h",
            );
        }
        if f.jwt.jwks_refresh < Duration::from_secs(10)
            || f.jwt.jwks_refresh > Duration::from_secs(24 * 3600)
        {
            c.fail("jwt.jwks_refresh", "must be from 10s to 24h");
        }

        let mut syften = BTreeMap::new();
        for (i, s) in f.syften.iter().enumerate() {
            let key = format!("syften[{i}]");
            if !crate::contract::soap::is_code(&s.kod) {
                c.fail(format!("{key}.kod"), "must match [A-Z][A-Z0-9-]{1,31}");
            }
            if s.lagrum.trim().is_empty() || s.lagrum.chars().count() > 500 {
                c.fail(format!("{key}.lagrum"), "must be 1-500 characters");
            }
            if s.beskrivning.trim().is_empty() {
                c.fail(format!("{key}.beskrivning"), "must not be empty");
            }
            let mut kategorier = HashSet::new();
            for (j, k) in s.kategorier.iter().enumerate() {
                match Datakategori::from_code(k) {
                    Some(d) => {
                        kategorier.insert(d);
                    }
                    None => c.fail(
                        format!("{key}.kategorier[{j}]"),
                        format!("'{k}' is not a data category ({})", Datakategori::codes()),
                    ),
                }
            }
            for (j, l) in s.lagrum_godtas.iter().enumerate() {
                if l.trim().is_empty() || l.chars().count() > 500 {
                    c.fail(
                        format!("{key}.lagrum_godtas[{j}]"),
                        "must be 1-500 characters",
                    );
                }
            }
            let syfte = Syfte {
                kod: s.kod.clone(),
                beskrivning: s.beskrivning.clone(),
                lagrum: s.lagrum.clone(),
                accepted: std::iter::once(&s.lagrum)
                    .chain(&s.lagrum_godtas)
                    .map(|l| normalise_lagrum(l))
                    .collect(),
                kategorier,
            };
            if syften.insert(s.kod.clone(), syfte).is_some() {
                c.fail(format!("{key}.kod"), format!("{} is listed twice", s.kod));
            }
        }

        let pseudonyms = pseudonym_keys(&mut c, &f.pseudonyms);
        let pseudonym_files = f
            .pseudonyms
            .iter()
            .filter_map(|k| k.file.as_ref().map(|p| c.path(p)))
            .collect();
        let signing_key = match std::fs::read(c.path(&f.audit.signing_key)) {
            Ok(pem) => match jsonwebtoken::EncodingKey::from_ed_pem(&pem) {
                Ok(_) => Some(pem),
                Err(e) => {
                    c.fail(
                        "audit.signing_key",
                        format!("not an Ed25519 private key in PKCS#8 PEM: {e}"),
                    );
                    None
                }
            },
            Err(e) => {
                c.fail(
                    "audit.signing_key",
                    format!("{}: {e}", f.audit.signing_key.display()),
                );
                None
            }
        };
        let mut previous_public_keys = Vec::new();
        for (i, p) in f.audit.previous_public_keys.iter().enumerate() {
            match std::fs::read(c.path(p)) {
                Ok(pem) if jsonwebtoken::DecodingKey::from_ed_pem(&pem).is_ok() => {
                    previous_public_keys.push(pem)
                }
                Ok(_) => c.fail(
                    format!("audit.previous_public_keys[{i}]"),
                    "not an Ed25519 public key in PEM",
                ),
                Err(e) => c.fail(
                    format!("audit.previous_public_keys[{i}]"),
                    format!("{}: {e}", p.display()),
                ),
            }
        }
        let store = c.path(&f.audit.store);
        // A missing directory is made at start; something else in its place is a mistake.
        if store.is_dir() {
            c.fail(
                "audit.store",
                format!(
                    "{} is a directory; name the SQLite file in it",
                    store.display()
                ),
            );
        } else if let Some(dir) = store.ancestors().skip(1).find(|a| a.exists())
            && !dir.is_dir()
        {
            c.fail(
                "audit.store",
                format!("{} is not a directory", dir.display()),
            );
        }
        // A typo here erases the evidence: "2s" for "2y".
        if let Some(r) = f.audit.retention
            && r < Duration::from_secs(86_400)
        {
            c.fail(
                "audit.retention",
                format!(
                    "{} is shorter than a day; give the period records are kept (e.g. \"2years\")",
                    humantime::format_duration(r)
                ),
            );
        }
        // A witness beside the store's own files is no witness: whoever replaces the one
        // replaces the other.
        if let Some(w) = &f.audit.witness {
            let w = c.path(w);
            let store_files =
                ["", "-wal", "-shm", "-journal"].map(|s| format!("{}{s}", store.display()));
            if store_files.iter().any(|s| Path::new(s) == w) {
                c.fail(
                    "audit.witness",
                    format!(
                        "{} is the store itself; name a file on another path",
                        w.display()
                    ),
                );
            } else if w.is_dir() {
                c.fail(
                    "audit.witness",
                    format!("{} is a directory; name the file to append to", w.display()),
                );
            }
        }
        if f.audit.checkpoint_every_records == 0 {
            c.fail("audit.checkpoint_every_records", "must be at least 1");
        }
        c.positive("audit.checkpoint_every", f.audit.checkpoint_every);
        if f.clients.is_empty() {
            c.fail("clients", "at least one client is needed");
        }
        let mut clients = Vec::new();
        let mut seen = HashSet::new();
        let mut endpoints = BTreeMap::new();
        for (i, cf) in f.clients.iter().enumerate() {
            let key = format!("clients[{i}]");
            if !valid_id(&cf.name) {
                c.fail(
                    format!("{key}.name"),
                    "must be 1-64 of A-Z, a-z, 0-9, '.', '_', '-'",
                );
            }
            // The name keys the verified-token cache: two clients must never share one.
            if f.clients[..i].iter().any(|other| other.name == cf.name) {
                c.fail(
                    format!("{key}.name"),
                    format!("'{}' is used by another client", cf.name),
                );
            }
            let orgnr = Organisationsnummer::parse(&cf.orgnr)
                .map_err(|e| c.fail(format!("{key}.orgnr"), e))
                .ok();
            if let Some(o) = orgnr
                && !seen.insert(o)
            {
                c.fail(format!("{key}.orgnr"), format!("{o} is configured twice"));
            }
            let kommunkod = Kommunkod::parse(&cf.kommunkod)
                .map_err(|e| c.fail(format!("{key}.kommunkod"), e))
                .ok();
            let mut operations = HashSet::new();
            for (j, name) in cf.operations.iter().enumerate() {
                match Operation::from_name(name) {
                    Some(op) => {
                        operations.insert(op);
                    }
                    None => c.fail(
                        format!("{key}.operations[{j}]"),
                        format!(
                            "unknown operation '{name}' (known: {})",
                            Operation::ALL.map(|o| o.name()).join(", ")
                        ),
                    ),
                }
            }
            for (j, s) in cf.syften.iter().enumerate() {
                if !syften.contains_key(s) {
                    c.fail(
                        format!("{key}.syften[{j}]"),
                        format!("'{s}' is not a purpose listed under [[syften]]"),
                    );
                }
            }
            let mut syften_per_operation = HashMap::new();
            for (name, allowed) in &cf.syften_per_operation {
                let op_key = format!("{key}.syften_per_operation.{name}");
                let Some(op) = Operation::from_name(name) else {
                    c.fail(&op_key, format!("unknown operation '{name}'"));
                    continue;
                };
                for s in allowed {
                    if !cf.syften.contains(s) {
                        c.fail(&op_key, format!("'{s}' is not among this client's syften"));
                    }
                }
                syften_per_operation.insert(op, allowed.iter().cloned().collect::<HashSet<_>>());
            }
            let client_rate = c.rate(format!("{key}.rate"), cf.rate);
            let mut rate_per_operation = HashMap::new();
            for (name, r) in &cf.rate_per_operation {
                let op_key = format!("{key}.rate_per_operation.{name}");
                match Operation::from_name(name) {
                    Some(op) => {
                        if let Some(q) = c.rate(op_key, *r) {
                            rate_per_operation.insert(op, q);
                        }
                    }
                    None => c.fail(op_key, format!("unknown operation '{name}'")),
                }
            }
            if !(1..=100_000).contains(&cf.max_concurrent) {
                c.fail(format!("{key}.max_concurrent"), "must be from 1 to 100000");
            }
            for (j, p) in cf.handlaggare_prefix.iter().enumerate() {
                if !p.starts_with("SE") || p.len() < 3 || p.len() > 31 {
                    c.fail(
                        format!("{key}.handlaggare_prefix[{j}]"),
                        "must be the start of an HSA-id, such as SE2120000142-",
                    );
                }
            }
            if let Some(d) = &cf.delivery {
                if !d.url.starts_with("https://") || d.url.parse::<http::Uri>().is_err() {
                    c.fail(format!("{key}.delivery.url"), "must be an https URL");
                }
                let ca = c.certs(&format!("{key}.delivery.ca"), &d.ca);
                let (sources, crls) =
                    c.crl_sources(&format!("{key}.delivery.crls"), &d.crls, ca.as_deref());
                if let Some(ca) = ca {
                    endpoints.insert(
                        cf.name.clone(),
                        ClientDelivery {
                            url: d.url.clone(),
                            ca,
                            crls,
                            trust: crate::access::trust::EdgeFiles {
                                name: format!("delivery.{}", cf.name),
                                ca: c.path(&d.ca),
                                crls: sources,
                            },
                        },
                    );
                }
            }
            let idp = match (&cf.idp.jwks_file, &cf.idp.jwks_url) {
                (Some(file), None) => {
                    IdpKeys::load(&cf.idp.issuer, &cf.idp.algorithm, &c.path(file))
                        .map_err(|(field, e)| c.fail(format!("{key}.idp.{field}"), e))
                        .ok()
                }
                (None, Some(url)) => {
                    c.https(&format!("{key}.idp.jwks_url"), url);
                    if cf.idp.jwks_min_refresh < Duration::from_secs(1)
                        || cf.idp.jwks_min_refresh > Duration::from_secs(3600)
                    {
                        c.fail(
                            format!("{key}.idp.jwks_min_refresh"),
                            "must be from 1s to 1h",
                        );
                    }
                    if cf.idp.jwks_grace > f.jwt.max_lifetime + f.jwt.leeway {
                        c.fail(
                            format!("{key}.idp.jwks_grace"),
                            "must be at most jwt.max_lifetime + jwt.leeway: no token outlives that",
                        );
                    }
                    let cas = match &cf.idp.jwks_ca {
                        Some(ca) => c.certs(&format!("{key}.idp.jwks_ca"), ca),
                        None => {
                            c.fail(format!("{key}.idp.jwks_ca"), "required with jwks_url");
                            None
                        }
                    };
                    let http = cas.and_then(|cas| {
                        tls::client_config(&cas, None)
                            .map_err(|e| e.to_string())
                            .and_then(|cfg| {
                                // No redirects: one from the trusted server could lead anywhere.
                                reqwest::Client::builder()
                                    .tls_backend_preconfigured(cfg)
                                    .no_proxy()
                                    .pool_idle_timeout(
                                        crate::gateway::server::OUTBOUND_IDLE_TIMEOUT,
                                    )
                                    .https_only(true)
                                    .redirect(reqwest::redirect::Policy::none())
                                    .build()
                                    .map_err(|e| e.to_string())
                            })
                            .map_err(|e| c.fail(format!("{key}.idp.jwks_ca"), e))
                            .ok()
                    });
                    http.and_then(|http| {
                        let source = crate::access::identity::JwksUrl {
                            url: url.clone(),
                            http,
                            min_refresh: cf.idp.jwks_min_refresh,
                            grace: cf.idp.jwks_grace,
                        };
                        IdpKeys::from_url(&cf.idp.issuer, &cf.idp.algorithm, source)
                            .map_err(|(field, e)| c.fail(format!("{key}.idp.{field}"), e))
                            .ok()
                    })
                }
                _ => {
                    c.fail(
                        format!("{key}.idp"),
                        "give exactly one of jwks_file and jwks_url",
                    );
                    None
                }
            };
            if let (Some(orgnr), Some(kommunkod), Some(idp), Some(client_rate)) =
                (orgnr, kommunkod, idp, client_rate)
            {
                clients.push(Arc::new(Client {
                    name: cf.name.clone(),
                    orgnr,
                    kommunkod,
                    operations,
                    syften: cf.syften.iter().cloned().collect(),
                    syften_per_operation,
                    handlaggare_prefix: cf.handlaggare_prefix.clone(),
                    bind_tokens_to_certificate: cf.bind_tokens_to_certificate,
                    idp,
                    rate: client_rate,
                    rate_per_operation,
                    max_concurrent: cf.max_concurrent,
                }));
            }
        }

        let revocation = crate::access::crl_fetch::RevocationSettings {
            refresh: f.revocation.refresh,
            retry: f.revocation.retry,
            timeout: f.revocation.timeout,
            max_bytes: f.revocation.max_bytes,
            follow_distribution_points: f.revocation.follow_distribution_points,
            forget_unused_after: f.revocation.forget_unused_after,
        };
        match (kommun_bind, kommun, admin_bind, af_tls) {
            (Some(kb), Some((kommun, kommun_files)), Some(ab), Some((af_tls, af_files)))
                if c.problems.is_empty()
                    && let Some(events) = events
                    && let Some(delivery) = delivery =>
            {
                Ok(Config {
                    system_id: f.gateway.system_id,
                    environment: f.gateway.environment,
                    kommun_bind: kb,
                    kommun,
                    kommun_files,
                    reload_poll: f.gateway.reload_poll,
                    revocation,
                    file: None,
                    events,
                    delivery,
                    af_rate,
                    endpoints,
                    admin_bind: ab,
                    limits: f.limits,
                    af: AfSettings {
                        base_url: f.af.base_url.trim_end_matches('/').to_owned(),
                        tls: af_tls,
                        files: af_files,
                        token_url: f.af.token_url,
                        client_id: f.af.client_id,
                        client_secret,
                        timeout: f.af.timeout,
                        connect_timeout: f.af.connect_timeout,
                        breaker_failures: f.af.breaker_failures,
                        breaker_open: f.af.breaker_open,
                        retry_budget,
                        max_connections: f.af.max_connections,
                        max_connection_age: f.limits.max_connection_age,
                    },
                    jwks_refresh: f.jwt.jwks_refresh,
                    token_rules: crate::access::identity::TokenRules {
                        audience: f.jwt.audience,
                        leeway: f.jwt.leeway.as_secs(),
                        max_lifetime: f.jwt.max_lifetime.as_secs(),
                        replay_protection: f.jwt.replay_protection,
                    },
                    syften,
                    clients,
                    pseudonyms,
                    pseudonym_files,
                    audit: AuditSettings {
                        store,
                        signing_key: signing_key.unwrap_or_default(),
                        signing_key_file: c.path(&f.audit.signing_key),
                        previous_public_keys,
                        policy: crate::store::audit::CheckpointPolicy {
                            every_records: f.audit.checkpoint_every_records,
                            every: f.audit.checkpoint_every,
                            witness: f.audit.witness.as_ref().map(|w| c.path(w)),
                            retention: f.audit.retention,
                        },
                    },
                    certificates: std::mem::take(&mut c.loaded),
                    health: f.health,
                    log_level: f.log.level,
                    telemetry,
                })
            }
            _ => Err(c.problems),
        }
    }

    /// The client whose certificate carries this organisation number.
    pub fn client(&self, orgnr: &Organisationsnummer) -> Option<&Arc<Client>> {
        self.clients.iter().find(|c| c.orgnr == *orgnr)
    }
}
