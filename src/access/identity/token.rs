//! A case worker's token: its rules, its verification, the replay set, and development
//! minting.

use super::*;

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

pub use crate::config::TokenRules;

#[derive(Deserialize)]
pub(super) struct RawClaims {
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
        .filter(|s| crate::model::lexical::is_code(s))
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
pub(super) fn is_funktion(s: &str) -> bool {
    (1..=64).contains(&s.chars().count())
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '.' | ',' | '/'))
        && s.trim() == s
        && !crate::model::ident::embeds_identity_number(s)
}

pub(super) fn now_secs() -> u64 {
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
    pub(super) entries: std::sync::Mutex<HashMap<CacheKey, (CaseWorker, u64)>>,
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

/// What the caller is told: the Felkod and the message of a SOAP Fault.
impl From<TokenError> for Failure {
    fn from(e: TokenError) -> Self {
        let felkod = match e {
            TokenError::Missing => Felkod::TokenSaknas,
            TokenError::Malformed => Felkod::TokenOgiltigt,
            TokenError::Algorithm(_) => Felkod::TokenFelAlgoritm,
            TokenError::UnknownKey => Felkod::TokenOkandNyckel,
            TokenError::Signature => Felkod::TokenFelSignatur,
            TokenError::Expired => Felkod::TokenUtganget,
            TokenError::NotYetValid => Felkod::TokenEjGiltigtAnnu,
            TokenError::Issuer => Felkod::TokenFelUtfardare,
            TokenError::Audience => Felkod::TokenFelMottagare,
            TokenError::Claim(_) => Felkod::TokenSaknarAnsprak,
            TokenError::Lifetime(_) => Felkod::TokenForLangLivstid,
            TokenError::Replayed => Felkod::TokenAteranvant,
            TokenError::CertificateBinding => Felkod::TokenFelCertifikat,
            TokenError::CriticalExtension => Felkod::TokenKritiskUtokning,
            TokenError::ReplayStoreFull => Felkod::TokenkontrollFull,
        };
        Failure::new(felkod, e.to_string())
    }
}
