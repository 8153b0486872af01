//! Pseudonyms: HMAC-SHA-256 of a personal identity number under a secret key held outside the
//! data, one key set per domain (`audit`, `subscriptions`, a follow-up recipient …).
//!
//! A pseudonym names its key id (`a1:…`), so keys can rotate: the newest key writes, and all
//! keys are tried when searching. Without the key a pseudonym reveals nothing, even though the
//! number space is small enough to enumerate — which is why a plain hash would not do.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::model::Personnummer;

/// The shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// One key of a domain.
#[derive(Clone)]
struct DomainKey {
    id: String,
    mac: Hmac<Sha256>,
    /// What the key makes of a fixed message: tells two keys apart without keeping the bytes.
    print: [u8; 32],
}

/// What `mac`'s key makes of a fixed message.
fn print(mac: &Hmac<Sha256>) -> [u8; 32] {
    let mut mac = mac.clone();
    mac.update(b"brygga key probe");
    mac.finalize().into_bytes().into()
}

/// Every domain's keys, oldest first.
#[derive(Clone, Default)]
pub struct Pseudonymizer {
    domains: BTreeMap<String, Vec<DomainKey>>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: BTreeMap<&str, Vec<&str>> = self
            .domains
            .iter()
            .map(|(d, k)| (d.as_str(), k.iter().map(|k| k.id.as_str()).collect()))
            .collect();
        f.debug_struct("Pseudonymizer")
            .field("key_ids", &ids)
            .finish()
    }
}

/// Why a key was refused. Never shows the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key id must be 1-16 of a-z, A-Z, 0-9 (it is written into every pseudonym)")]
    Id,
    #[error("domain must be 1-64 of a-z, 0-9, '-', '.'")]
    Domain,
    #[error("the key must be hex text of at least {MIN_KEY_BYTES} bytes (64 hex digits)")]
    Encoding,
    #[error("the key is {0} bytes; at least {MIN_KEY_BYTES} are needed")]
    TooShort(usize),
    #[error("{0}")]
    Source(String),
    #[error("key id {0} is used twice in the domain")]
    Duplicate(String),
}

/// Decodes a key written as hex (whitespace around it allowed).
pub fn decode_key(text: &str) -> Result<Vec<u8>, KeyError> {
    let bytes = hex::decode(text.trim()).map_err(|_| KeyError::Encoding)?;
    if bytes.len() < MIN_KEY_BYTES {
        return Err(KeyError::TooShort(bytes.len()));
    }
    Ok(bytes)
}

/// Reads a key from a file, or from an environment variable when `file` is `None`.
pub fn read_key(file: Option<&Path>, env: Option<&str>) -> Result<Vec<u8>, KeyError> {
    let text = match (file, env) {
        (Some(f), None) => std::fs::read_to_string(f)
            .map_err(|e| KeyError::Source(format!("{}: {e}", f.display())))?,
        (None, Some(var)) => std::env::var(var)
            .map_err(|_| KeyError::Source(format!("environment variable {var} is not set")))?,
        _ => return Err(KeyError::Source("give exactly one of file and env".into())),
    };
    decode_key(&text)
}

impl Pseudonymizer {
    /// Adds a key to a domain; keys added later are newer.
    /// Whether `key` is one of the keys, in any domain.
    pub fn holds_key(&self, key: &[u8]) -> bool {
        // The keys are kept keyed, not as bytes: compare what each makes of one message.
        let Ok(theirs) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
            return false;
        };
        let theirs = print(&theirs);
        self.domains.values().flatten().any(|k| k.print == theirs)
    }

    /// Why `next` (the keys as configured now) may not take the place of these keys: a key id
    /// that now names other bytes, or one that is gone. Pseudonyms made under it — audit
    /// records, subscriptions, deliveries waiting for them — would no longer be found. A key
    /// held now may have made some, so every one counts as in use; new keys may be added.
    pub fn refusals(&self, next: &Pseudonymizer) -> Vec<String> {
        let mut out = Vec::new();
        for (domain, keys) in &self.domains {
            for key in keys {
                let theirs = next
                    .domains
                    .get(domain)
                    .and_then(|k| k.iter().find(|k| k.id == key.id));
                match theirs {
                    None => out.push(format!(
                        "key id {} of domain '{domain}' is no longer configured; pseudonyms made with it would no longer be found (a key in use stays until a restart)",
                        key.id
                    )),
                    Some(k) if k.print != key.print => out.push(format!(
                        "key id {} of domain '{domain}' now names another key; pseudonyms made with it would no longer be found (a new key takes a new id, added last)",
                        key.id
                    )),
                    Some(_) => {}
                }
            }
        }
        out
    }

    pub fn add_key(&mut self, domain: &str, id: &str, key: &[u8]) -> Result<(), KeyError> {
        let domain_ok = !domain.is_empty()
            && domain.len() <= 64
            && domain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !domain_ok {
            return Err(KeyError::Domain);
        }
        if id.is_empty() || id.len() > 16 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(KeyError::Id);
        }
        if key.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort(key.len()));
        }
        let keys = self.domains.entry(domain.to_owned()).or_default();
        if keys.iter().any(|k| k.id == id) {
            return Err(KeyError::Duplicate(id.to_owned()));
        }
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .map_err(|_| KeyError::TooShort(key.len()))?;
        keys.push(DomainKey {
            id: id.to_owned(),
            print: print(&mac),
            mac,
        });
        Ok(())
    }

    pub fn has_domain(&self, domain: &str) -> bool {
        self.domains.contains_key(domain)
    }

    fn with_key(key: &DomainKey, domain: &str, person: &Personnummer) -> String {
        let mut mac = key.mac.clone();
        // The domain is mixed in as well, so one key used in two domains still gives two
        // unrelated pseudonyms.
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(person.expose().as_bytes());
        let tag = mac.finalize().into_bytes();
        // 16 bytes (128 bits) is far beyond collisions among identity numbers.
        format!(
            "{}:{}",
            key.id,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag[..16])
        )
    }

    /// The pseudonym under the domain's newest key; `None` for an unknown domain.
    pub fn pseudonym(&self, domain: &str, person: &Personnummer) -> Option<String> {
        let key = self.domains.get(domain)?.last()?;
        Some(Self::with_key(key, domain, person))
    }

    /// The case reference AF is told instead of the case id: keyed (the `audit` domain's
    /// newest key, mixed with its own label so it is unrelated to the pseudonyms), stable for
    /// one case of one organisation, and telling nothing of the id without the key.
    pub fn case_reference(
        &self,
        organisation: &crate::model::Organisationsnummer,
        arende: &str,
    ) -> Option<String> {
        let key = self.domains.get("audit")?.last()?;
        let mut mac = key.mac.clone();
        mac.update(b"af-arendereferens");
        mac.update(&[0]);
        mac.update(organisation.plain().as_bytes());
        mac.update(b"/");
        mac.update(arende.as_bytes());
        let tag = mac.finalize().into_bytes();
        Some(format!(
            "{}:{}",
            key.id,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag[..16])
        ))
    }

    /// The pseudonyms under every key of the domain, newest first: what to search for.
    pub fn all(&self, domain: &str, person: &Personnummer) -> Vec<String> {
        self.domains
            .get(domain)
            .map(|keys| {
                keys.iter()
                    .rev()
                    .map(|k| Self::with_key(k, domain, person))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Personnummer {
        Personnummer::parse("198507099805").unwrap()
    }

    #[test]
    fn a_key_in_use_may_not_change_its_bytes_nor_go_but_keys_may_be_added() {
        let mut now = Pseudonymizer::default();
        now.add_key("subscriptions", "s1", &[1; 32]).unwrap();
        let mut added = now.clone();
        added.add_key("subscriptions", "s2", &[2; 32]).unwrap();
        assert!(now.refusals(&added).is_empty());
        let mut edited = Pseudonymizer::default();
        edited.add_key("subscriptions", "s1", &[3; 32]).unwrap();
        let r = now.refusals(&edited);
        assert!(
            r.len() == 1 && r[0].contains("now names another key"),
            "{r:?}"
        );
        let mut gone = Pseudonymizer::default();
        gone.add_key("subscriptions", "s2", &[2; 32]).unwrap();
        let r = now.refusals(&gone);
        assert!(
            r.len() == 1 && r[0].contains("no longer configured"),
            "{r:?}"
        );
        // The messages never show a key.
        assert!(!r[0].contains("0101") && !r[0].contains("0303"));
    }

    #[test]
    fn pseudonyms_are_keyed_stable_per_domain_and_name_their_key() {
        let mut ps = Pseudonymizer::default();
        ps.add_key("audit", "a1", &[1; 32]).unwrap();
        ps.add_key("subscriptions", "s1", &[1; 32]).unwrap();
        let a = ps.pseudonym("audit", &p()).unwrap();
        assert!(a.starts_with("a1:") && a.len() == 3 + 22, "{a}");
        assert_eq!(ps.pseudonym("audit", &p()), Some(a.clone()), "stable");
        let s = ps.pseudonym("subscriptions", &p()).unwrap();
        assert_ne!(
            a[3..],
            s[3..],
            "another domain, another pseudonym, even with the same key bytes"
        );
        assert!(!a.contains("8507099805"));
        let mut other = Pseudonymizer::default();
        other.add_key("audit", "a1", &[2; 32]).unwrap();
        assert_ne!(
            other.pseudonym("audit", &p()),
            Some(a),
            "another key, another pseudonym"
        );
        assert_eq!(ps.pseudonym("unknown", &p()), None);
    }

    #[test]
    fn the_newest_key_writes_and_all_are_searched() {
        let mut ps = Pseudonymizer::default();
        ps.add_key("audit", "a1", &[1; 32]).unwrap();
        let old = ps.pseudonym("audit", &p()).unwrap();
        ps.add_key("audit", "a2", &[2; 32]).unwrap();
        let new = ps.pseudonym("audit", &p()).unwrap();
        assert!(new.starts_with("a2:"));
        assert_eq!(ps.all("audit", &p()), vec![new, old]);
    }

    #[test]
    fn keys_are_checked() {
        let mut ps = Pseudonymizer::default();
        assert_eq!(
            ps.add_key("audit", "a1", &[1; 31]),
            Err(KeyError::TooShort(31))
        );
        assert_eq!(ps.add_key("Audit", "a1", &[1; 32]), Err(KeyError::Domain));
        assert_eq!(ps.add_key("audit", "a:1", &[1; 32]), Err(KeyError::Id));
        ps.add_key("audit", "a1", &[1; 32]).unwrap();
        assert_eq!(
            ps.add_key("audit", "a1", &[3; 32]),
            Err(KeyError::Duplicate("a1".into()))
        );
        assert_eq!(decode_key("zz"), Err(KeyError::Encoding));
        assert_eq!(decode_key(&"ab".repeat(31)), Err(KeyError::TooShort(31)));
        assert_eq!(
            decode_key(&format!(" {}\n", "ab".repeat(32))).map(|k| k.len()),
            Ok(32)
        );
        assert!(
            !format!("{ps:?}").contains("01010101"),
            "Debug never shows a key"
        );
    }
}
