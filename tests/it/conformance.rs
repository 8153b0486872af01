//! The conformance corpus (`tests/fixtures/contracts/`): every document goes through brygga and
//! through an independent validator — `xmllint` with the published XSD, and a JSON Schema
//! engine that brygga never uses at run time — and the two must agree. The only exception is a
//! document marked `strict`: valid to the schema, refused by brygga for a rule the schema states
//! in its annotation but cannot express.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::contracts::{tool_available, validator};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/contracts")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    Ok,
    Bad,
    Strict,
}

fn expected(path: &Path) -> Expected {
    let name = path.file_name().unwrap().to_string_lossy();
    match name.split('.').next() {
        Some("ok") => Expected::Ok,
        Some("bad") => Expected::Bad,
        Some("strict") => Expected::Strict,
        _ => panic!("{name}: the name must start with ok., bad. or strict."),
    }
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

#[test]
fn brygga_and_the_independent_validators_agree_on_every_document() {
    let xsd =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/kommun/v1/brygga-kommun-v1-soap.xsd");
    let xmllint = tool_available("xmllint", &["--version"]);
    let mut disagreements = Vec::new();
    let mut count = 0;
    let mut ok_types = BTreeSet::new();

    let mut check = |path: &Path, oracle: Option<bool>, kind: String, json: bool| {
        count += 1;
        let bytes = std::fs::read(path).unwrap();
        // JSON is checked as the type its directory names, never guessed from its members.
        let verdict = if json {
            brygga::contract::validate::validate_json_as(&bytes, &kind)
        } else {
            brygga::contract::validate::validate(&bytes)
        };
        let want = expected(path);
        let brygga_ok = verdict.is_valid();
        let agrees = match want {
            Expected::Ok => brygga_ok && oracle != Some(false),
            Expected::Bad => !brygga_ok && oracle != Some(true),
            Expected::Strict => !brygga_ok && oracle != Some(false),
        };
        if want == Expected::Ok {
            ok_types.insert(kind);
        }
        if !agrees {
            disagreements.push(format!(
                "{}: expected {want:?}, schema says {}, brygga says {} {:?}",
                path.strip_prefix(corpus()).unwrap_or(path).display(),
                match oracle {
                    Some(true) => "valid",
                    Some(false) => "invalid",
                    None => "(not run)",
                },
                if brygga_ok { "valid" } else { "invalid" },
                verdict.problems
            ));
        }
    };

    for path in files(&corpus().join("kommun"), "xml") {
        let oracle = xmllint.then(|| {
            Command::new("xmllint")
                .arg("--noout")
                .arg("--schema")
                .arg(&xsd)
                .arg(&path)
                .output()
                .unwrap()
                .status
                .success()
        });
        let element = path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .split('.')
            .nth(1)
            .unwrap_or("")
            .to_owned();
        check(&path, oracle, element, false);
    }
    let mut schemas = Vec::new();
    for dir in std::fs::read_dir(corpus().join("af")).unwrap() {
        let dir = dir.unwrap().path();
        let schema = dir.file_name().unwrap().to_string_lossy().into_owned();
        let v = validator(&schema);
        schemas.push(schema.clone());
        for path in files(&dir, "json") {
            let oracle =
                serde_json::from_slice::<serde_json::Value>(&std::fs::read(&path).unwrap())
                    .is_ok_and(|doc| v.is_valid(&doc));
            check(&path, Some(oracle), schema.clone(), true);
        }
    }

    assert!(
        disagreements.is_empty(),
        "{} disagreement(s):\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    assert!(
        count >= 150,
        "the corpus holds {count} documents, at least 150 are required"
    );
    // Every message type has at least one valid document.
    for t in [
        "HamtaArbetssokandeStatus",
        "HamtaArbetssokandeStatusSvar",
        "HamtaErsattningsbeslut",
        "HamtaErsattningsbeslutSvar",
        "HamtaHandlingsplan",
        "HamtaHandlingsplanSvar",
        "AnmalAktivitetsplan",
        "AnmalAktivitetsplanSvar",
        "Ping",
        "PingSvar",
        "ArbetssokandeHandelse",
        "ArbetssokandeHandelseKvittens",
        "Fel",
    ] {
        assert!(
            ok_types.contains(t),
            "no valid document of {t} (have {ok_types:?})"
        );
    }
    for s in schemas {
        assert!(ok_types.contains(&s), "no valid document for schema {s}");
    }
}
