//! THREATS.md stays true to the code: every test, fuzz target and file it cites exists, every
//! threat names its control, its tests and what is left; and the supply-chain policy it
//! describes is the one `deny.toml` holds.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The text between backticks, in order.
fn cited(text: &str) -> Vec<String> {
    text.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect()
}

fn is_test_path(s: &str) -> bool {
    let parts: Vec<&str> = s.split("::").collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

/// Where the test `module::name` (integration) or `a::b::tests::name` (unit) must be.
fn test_file(path: &str) -> PathBuf {
    let parts: Vec<&str> = path.split("::").collect();
    let integration = root().join("tests/it").join(format!("{}.rs", parts[0]));
    if parts.len() == 2 && integration.exists() {
        return integration;
    }
    let module: Vec<&str> = parts[..parts.len() - 1]
        .iter()
        .copied()
        .take_while(|p| *p != "tests")
        .collect();
    let base = root().join("src").join(module.join("/"));
    let file = base.with_extension("rs");
    if file.exists() {
        file
    } else {
        base.join("mod.rs")
    }
}

fn defines_test(file: &Path, name: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(file) else {
        return false;
    };
    // A test function, not a helper of that name: the attribute comes within a few lines.
    let lines: Vec<&str> = text.lines().collect();
    lines.iter().enumerate().any(|(i, l)| {
        let l = l.trim_start();
        (l.starts_with(&format!("fn {name}(")) || l.starts_with(&format!("async fn {name}(")))
            && lines[i.saturating_sub(3)..i]
                .iter()
                .any(|a| a.contains("#[test]") || a.contains("#[tokio::test"))
    })
}

#[test]
fn every_test_threats_md_cites_exists() {
    let text = std::fs::read_to_string(root().join("THREATS.md")).unwrap();
    let mut missing = Vec::new();
    let (mut tests, mut targets, mut files) = (0, 0, 0);
    for c in cited(&text) {
        if let Some(target) = c.strip_prefix("fuzz/").filter(|t| !t.contains('.')) {
            targets += 1;
            if !brygga::fuzzing::TARGETS.contains(&target)
                || !root()
                    .join(format!("fuzz/fuzz_targets/{target}.rs"))
                    .exists()
            {
                missing.push(format!("fuzz target {c}"));
            }
        } else if c.starts_with("src/") || c.starts_with(".ci/") || c == "deny.toml" {
            files += 1;
            if !root().join(&c).exists() {
                missing.push(format!("file {c}"));
            }
        } else if is_test_path(&c) {
            tests += 1;
            let name = c.rsplit("::").next().unwrap();
            let file = test_file(&c);
            if !defines_test(&file, name) {
                missing.push(format!("test {c} (looked in {})", file.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "THREATS.md cites what does not exist:\n{}",
        missing.join("\n")
    );
    assert!(
        tests >= 100 && targets >= 10 && files >= 20,
        "{tests} tests, {targets} fuzz targets, {files} files"
    );
    // Every fuzz target is cited somewhere.
    for t in brygga::fuzzing::TARGETS {
        assert!(
            text.contains(&format!("`fuzz/{t}`")),
            "THREATS.md does not say what fuzz/{t} proves"
        );
    }
}

#[test]
fn every_threat_names_its_control_its_tests_and_what_is_left() {
    let text = std::fs::read_to_string(root().join("THREATS.md")).unwrap();
    let sections: Vec<&str> = text.split("\n## ").skip(1).collect();
    let expected = [
        "Forged client",
        "Stolen or replayed token",
        "Token for another municipality",
        "Purpose abuse",
        "Enumeration of persons",
        "Log tampering or replacement",
        "Log leakage",
        "Hostile XML and JSON",
        "Resource exhaustion before TLS",
        "Resource exhaustion after TLS",
        "AF impersonation",
        "Event injection",
        "Misconfiguration and example keys in production",
        "Supply chain",
        "Insider at the operator",
    ];
    let titles: Vec<&str> = sections
        .iter()
        .map(|s| s.lines().next().unwrap_or_default())
        .collect();
    assert_eq!(titles, expected);
    for s in &sections {
        let title = s.lines().next().unwrap_or_default();
        for part in ["*Threat:*", "*Control:*", "*Tests:*", "*Residual:*"] {
            assert!(s.contains(part), "{title}: no {part}");
        }
        let control = &s[s.find("*Control:*").unwrap()..s.find("*Tests:*").unwrap()];
        assert!(
            cited(control)
                .iter()
                .any(|c| c.starts_with("src/") || c.starts_with(".ci/") || c == "deny.toml"),
            "{title}: the control names no place in the code"
        );
        let tests = &s[s.find("*Tests:*").unwrap()..s.find("*Residual:*").unwrap()];
        assert!(
            cited(tests).iter().any(|c| is_test_path(c)),
            "{title}: no test"
        );
    }
}

#[test]
fn the_supply_chain_policy_bans_a_second_crypto_stack_and_gives_every_duplicate_a_reason() {
    let deny: toml::Value =
        toml::from_str(&std::fs::read_to_string(root().join("deny.toml")).unwrap()).unwrap();
    let bans = &deny["bans"];
    assert_eq!(bans["multiple-versions"].as_str(), Some("deny"));
    let denied: Vec<&str> = bans["deny"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["crate"].as_str())
        .collect();
    for c in ["ring", "openssl", "openssl-sys", "native-tls"] {
        assert!(denied.contains(&c), "{c} is not banned");
    }
    for skip in bans["skip"].as_array().unwrap() {
        let reason = skip["reason"].as_str().unwrap_or_default();
        assert!(
            reason.split_whitespace().count() >= 8,
            "{skip}: a duplicate needs a written reason"
        );
    }
    assert_eq!(
        deny["sources"]["unknown-registry"].as_str(),
        Some("deny"),
        "crates come from crates.io only"
    );
    assert_eq!(deny["sources"]["unknown-git"].as_str(), Some("deny"));
    assert!(
        deny["advisories"]["db-path"].as_str().is_some(),
        "advisories are read from the offline snapshot"
    );
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(
        ci.contains(".ci/supply-chain"),
        ".ci/run checks the supply chain"
    );
}
