//! Who is calling: the organisation from the client certificate, the case worker from the JWT.

use std::collections::HashMap;
use std::path::Path;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use crate::error::{Failure, Felkod};
use crate::model::{HsaId, Kommunkod, Organisationsnummer};

mod certificate;
mod jwks;
mod token;

pub use certificate::*;
pub use jwks::*;
pub use token::*;

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
