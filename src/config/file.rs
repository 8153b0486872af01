//! The file as written: its sections and their defaults (`deny_unknown_fields` throughout).
//! Who may ask (JWT, purposes, clients) is in `file_access.rs`.

use super::*;

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
        let d = RevocationSettings::default();
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

pub(super) fn default_checkpoint_records() -> u64 {
    1000
}

pub(super) fn default_checkpoint_every() -> Duration {
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

pub(super) fn default_reload_poll() -> Duration {
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

pub(super) fn default_batches_in_flight() -> usize {
    8
}

pub(super) fn default_events_body() -> usize {
    1024 * 1024
}

pub(super) fn default_rate() -> Rate {
    Rate {
        per_second: 50,
        burst: 100,
    }
}

pub(super) fn default_max_concurrent() -> usize {
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

pub(super) fn default_drain() -> Duration {
    Duration::from_secs(5)
}

pub(super) fn default_delivery_timeout() -> Duration {
    Duration::from_secs(10)
}
pub(super) fn default_first_retry() -> Duration {
    Duration::from_secs(1)
}
pub(super) fn default_max_retry() -> Duration {
    Duration::from_secs(300)
}
pub(super) fn default_max_age() -> Duration {
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
    pub af_rate: Option<Rate>,
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
    pub new_connections_per_address: Rate,
    /// `false` turns off the rate, concurrency and AF-quota limits (not the connection caps,
    /// deadlines or sizes): only for measuring what the limits cost (`brygga bench`).
    #[serde(default = "default_true")]
    pub enforce_rate_limits: bool,
}

pub(super) fn default_keep_alive() -> Duration {
    Duration::from_secs(5)
}

pub(super) fn default_true() -> bool {
    true
}

pub(super) fn default_operation_deadline() -> Duration {
    // Above the JWKS fetch (10 s), the body (10 s) and the AF call (5 s) together.
    Duration::from_secs(30)
}

pub(super) fn default_max_connections() -> usize {
    10_000
}

pub(super) fn default_max_per_certificate() -> usize {
    512
}

pub(super) fn default_max_connection_age() -> Duration {
    Duration::from_secs(3600)
}

pub(super) fn default_max_pending_per_connection() -> usize {
    2 * 1024 * 1024
}

pub(super) fn default_max_pending_per_certificate() -> usize {
    16 * 1024 * 1024
}

pub(super) fn default_max_handshakes() -> usize {
    1024
}

pub(super) fn default_max_handshakes_per_address() -> usize {
    // Room for a case system behind one NAT address opening its whole pool at once.
    128
}

pub(super) fn default_new_connections_per_address() -> Rate {
    Rate {
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
    pub retry_budget: Rate,
    /// Calls to AF under way at once, so connections to AF: one more waits for a free one
    /// within its deadline (then 504 `AF_TIDSGRANS`).
    #[serde(default = "default_af_max_connections")]
    pub max_connections: u32,
}

pub(super) fn default_af_max_connections() -> u32 {
    100
}

pub(super) fn default_af_timeout() -> Duration {
    Duration::from_secs(5)
}
pub(super) fn default_retry_budget() -> Rate {
    Rate {
        per_second: 10,
        burst: 20,
    }
}

pub(super) fn default_breaker_failures() -> u32 {
    5
}

pub(super) fn default_breaker_open() -> Duration {
    Duration::from_millis(500)
}

pub(super) fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
