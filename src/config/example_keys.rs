//! `certs-example/` holds keys that are public by design: anyone can read them in the
//! repository, mint tokens with its identity providers' keys, compute its pseudonyms. A
//! gateway in production must not use one; this finds those a configuration uses.

use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use crate::config::Config;

/// Every private key of the example PKI (the gateway's, the CAs', the simulators', the
/// identity providers' and the municipal clients', and the checkpoint key).
const PRIVATE: &[&[u8]] = &[
    include_bytes!("../../certs-example/af-ca.key"),
    include_bytes!("../../certs-example/af-client.key"),
    include_bytes!("../../certs-example/af-sim.key"),
    include_bytes!("../../certs-example/audit-signing.key"),
    include_bytes!("../../certs-example/gateway-af.key"),
    include_bytes!("../../certs-example/gateway-kommun.key"),
    include_bytes!("../../certs-example/gateway-to-af.key"),
    include_bytes!("../../certs-example/gateway-to-kommun.key"),
    include_bytes!("../../certs-example/idp-0180.key"),
    include_bytes!("../../certs-example/idp-1480.key"),
    include_bytes!("../../certs-example/klient-0180.key"),
    include_bytes!("../../certs-example/klient-1480.key"),
    include_bytes!("../../certs-example/kommun-ca.key"),
    include_bytes!("../../certs-example/kommun-sim.key"),
];

/// The example pseudonym keys (hex).
const PSEUDONYM: &[&str] = &[
    include_str!("../../certs-example/pseudonym-audit.key"),
    include_str!("../../certs-example/pseudonym-subscriptions.key"),
];

/// The example identity providers' published keys: their private halves are public, so a
/// gateway that trusts them accepts anyone's tokens.
const JWKS: &[&str] = &[
    include_str!("../../certs-example/idp-0180.jwks.json"),
    include_str!("../../certs-example/idp-1480.jwks.json"),
];

/// The environments (`gateway.environment`) where the example keys are allowed.
pub const TEST_ENVIRONMENTS: [&str; 4] = ["U1", "I1", "T1", "T2"];

fn secret(pem: &[u8]) -> Option<Vec<u8>> {
    PrivateKeyDer::from_pem_slice(pem)
        .ok()
        .map(|k| k.secret_der().to_vec())
}

/// The public key material of a JWKS document (each key's `x`, `y`, `n`), to compare sets.
fn jwks_material(text: &str) -> Vec<String> {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    doc["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|k| ["x", "y", "n"].map(|f| k[f].as_str().map(str::to_owned)))
        .flatten()
        .collect()
}

/// The configuration keys whose key is one of `certs-example/`'s.
pub fn in_use(config: &Config) -> Vec<String> {
    let examples: Vec<Vec<u8>> = PRIVATE.iter().filter_map(|p| secret(p)).collect();
    let is_example = |k: &PrivateKeyDer<'_>| examples.iter().any(|e| e == k.secret_der());
    let mut found = Vec::new();
    for (name, key) in [
        ("kommun.key", &config.kommun.identity.key),
        ("events.key", &config.events.tls.identity.key),
        ("af.client_key", &config.af.tls.identity.key),
        ("delivery.client_key", &config.delivery.identity.key),
    ] {
        if is_example(key) {
            found.push(name.to_owned());
        }
    }
    if secret(&config.audit.signing_key).is_some_and(|s| examples.contains(&s)) {
        found.push("audit.signing_key".to_owned());
    }
    if PSEUDONYM.iter().any(|hex| {
        crate::access::pseudo::decode_key(hex)
            .is_ok_and(|bytes| config.pseudonyms.holds_key(&bytes))
    }) {
        found.push("pseudonyms".to_owned());
    }
    let example_jwks: Vec<String> = JWKS.iter().flat_map(|j| jwks_material(j)).collect();
    for c in &config.clients {
        let Some(file) = c.idp.jwks_file() else {
            continue;
        };
        let keys = std::fs::read_to_string(file)
            .map(|t| jwks_material(&t))
            .unwrap_or_default();
        if keys.iter().any(|k| example_jwks.contains(k)) {
            found.push(format!("clients.{}.idp.jwks_file", c.name));
        }
    }
    found
}

/// Refuses a configuration that uses example keys outside a test environment, unless
/// `allowed` (an operator's explicit flag).
pub fn refuse_in_production(config: &Config, allowed: bool) -> Result<(), String> {
    if allowed || TEST_ENVIRONMENTS.contains(&config.environment.as_str()) {
        return Ok(());
    }
    let found = in_use(config);
    if found.is_empty() {
        return Ok(());
    }
    Err(format!(
        "gateway.environment is {} but these use certs-example's public keys, which anyone can read: {}; use your own keys (or, for a test, a test environment or --allow-example-keys)",
        config.environment,
        found.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_uses_example_keys_everywhere() {
        let config = Config::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml"),
        )
        .unwrap();
        assert_eq!(
            in_use(&config),
            [
                "kommun.key",
                "events.key",
                "af.client_key",
                "delivery.client_key",
                "audit.signing_key",
                "pseudonyms",
                "clients.stockholm.idp.jwks_file",
                "clients.goteborg.idp.jwks_file",
            ]
        );
        // U1, the example's environment, allows them; PROD does not, unless told.
        assert!(refuse_in_production(&config, false).is_ok());
        let mut prod = config.clone();
        prod.environment = "PROD".into();
        let refused = refuse_in_production(&prod, false).unwrap_err();
        assert!(refused.contains("kommun.key") && refused.contains("pseudonyms"));
        assert!(refuse_in_production(&prod, true).is_ok());
    }
}
