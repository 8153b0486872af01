//! Who is calling: the organisation from the client certificate, the case worker from the JWT.

use std::collections::HashMap;
use std::path::Path;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use crate::model::{HsaId, Kommunkod, Organisationsnummer};

/// OID of `organizationIdentifier` (ETSI EN 319 412-1), e.g. `NTRSE-2120000142`.
const OID_ORGANIZATION_IDENTIFIER: &str = "2.5.4.97";
/// OID of `serialNumber`, where some Swedish organisation certificates put the orgnr.
const OID_SERIAL_NUMBER: &str = "2.5.4.5";

/// The organisation number in a client certificate's subject: `organizationIdentifier`
/// (`NTRSE-NNNNNNNNNN`) or, failing that, `serialNumber` (10 or 12 digits).
pub fn orgnr_from_certificate(cert: &CertificateDer<'_>) -> Result<Organisationsnummer, String> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("client certificate cannot be parsed: {e}"))?;
    let subject = x509.subject();
    // Present but unreadable is an error, never a reason to fall back to another attribute.
    let value_of = |oid: &str, name: &str| {
        subject
            .iter_attributes()
            .find(|a| a.attr_type().to_id_string() == oid)
            .map(|a| {
                a.as_str()
                    .map(str::to_owned)
                    .map_err(|_| format!("{name} in the certificate is not a readable string"))
            })
            .transpose()
    };
    if let Some(v) = value_of(OID_ORGANIZATION_IDENTIFIER, "organizationIdentifier")? {
        let digits = v.strip_prefix("NTRSE-").unwrap_or(&v);
        return Organisationsnummer::parse(digits)
            .map_err(|e| format!("organizationIdentifier in the certificate: {e}"));
    }
    if let Some(v) = value_of(OID_SERIAL_NUMBER, "serialNumber")? {
        return Organisationsnummer::parse(&v)
            .map_err(|e| format!("serialNumber in the certificate: {e}"));
    }
    Err("the client certificate's subject has no organizationIdentifier or serialNumber".into())
}

/// The public keys and pinned algorithm of one identity provider.
pub struct IdpKeys {
    pub issuer: String,
    pub algorithm: Algorithm,
    source: JwksSource,
    /// Swapped whole on reload; a verification in flight keeps the set it started with.
    keys: std::sync::RwLock<std::sync::Arc<KeySet>>,
    /// Keys that left the published set, kept until their grace period ends.
    /// With the time (seconds since the epoch) each left the set: only tokens issued before
    /// then are accepted with it, so a removed (perhaps compromised) key signs nothing new.
    stale: std::sync::Mutex<Vec<(Option<String>, DecodingKey, u64)>>,
    last_fetch: std::sync::Mutex<Option<std::time::Instant>>,
    /// Counts key sets that removed a key: tokens verified under an older one are checked again.
    generation: std::sync::atomic::AtomicU64,
    /// When each key in use that came with a certificate (`x5c`) expires: its index in the
    /// set and the certificate.
    key_expiry: std::sync::RwLock<Vec<(usize, CertificateDer<'static>)>>,
    /// When the key set in use was installed (read or fetched successfully).
    installed: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Where an identity provider's keys come from.
pub enum JwksSource {
    File(std::path::PathBuf),
    Url(JwksUrl),
}

/// A JWKS fetched over HTTPS.
pub struct JwksUrl {
    pub url: String,
    pub http: reqwest::Client,
    /// An unknown `kid` fetches the set again at most this often.
    pub min_refresh: std::time::Duration,
    /// How long a key that left the set is still accepted.
    pub grace: std::time::Duration,
}

impl std::fmt::Debug for IdpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpKeys")
            .field("issuer", &self.issuer)
            .field("algorithm", &self.algorithm)
            .field(
                "jwks",
                &self
                    .jwks_file()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "url".into()),
            )
            .finish()
    }
}

impl IdpKeys {
    /// Loads a JWKS file; the error names the config field (`issuer`, `algorithm`, `jwks_file`).
    pub fn load(
        issuer: &str,
        algorithm: &str,
        jwks: &Path,
    ) -> Result<Self, (&'static str, String)> {
        let algorithm = parse_algorithm(issuer, algorithm)?;
        let keys = read_jwks(jwks, algorithm).map_err(|e| ("jwks_file", e))?;
        Ok(Self::with(
            issuer,
            algorithm,
            JwksSource::File(jwks.to_owned()),
            keys,
        ))
    }

    /// An identity provider whose JWKS is fetched from `url`; it holds no keys until
    /// [`IdpKeys::refresh`] has fetched them.
    pub fn from_url(
        issuer: &str,
        algorithm: &str,
        source: JwksUrl,
    ) -> Result<Self, (&'static str, String)> {
        let algorithm = parse_algorithm(issuer, algorithm)?;
        Ok(Self::with(
            issuer,
            algorithm,
            JwksSource::Url(source),
            ParsedJwks::default(),
        ))
    }

    fn with(issuer: &str, algorithm: Algorithm, source: JwksSource, parsed: ParsedJwks) -> Self {
        let source_kind = match source {
            JwksSource::File(_) => SourceKind::File,
            JwksSource::Url(_) => SourceKind::Url,
        };
        Self {
            issuer: issuer.to_owned(),
            algorithm,
            source,
            keys: std::sync::RwLock::new(std::sync::Arc::new(parsed.keys)),
            key_expiry: std::sync::RwLock::new(parsed.not_after),
            stale: std::sync::Mutex::new(Vec::new()),
            last_fetch: std::sync::Mutex::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
            // A remote set holds nothing until its first fetch.
            installed: std::sync::Mutex::new(
                matches!(source_kind, SourceKind::File).then(std::time::Instant::now),
            ),
        }
    }

    /// The JWKS file, when the keys come from one.
    pub fn jwks_file(&self) -> Option<&Path> {
        match &self.source {
            JwksSource::File(p) => Some(p),
            JwksSource::Url(_) => None,
        }
    }

    /// Whether the keys are fetched over HTTPS.
    pub fn is_remote(&self) -> bool {
        matches!(self.source, JwksSource::Url(_))
    }

    /// Reads the JWKS file again; on any error the keys in use stay. (A remote set is
    /// refreshed with [`IdpKeys::refresh`].)
    pub fn reload(&self) -> Result<(), String> {
        match &self.source {
            JwksSource::File(path) => {
                let keys = read_jwks(path, self.algorithm)?;
                self.install(keys);
                self.generation
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            }
            JwksSource::Url(_) => Ok(()),
        }
    }

    /// Fetches a remote JWKS again (bounded in time and size); keys that left it stay usable
    /// for the grace period. On any error the keys in use stay.
    pub async fn refresh(&self) -> Result<(), String> {
        let JwksSource::Url(src) = &self.source else {
            return self.reload();
        };
        if let Ok(mut last) = self.last_fetch.lock() {
            *last = Some(std::time::Instant::now());
        }
        let fetch = async {
            let mut resp = src
                .http
                .get(&src.url)
                .send()
                .await
                .map_err(|e| crate::error::error_chain(&e))?;
            if !resp.status().is_success() {
                return Err(format!("{}: HTTP {}", src.url, resp.status().as_u16()));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
                if body.len() + chunk.len() > 1024 * 1024 {
                    return Err(format!("{}: the JWKS is larger than 1 MiB", src.url));
                }
                body.extend_from_slice(&chunk);
            }
            parse_jwks(&String::from_utf8_lossy(&body), self.algorithm)
                .map_err(|e| format!("{}: {e}", src.url))
        };
        let parsed = tokio::time::timeout(std::time::Duration::from_secs(10), fetch)
            .await
            .map_err(|_| format!("{}: no answer within 10 s", src.url))??;
        let keys = &parsed.keys;
        let now = now_secs();
        let old = self.keys.read().map(|k| k.clone()).unwrap_or_default();
        let removed = old
            .iter()
            .any(|(kid, _)| !keys.iter().any(|(k, _)| k == kid));
        if let Ok(mut stale) = self.stale.lock() {
            for (kid, key) in old.iter() {
                if !keys.iter().any(|(k, _)| k == kid) {
                    stale.push((kid.clone(), key.clone(), now));
                }
            }
            stale.retain(|(kid, _, since)| {
                now.saturating_sub(*since) < src.grace.as_secs()
                    && !keys.iter().any(|(k, _)| k == kid)
            });
        }
        self.install(parsed);
        if removed {
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }

    /// The key-set generation: it changes whenever a key leaves the set.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// For a token whose `kid` is not known: fetch a remote set again, at most once per
    /// `min_refresh`, in case the identity provider rotated its keys.
    pub async fn refresh_for_unknown_kid(&self, kid: Option<&str>) {
        let JwksSource::Url(src) = &self.source else {
            return;
        };
        if self.key_for(kid).is_some() {
            return;
        }
        // Check and claim the fetch under one lock, so concurrent requests fetch once.
        let due = self
            .last_fetch
            .lock()
            .map(|mut last| {
                let due = last.is_none_or(|t| t.elapsed() >= src.min_refresh);
                if due {
                    *last = Some(std::time::Instant::now());
                }
                due
            })
            .unwrap_or(false);
        if due && let Err(e) = self.refresh().await {
            tracing::warn!(issuer = %self.issuer, error = %e, "JWKS refresh failed; the keys in use stay");
        }
    }

    fn install(&self, parsed: ParsedJwks) {
        if let Ok(mut current) = self.keys.write() {
            *current = std::sync::Arc::new(parsed.keys);
        }
        if let Ok(mut expiry) = self.key_expiry.write() {
            *expiry = parsed.not_after;
        }
        if let Ok(mut at) = self.installed.lock() {
            *at = Some(std::time::Instant::now());
        }
    }

    /// The certificates (`x5c`) of the keys in use, by their index in the set.
    pub fn key_certificates(&self) -> Vec<(usize, CertificateDer<'static>)> {
        self.key_expiry
            .read()
            .map(|k| k.clone())
            .unwrap_or_default()
    }

    /// How long ago the key set in use was read or fetched (none: a remote set never
    /// fetched), and how many keys it has.
    pub fn freshness(&self) -> (Option<std::time::Duration>, usize) {
        let age = self
            .installed
            .lock()
            .ok()
            .and_then(|at| at.map(|at| at.elapsed()));
        let keys = self.keys.read().map(|k| k.len()).unwrap_or(0);
        (age, keys)
    }

    /// The key for `kid`, and — for a key that has left the set — when it left.
    fn key_for(&self, kid: Option<&str>) -> Option<(DecodingKey, Option<u64>)> {
        let keys = self.keys.read().ok()?.clone();
        let current = match kid {
            Some(kid) => keys
                .iter()
                .find(|(k, _)| k.as_deref() == Some(kid))
                .map(|(_, key)| key.clone()),
            None if keys.len() == 1 => Some(keys[0].1.clone()),
            None => None,
        };
        if let Some(key) = current {
            return Some((key, None));
        }
        let kid = kid?;
        let grace = match &self.source {
            JwksSource::Url(src) => src.grace.as_secs(),
            JwksSource::File(_) => 0,
        };
        let now = now_secs();
        let stale = self.stale.lock().ok()?;
        stale
            .iter()
            .find(|(k, _, since)| k.as_deref() == Some(kid) && now.saturating_sub(*since) < grace)
            .map(|(_, key, since)| (key.clone(), Some(*since)))
    }
}

fn parse_algorithm(issuer: &str, algorithm: &str) -> Result<Algorithm, (&'static str, String)> {
    if issuer.trim().is_empty() {
        return Err(("issuer", "must not be empty".into()));
    }
    match algorithm {
        "ES256" => Ok(Algorithm::ES256),
        "RS256" => Ok(Algorithm::RS256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => Err((
            "algorithm",
            format!("'{other}' is not accepted (ES256, RS256 or EdDSA)"),
        )),
    }
}

/// An identity provider's keys, by key id.
type KeySet = Vec<(Option<String>, DecodingKey)>;

enum SourceKind {
    File,
    Url,
}

/// A JWKS as brygga keeps it: the usable keys, and the certificate of each that has one.
#[derive(Default)]
struct ParsedJwks {
    keys: KeySet,
    not_after: Vec<(usize, CertificateDer<'static>)>,
}

/// The keys of a JWKS file, each fitting `algorithm`.
fn read_jwks(jwks: &Path, algorithm: Algorithm) -> Result<ParsedJwks, String> {
    let text = std::fs::read_to_string(jwks).map_err(|e| format!("{}: {e}", jwks.display()))?;
    parse_jwks(&text, algorithm).map_err(|e| format!("{}: {e}", jwks.display()))
}

/// The keys of a JWKS document, each fitting `algorithm`.
fn parse_jwks(text: &str, algorithm: Algorithm) -> Result<ParsedJwks, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = Vec::new();
    let mut not_after = Vec::new();
    let mut skipped = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        // Identity providers publish encryption keys and keys of other algorithms beside the
        // signing keys: those are skipped, not errors.
        let for_signing = !matches!(
            jwk.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        );
        let alg_fits = jwk
            .common
            .key_algorithm
            .is_none_or(|a| format!("{a:?}") == format!("{algorithm:?}"));
        match DecodingKey::from_jwk(jwk) {
            Ok(key) if for_signing && alg_fits && key.family() == algorithm.family() => {
                // The key's own certificate (the first of x5c), for its expiry.
                if let Some(der) = jwk
                    .common
                    .x509_chain
                    .as_ref()
                    .and_then(|chain| chain.first())
                    .and_then(|b64| {
                        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).ok()
                    })
                {
                    not_after.push((keys.len(), CertificateDer::from(der)));
                }
                keys.push((jwk.common.key_id.clone(), key));
            }
            Ok(_) => skipped.push(format!("key {i} is not an {algorithm:?} signing key")),
            Err(e) => skipped.push(format!("key {i}: {e}")),
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "holds no usable {algorithm:?} signing key ({})",
            skipped.join("; ")
        ));
    }
    Ok(ParsedJwks { keys, not_after })
}

/// The claims brygga reads from a case worker's token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub kommunkod: String,
    pub syfte: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// RFC 8705 confirmation: `{"x5t#S256": …}` binds the token to a client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<serde_json::Value>,
    /// The case worker's unit, an HSA-id (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enhet: Option<String>,
    /// The case worker's function, e.g. "Handläggare ekonomiskt bistånd" (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funktion: Option<String>,
}

/// The rules every token must meet, from the configuration.
#[derive(Debug, Clone)]
pub struct TokenRules {
    pub audience: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: u64,
    /// The longest lifetime (`exp - iat`) accepted, in seconds.
    pub max_lifetime: u64,
    /// Every token must carry a `jti`, and each is accepted once.
    pub replay_protection: bool,
}

/// The RFC 8705 thumbprint of a certificate: base64url(SHA-256(DER)), as in `cnf.x5t#S256`.
pub fn certificate_thumbprint(cert: &CertificateDer<'_>) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(cert.as_ref()))
}

#[derive(Deserialize)]
struct RawClaims {
    sub: Option<String>,
    kommunkod: Option<String>,
    syfte: Option<String>,
    exp: u64,
    iat: Option<u64>,
    jti: Option<String>,
    cnf: Option<serde_json::Value>,
    enhet: Option<String>,
    funktion: Option<String>,
}

/// A verified token: who the case worker is, for which municipality and purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseWorker {
    pub hsa_id: HsaId,
    pub kommunkod: Kommunkod,
    pub syfte: String,
    /// The token's `exp` (seconds since the epoch).
    pub expires: u64,
    pub jti: Option<String>,
    /// `cnf.x5t#S256`: the thumbprint of the certificate the token is bound to, if any.
    pub bound_to: Option<String>,
    /// The unit (HSA-id) and function the token names, for the audit record.
    pub enhet: Option<HsaId>,
    pub funktion: Option<String>,
}

/// Why a token was refused. Messages never echo the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token in the Authorization header")]
    Missing,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not the one configured for this client's issuer ({0})")]
    Algorithm(String),
    #[error("the token's key id (kid) is not among the issuer's published keys")]
    UnknownKey,
    #[error("the token's signature does not verify with the issuer's key")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("the token's issuer (iss) is not this client's identity provider")]
    Issuer,
    #[error("the token's audience (aud) is not this gateway")]
    Audience,
    #[error("the token lacks the claim '{0}' or it is invalid")]
    Claim(&'static str),
    #[error("the token lives longer than the {0} seconds this gateway accepts (exp - iat)")]
    Lifetime(u64),
    #[error("the token (its jti) has been used before; each token may be used once")]
    Replayed,
    #[error("the gateway holds as many unexpired one-time tokens as it can; try again shortly")]
    ReplayStoreFull,
    #[error(
        "the token is bound (cnf.x5t#S256) to another client certificate, or must be bound and is not"
    )]
    CertificateBinding,
    #[error(
        "the token's header lists critical extensions (crit) that this gateway does not understand (RFC 7515 4.1.11)"
    )]
    CriticalExtension,
}

/// Verifies a bearer token against the client's identity provider.
pub fn verify_token(
    idp: &IdpKeys,
    rules: &TokenRules,
    token: &str,
) -> Result<CaseWorker, TokenError> {
    let audience = rules.audience.as_str();
    let leeway_secs = rules.leeway;
    use jsonwebtoken::errors::ErrorKind;
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    // brygga understands no JWS extension: a token that makes one critical must be refused.
    if header.crit.is_some() {
        return Err(TokenError::CriticalExtension);
    }
    if header.alg != idp.algorithm {
        return Err(TokenError::Algorithm(format!("{:?}", idp.algorithm)));
    }
    let (key, removed_at) = idp
        .key_for(header.kid.as_deref())
        .ok_or(TokenError::UnknownKey)?;
    let mut v = Validation::new(idp.algorithm);
    v.leeway = leeway_secs;
    v.validate_nbf = true;
    v.set_issuer(&[&idp.issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.reject_tokens_expiring_in_less_than = 0;
    let data = jsonwebtoken::decode::<RawClaims>(token, &key, &v).map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature => TokenError::Signature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::MissingRequiredClaim(c) => TokenError::Claim(match c.as_str() {
            "exp" => "exp",
            "iss" => "iss",
            "aud" => "aud",
            "nbf" => "nbf",
            _ => "sub",
        }),
        ErrorKind::InvalidAlgorithm => TokenError::Algorithm(format!("{:?}", idp.algorithm)),
        _ => TokenError::Malformed,
    })?;
    let c = data.claims;
    let hsa_id = c
        .sub
        .as_deref()
        .and_then(|s| HsaId::parse(s).ok())
        .ok_or(TokenError::Claim("sub"))?;
    let kommunkod = c
        .kommunkod
        .as_deref()
        .and_then(|s| Kommunkod::parse(s).ok())
        .ok_or(TokenError::Claim("kommunkod"))?;
    let syfte = c
        .syfte
        .filter(|s| crate::contract::soap::is_code(s))
        .ok_or(TokenError::Claim("syfte"))?;
    let iat = c.iat.ok_or(TokenError::Claim("iat"))?;
    // A key that has left the set only vouches for tokens issued while it was published.
    if removed_at.is_some_and(|removed| iat > removed.saturating_add(leeway_secs)) {
        return Err(TokenError::UnknownKey);
    }
    if iat > now_secs().saturating_add(leeway_secs) {
        return Err(TokenError::NotYetValid);
    }
    if c.exp.saturating_sub(iat) > rules.max_lifetime {
        return Err(TokenError::Lifetime(rules.max_lifetime));
    }
    let jti = c.jti.filter(|j| !j.is_empty() && j.len() <= 256);
    if rules.replay_protection && jti.is_none() {
        return Err(TokenError::Claim("jti"));
    }
    let bound_to = match c.cnf {
        None => None,
        Some(cnf) => Some(
            cnf.get("x5t#S256")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or(TokenError::Claim("cnf"))?,
        ),
    };
    // Kept in the audit chain: a unit is an HSA-id, a function a short name, and neither
    // may carry an identity number.
    let enhet = c
        .enhet
        .map(|e| HsaId::parse(&e).map_err(|_| TokenError::Claim("enhet")))
        .transpose()?;
    let funktion = c
        .funktion
        .map(|f| {
            is_funktion(&f)
                .then_some(f)
                .ok_or(TokenError::Claim("funktion"))
        })
        .transpose()?;
    Ok(CaseWorker {
        hsa_id,
        kommunkod,
        syfte,
        expires: c.exp,
        jti,
        bound_to,
        enhet,
        funktion,
    })
}

/// A function's name: 1 to 64 letters, digits, spaces and `-.,/`, no identity number.
fn is_funktion(s: &str) -> bool {
    (1..=64).contains(&s.chars().count())
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '.' | ',' | '/'))
        && s.trim() == s
        && !crate::model::ident::embeds_identity_number(s)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A client's name and the SHA-256 of a token.
type CacheKey = (String, [u8; 32]);

/// Tokens already verified, per client, until they expire. An ES256 verification costs tens
/// of microseconds; a case system sends the same token with every request while it is valid.
/// Only successes are kept, keyed by the client (whose identity provider verified the token)
/// and a SHA-256 of the token, so neither raw tokens nor their size stay in memory.
pub struct VerifiedTokens {
    entries: std::sync::Mutex<HashMap<CacheKey, (CaseWorker, u64)>>,
    /// With replay protection: each (issuer, jti) seen, until its token expires.
    used: std::sync::Mutex<HashMap<(String, String), u64>>,
    capacity: usize,
    replay_capacity: usize,
}

/// Where a token is presented: the client and its certificate.
pub struct Presenter<'a> {
    pub client: &'a str,
    pub idp: &'a IdpKeys,
    /// The client's policy requires certificate-bound tokens.
    pub binding_required: bool,
    /// The RFC 8705 thumbprint of the connection's client certificate.
    pub certificate: Option<&'a str>,
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: std::sync::Mutex::new(HashMap::new()),
            used: std::sync::Mutex::new(HashMap::new()),
            capacity,
            replay_capacity: capacity * 10,
        }
    }

    /// Forgets every verified token, e.g. after the identity providers' keys were reloaded.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    /// Like [`verify_token`], answering from the cache while the token is valid, then checks
    /// the certificate binding, and only then — with replay protection — records the `jti`:
    /// a token refused for its binding is not used up.
    pub fn verify(
        &self,
        at: &Presenter<'_>,
        rules: &TokenRules,
        token: &str,
    ) -> Result<CaseWorker, TokenError> {
        use sha2::Digest;
        let now = now_secs();
        let key = (
            at.client.to_owned(),
            <[u8; 32]>::from(sha2::Sha256::digest(token.as_bytes())),
        );
        let generation = at.idp.generation();
        let cached = self
            .entries
            .lock()
            .ok()
            .and_then(|entries| entries.get(&key).cloned())
            // Verified under the current key set, and valid until exp + leeway (as jsonwebtoken).
            .filter(|(w, g)| *g == generation && now <= w.expires.saturating_add(rules.leeway))
            .map(|(w, _)| w);
        let worker = match cached {
            Some(w) => w,
            None => {
                let w = verify_token(at.idp, rules, token)?;
                if let Ok(mut entries) = self.entries.lock() {
                    if entries.len() >= self.capacity {
                        entries.retain(|_, (w, _)| now <= w.expires.saturating_add(rules.leeway));
                    }
                    // Still full of valid tokens: start over; the cache only saves work.
                    if entries.len() >= self.capacity {
                        entries.clear();
                    }
                    entries.insert(key, (w.clone(), generation));
                }
                w
            }
        };
        // RFC 8705: a bound token is only good on the connection of the certificate it names.
        match &worker.bound_to {
            Some(bound) if Some(bound.as_str()) != at.certificate => {
                return Err(TokenError::CertificateBinding);
            }
            None if at.binding_required => return Err(TokenError::CertificateBinding),
            _ => {}
        }
        if rules.replay_protection {
            let jti = worker.jti.clone().ok_or(TokenError::Claim("jti"))?;
            let mut used = self.used.lock().map_err(|_| TokenError::ReplayStoreFull)?;
            // A jti is unique per issuer.
            let id = (at.idp.issuer.clone(), jti);
            if used
                .get(&id)
                .is_some_and(|exp| now <= exp.saturating_add(rules.leeway))
            {
                return Err(TokenError::Replayed);
            }
            if used.len() >= self.replay_capacity {
                used.retain(|_, exp| now <= exp.saturating_add(rules.leeway));
            }
            // Full of live tokens: refuse rather than forget, since forgetting allows a replay.
            if used.len() >= self.replay_capacity {
                return Err(TokenError::ReplayStoreFull);
            }
            used.insert(id, worker.expires);
        }
        Ok(worker)
    }
}

/// Signs a development token with an ES256 key in PEM (PKCS#8), as `brygga token` does.
pub fn mint_token(
    key_pem: &[u8],
    kid: Option<&str>,
    claims: &TokenClaims,
) -> Result<String, String> {
    let key = jsonwebtoken::EncodingKey::from_ec_pem(key_pem).map_err(|e| e.to_string())?;
    let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).map_err(|e| e.to_string())
}

/// A JWKS with one EC P-256 key, from the raw uncompressed public point (0x04 ‖ x ‖ y).
pub fn es256_jwks(public_point: &[u8]) -> Result<(String, serde_json::Value), String> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    if public_point.len() != 65 || public_point[0] != 4 {
        return Err("not an uncompressed P-256 point".into());
    }
    let x = B64.encode(&public_point[1..33]);
    let y = B64.encode(&public_point[33..]);
    // RFC 7638 thumbprint as key id: members in lexicographic order, no whitespace.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = B64.encode(<sha2::Sha256 as sha2::Digest>::digest(canonical.as_bytes()));
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "x": x, "y": y,
        "use": "sig", "alg": "ES256", "kid": kid,
    });
    let _: Jwk = serde_json::from_value(jwk.clone()).map_err(|e| e.to_string())?;
    Ok((kid, serde_json::json!({ "keys": [jwk] })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certs(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("certs-example")
            .join(name)
    }

    fn token(kommun: &str, iss: &str, exp_in: i64, jti: Option<&str>) -> String {
        let now = now_secs();
        let claims = TokenClaims {
            iss: iss.into(),
            aud: "aud".into(),
            sub: "SE2120000142-HL01".into(),
            kommunkod: kommun.into(),
            syfte: "EKB-BESLUT".into(),
            iat: now,
            nbf: now,
            exp: now.saturating_add_signed(exp_in),
            jti: jti.map(str::to_owned),
            cnf: None,
            enhet: None,
            funktion: None,
        };
        let key = std::fs::read(certs(&format!("idp-{kommun}.key"))).unwrap();
        let jwks: serde_json::Value = serde_json::from_slice(
            &std::fs::read(certs(&format!("idp-{kommun}.jwks.json"))).unwrap(),
        )
        .unwrap();
        mint_token(&key, jwks["keys"][0]["kid"].as_str(), &claims).unwrap()
    }

    fn rules(replay_protection: bool) -> TokenRules {
        TokenRules {
            audience: "aud".into(),
            leeway: 0,
            max_lifetime: 3600,
            replay_protection,
        }
    }

    #[test]
    fn the_cache_answers_only_while_the_token_is_valid_and_only_for_its_client() {
        let sthlm = IdpKeys::load("https://a/", "ES256", &certs("idp-0180.jwks.json")).unwrap();
        let gbg = IdpKeys::load("https://b/", "ES256", &certs("idp-1480.jwks.json")).unwrap();
        let cache = VerifiedTokens::new(10);
        let r = rules(false);
        let at = |client, idp| Presenter {
            client,
            idp,
            binding_required: false,
            certificate: None,
        };
        let t = token("0180", "https://a/", 0, None);
        assert!(cache.verify(&at("stockholm", &sthlm), &r, &t).is_ok());
        assert!(
            cache.verify(&at("stockholm", &sthlm), &r, &t).is_ok(),
            "from the cache"
        );
        assert!(
            cache.verify(&at("goteborg", &gbg), &r, &t).is_err(),
            "another client never sees it"
        );
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(
            cache.verify(&at("stockholm", &sthlm), &r, &t),
            Err(TokenError::Expired),
            "expired, though cached"
        );
        // A full cache makes room and keeps working.
        for i in 0..25 {
            let t = token("0180", "https://a/", 60 + i, None);
            assert!(cache.verify(&at("stockholm", &sthlm), &r, &t).is_ok());
        }
        assert!(cache.entries.lock().unwrap().len() <= 10);
    }

    #[test]
    fn lifetime_and_replay_rules() {
        let sthlm = IdpKeys::load("https://a/", "ES256", &certs("idp-0180.jwks.json")).unwrap();
        let cache = VerifiedTokens::new(10);
        let at = Presenter {
            client: "s",
            idp: &sthlm,
            binding_required: false,
            certificate: None,
        };
        let long = token("0180", "https://a/", 7200, None);
        assert_eq!(
            cache.verify(&at, &rules(false), &long),
            Err(TokenError::Lifetime(3600))
        );
        let no_jti = token("0180", "https://a/", 60, None);
        assert_eq!(
            cache.verify(&at, &rules(true), &no_jti),
            Err(TokenError::Claim("jti"))
        );
        let once = token("0180", "https://a/", 60, Some("j-1"));
        assert!(cache.verify(&at, &rules(true), &once).is_ok());
        assert_eq!(
            cache.verify(&at, &rules(true), &once),
            Err(TokenError::Replayed),
            "even from the cache"
        );
        let other = token("0180", "https://a/", 61, Some("j-2"));
        assert!(cache.verify(&at, &rules(true), &other).is_ok());
    }
}
