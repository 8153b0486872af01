//! An identity provider's keys: JWKS read from a file or fetched, the algorithm pinned.

use super::*;

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
    pub(super) fn key_for(&self, kid: Option<&str>) -> Option<(DecodingKey, Option<u64>)> {
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

pub(super) fn parse_algorithm(
    issuer: &str,
    algorithm: &str,
) -> Result<Algorithm, (&'static str, String)> {
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

pub(super) enum SourceKind {
    File,
    Url,
}

/// A JWKS as brygga keeps it: the usable keys, and the certificate of each that has one.
#[derive(Default)]
pub(super) struct ParsedJwks {
    keys: KeySet,
    not_after: Vec<(usize, CertificateDer<'static>)>,
}

/// The keys of a JWKS file, each fitting `algorithm`.
pub(super) fn read_jwks(jwks: &Path, algorithm: Algorithm) -> Result<ParsedJwks, String> {
    let text = std::fs::read_to_string(jwks).map_err(|e| format!("{}: {e}", jwks.display()))?;
    parse_jwks(&text, algorithm).map_err(|e| format!("{}: {e}", jwks.display()))
}

/// The keys of a JWKS document, each fitting `algorithm`.
pub(super) fn parse_jwks(text: &str, algorithm: Algorithm) -> Result<ParsedJwks, String> {
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
