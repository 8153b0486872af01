#![no_main]
//! AF's JSON messages, differential: whatever brygga accepts, the published JSON Schema must
//! accept too (checked with the `jsonschema` crate). What else it checks:
//! `brygga::fuzzing::af_json`.

use std::sync::LazyLock;

fn schema_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/af/v1")
}

/// Every schema of `schemas/af/v1/` by name, as JSON.
static DOCS: LazyLock<Vec<(String, serde_json::Value)>> = LazyLock::new(|| {
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(schema_dir()).expect("schemas/af/v1") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(name) = name.strip_suffix(".schema.json") {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("JSON");
            docs.push((name.to_owned(), v));
        }
    }
    docs
});

/// All of them registered, for their `$ref`s to one another.
static REGISTRY: LazyLock<jsonschema::Registry<'static>> = LazyLock::new(|| {
    jsonschema::Registry::new()
        .extend(
            DOCS.iter()
                .map(|(_, v)| (v["$id"].as_str().unwrap().to_owned(), v.clone())),
        )
        .expect("registry")
        .prepare()
        .expect("registry")
});

/// A validator per schema.
static SCHEMAS: LazyLock<Vec<(String, jsonschema::Validator)>> = LazyLock::new(|| {
    DOCS.iter()
        .map(|(name, v)| {
            let validator = jsonschema::options()
                .with_registry(&REGISTRY)
                .should_validate_formats(true)
                .build(v)
                .expect("schema");
            (name.clone(), validator)
        })
        .collect()
});

fn schema_accepts(schema: &str, body: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    SCHEMAS
        .iter()
        .find(|(name, _)| name == schema)
        .is_none_or(|(_, v)| v.is_valid(&value))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| brygga::fuzzing::af_json(data, Some(&schema_accepts)));
