//! The fuzzers' findings kept fixed on stable: every committed input of `fuzz/corpus/<target>/`
//! replayed through `brygga::fuzzing` (with the JSON Schema oracle for AF's messages), the SOAP
//! corpus checked against the XSD with libxml2 (`xmllint`), and each crash the fuzzers found as a
//! named test.

use std::path::{Path, PathBuf};
use std::process::Command;

use brygga::codec::soap::{self, KommunResponse};
use brygga::codec::xml::XmlLimits;

use crate::contracts::{tool_available, validator};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// The published JSON Schema's verdict, the oracle `af_json` is checked against.
fn schema_accepts(schema: &str, body: &[u8]) -> bool {
    thread_local! {
        static VALIDATORS: std::cell::RefCell<Vec<(String, jsonschema::Validator)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    VALIDATORS.with(|v| {
        let mut v = v.borrow_mut();
        if !v.iter().any(|(n, _)| n == schema) {
            v.push((schema.to_owned(), validator(schema)));
        }
        v.iter()
            .find(|(n, _)| n == schema)
            .unwrap()
            .1
            .is_valid(&value)
    })
}

/// Every committed input of every target, run as the fuzzer ran it: none may panic.
#[test]
fn every_committed_fuzz_input_still_passes_its_target() {
    let mut total = 0;
    for target in brygga::fuzzing::TARGETS {
        let files = corpus(target);
        assert!(!files.is_empty(), "fuzz/corpus/{target} holds no input");
        for f in &files {
            let data = std::fs::read(f).unwrap();
            let outcome = std::panic::catch_unwind(|| {
                brygga::fuzzing::run(target, &data, Some(&schema_accepts));
            });
            assert!(
                outcome.is_ok(),
                "{target} fails on {} (reproduce: cargo +nightly fuzz run {target} {})",
                f.display(),
                f.display()
            );
        }
        total += files.len();
    }
    assert!(total >= 100, "only {total} inputs in fuzz/corpus");
}

/// The differential against the XSD: every SOAP request in the corpus that brygga decodes,
/// libxml2 accepts against the published schema too (brygga is allowed to be stricter:
/// checksums, dates that exist, its limits).
#[test]
fn whatever_brygga_decodes_from_the_corpus_the_xsd_accepts() {
    if !tool_available("xmllint", &["--version"]) {
        return;
    }
    let limits = XmlLimits::default();
    let mut accepted: Vec<PathBuf> = corpus("soap_request")
        .into_iter()
        .filter(|f| soap::decode_request(&std::fs::read(f).unwrap(), &limits).is_ok())
        .collect();
    accepted.extend(corpus("soap_response").into_iter().filter(|f| {
        matches!(
            soap::decode_response(&std::fs::read(f).unwrap(), &limits),
            Ok(KommunResponse::Answer(_))
        )
    }));
    assert!(
        accepted.len() >= 20,
        "only {} accepted inputs to compare",
        accepted.len()
    );
    let xsd =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/kommun/v1/brygga-kommun-v1-soap.xsd");
    // xmllint names each file it refuses; a batch keeps the command line short.
    let mut refused = std::collections::BTreeMap::<String, Vec<String>>::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for batch in accepted.chunks(200) {
        let out = Command::new("xmllint")
            .arg("--noout")
            .arg("--nonet")
            .arg("--schema")
            .arg(&xsd)
            .args(batch)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Each complaint starts with the file it is about.
        for line in stderr.lines().filter(|l| !l.ends_with(" validates")) {
            if let Some(f) = batch
                .iter()
                .find(|f| line.starts_with(&*f.to_string_lossy()))
            {
                let rel = f
                    .strip_prefix(root)
                    .unwrap_or(f)
                    .to_string_lossy()
                    .into_owned();
                refused.entry(rel).or_default().push(line.to_owned());
            }
        }
    }
    // The divergences found and not yet fixed, each with its reason: a new one fails this
    // test, and so does one that no longer diverges (take it off the list).
    let known: std::collections::BTreeSet<String> =
        std::fs::read_to_string(root.join("fuzz/xsd-divergences.txt"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split('#').next())
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
    let new: Vec<String> = refused
        .iter()
        .filter(|(f, _)| !known.contains(*f))
        .map(|(f, why)| format!("{f}:\n  {}", why.join("\n  ")))
        .collect();
    assert!(
        new.is_empty(),
        "brygga accepts what the XSD refuses:\n{}",
        new.join("\n")
    );
    let fixed: Vec<&String> = known.iter().filter(|f| !refused.contains_key(*f)).collect();
    assert!(
        fixed.is_empty(),
        "no longer diverge, take them off fuzz/xsd-divergences.txt: {fixed:?}"
    );
}

/// Found by `round_trip`: AF's text with a run of spaces went to the case system as written,
/// and the case system's XSD (`xs:token`) reads it collapsed, so the two sides held different
/// text. brygga now collapses AF's text as the municipal contract's type does.
#[test]
fn afs_text_with_repeated_spaces_reaches_the_case_system_as_its_xsd_reads_it() {
    let json = r#"{"kandAvAf":true,"inskriven":true,"inskrivningsdatum":"2026-01-02",
        "skyddsmarkeringar":[],
        "avaktualisering":{"datum":"2027-06-14","orsakKod":"ARB","orsakText":" Fick \t arbete\n"},
        "aKassa":{"medlem":true,"namn":"Unionens  a-kassa"}}"#;
    brygga::fuzzing::round_trip(json.as_bytes());
    let r: brygga::codec::af_json::StatusResponse =
        brygga::validate::parse_json(json.as_bytes()).unwrap();
    let status = brygga::translate::status_from_af(&r).unwrap();
    assert_eq!(status.avaktualisering.unwrap().orsak_text, "Fick arbete");
    assert_eq!(
        status.a_kassa.unwrap().namn.as_deref(),
        Some("Unionens a-kassa")
    );
}

/// Found by `af_json`: bytes that are not UTF-8 inside a member brygga does not read were
/// accepted, since serde skips what it ignores without checking it. JSON is UTF-8 (RFC 8259),
/// so such a body is refused whole, naming where.
#[test]
fn af_json_that_is_not_utf8_is_refused_even_where_brygga_does_not_read() {
    let body = b"{\"status\":\"DOWN\",\"components\":{\"db\":{\"status\":\"D\xf1WN\"}}}";
    let verdict = brygga::validate::validate_json_as(body, "health-response");
    assert!(!verdict.is_valid(), "{verdict:?}");
    let why = format!("{verdict:?}");
    assert!(why.contains("UTF-8"), "{why}");
    brygga::fuzzing::af_json_as("health-response", body, Some(&schema_accepts));
    // The same in an event batch, where AF's bytes are stored for delivery.
    let batch = b"{\"handelser\":[],\"x\":\"\xff\"}";
    let err = brygga::validate::parse_json::<serde_json::Value>(batch).unwrap_err();
    assert!(
        err.1.contains("UTF-8") && err.1.contains("byte 21"),
        "{err:?}"
    );
}

/// Found by `af_json`: serde reads a struct from a JSON array as well as from an object (its
/// fields by position), so `[]` passed as an `ersattningsbeslut-response` with no decisions,
/// and an array could stand for any object inside a message. AF's contract has objects there;
/// brygga now refuses such a body naming where, on every path that reads AF's JSON.
#[test]
fn an_array_where_afs_contract_has_an_object_is_refused_naming_where() {
    let verdict = brygga::validate::validate_json_as(b" []\n", "ersattningsbeslut-response");
    assert!(!verdict.is_valid(), "{verdict:?}");
    assert!(format!("{verdict:?}").contains("an object"), "{verdict:?}");
    brygga::fuzzing::af_json_as(
        "ersattningsbeslut-response",
        b" []\n",
        Some(&schema_accepts),
    );
    // Inside a message: the office as [kod, namn].
    let status = r#"{"kandAvAf":true,"inskriven":true,"inskrivningsdatum":"2026-01-02",
        "skyddsmarkeringar":[],"kontor":["10021","Arbetsformedlingen Stockholm"]}"#;
    let err =
        brygga::validate::parse_json::<brygga::codec::af_json::StatusResponse>(status.as_bytes())
            .unwrap_err();
    assert_eq!(err.0, "kontor", "{err:?}");
    assert!(err.1.contains("an object"), "{err:?}");
    // The same body in an object form is read.
    let ok = status.replace(
        r#"["10021","Arbetsformedlingen Stockholm"]"#,
        r#"{"kod":"10021","namn":"Arbetsformedlingen Stockholm"}"#,
    );
    brygga::validate::parse_json::<brygga::codec::af_json::StatusResponse>(ok.as_bytes()).unwrap();
}

/// Found by `af_json` after the collapse above: AF's schema limits the text as AF sends it
/// (`maxLength` counts every space), so a 19-character office code that collapses to 6 must
/// still be refused, as the schema refuses it.
#[test]
fn afs_text_is_measured_as_af_sent_it_before_it_is_collapsed() {
    let body = format!(
        r#"{{"kandAvAf":true,"inskriven":false,"skyddsmarkeringar":[],
        "kontor":{{"kod":"1002{}1","namn":"Arbetsformedlingen"}}}}"#,
        " ".repeat(14)
    );
    let verdict =
        brygga::validate::validate_json_as(body.as_bytes(), "arbetssokande-status-response");
    assert!(!verdict.is_valid(), "{verdict:?}");
    assert!(format!("{verdict:?}").contains("kontor.kod"), "{verdict:?}");
    brygga::fuzzing::af_json_as(
        "arbetssokande-status-response",
        body.as_bytes(),
        Some(&schema_accepts),
    );
}

/// Found by `round_trip`: AF's text with a DEL (U+007F), which AF's schema and XML allow,
/// was sent to the case system, whose reader (brygga's own included) refuses characters that
/// hide or reorder text. What brygga would have to refuse on the municipal side, it refuses
/// from AF, naming the field, and the case system gets a clear Fault instead.
#[test]
fn afs_text_with_a_control_or_bidi_character_is_refused_naming_the_field() {
    for c in ['\u{7f}', '\u{202e}', '\u{200b}'] {
        let body = format!(
            r#"{{"kandAvAf":true,"inskriven":false,"skyddsmarkeringar":[],
            "kontor":{{"kod":"10021","namn":"Arbetsf{c}rmedlingen"}}}}"#
        );
        let verdict =
            brygga::validate::validate_json_as(body.as_bytes(), "arbetssokande-status-response");
        assert!(!verdict.is_valid(), "{c:?}: {verdict:?}");
        assert!(
            format!("{verdict:?}").contains("kontor.namn"),
            "{verdict:?}"
        );
        brygga::fuzzing::round_trip(body.as_bytes());
    }
}

/// Kept by the corpus: serde skips an unknown member without reading its numbers, so a number
/// no JSON reader can hold (`1E666`) passed inside one. The body is refused as not JSON.
#[test]
fn a_number_out_of_range_in_a_member_brygga_skips_is_refused() {
    let body = br#"{"beslut":[],"x":[6666666666E666]}"#;
    let verdict = brygga::validate::validate_json_as(body, "ersattningsbeslut-response");
    assert!(!verdict.is_valid(), "{verdict:?}");
    assert!(
        format!("{verdict:?}").contains("not valid JSON"),
        "{verdict:?}"
    );
}
