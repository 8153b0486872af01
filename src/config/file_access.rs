//! The file's sections about who may ask: `[jwt]`, `[[syften]]`, `[[clients]]` and each
//! client's identity provider.

use super::*;

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
    pub rate: Rate,
    /// Narrower rates for single operations.
    #[serde(default)]
    pub rate_per_operation: BTreeMap<String, Rate>,
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
