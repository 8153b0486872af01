//! The fuzzers' findings kept fixed on stable: every committed input of `fuzz/corpus/<target>/`
//! replayed through `brygga::fuzzing` (with the JSON Schema oracle for AF's messages), the SOAP
//! corpus checked against the XSD with libxml2 (`xmllint`), and each crash the fuzzers found as a
//! named test.

use std::path::{Path, PathBuf};
use std::process::Command;

use brygga::contract::soap::{self, KommunResponse};
use brygga::contract::xml::XmlLimits;

use crate::contracts::{tool_available, validator};

/// A target's committed corpus, and the inputs that found a bug in it (`fuzz/found/`).
fn corpus(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    if let Ok(found) = std::fs::read_dir(root.join("fuzz/found").join(target)) {
        files.extend(found.map(|e| e.unwrap().path()));
    }
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
    let r: brygga::contract::af_json::StatusResponse =
        brygga::contract::validate::parse_json(json.as_bytes()).unwrap();
    let status = brygga::contract::translate::status_from_af(&r).unwrap();
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
    let verdict = brygga::contract::validate::validate_json_as(body, "health-response");
    assert!(!verdict.is_valid(), "{verdict:?}");
    let why = format!("{verdict:?}");
    assert!(why.contains("UTF-8"), "{why}");
    brygga::fuzzing::af_json_as("health-response", body, Some(&schema_accepts));
    // The same in an event batch, where AF's bytes are stored for delivery.
    let batch = b"{\"handelser\":[],\"x\":\"\xff\"}";
    let err = brygga::contract::validate::parse_json::<serde_json::Value>(batch).unwrap_err();
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
    let verdict =
        brygga::contract::validate::validate_json_as(b" []\n", "ersattningsbeslut-response");
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
    let err = brygga::contract::validate::parse_json::<brygga::contract::af_json::StatusResponse>(
        status.as_bytes(),
    )
    .unwrap_err();
    assert_eq!(err.0, "kontor", "{err:?}");
    assert!(err.1.contains("an object"), "{err:?}");
    // The same body in an object form is read.
    let ok = status.replace(
        r#"["10021","Arbetsformedlingen Stockholm"]"#,
        r#"{"kod":"10021","namn":"Arbetsformedlingen Stockholm"}"#,
    );
    brygga::contract::validate::parse_json::<brygga::contract::af_json::StatusResponse>(
        ok.as_bytes(),
    )
    .unwrap();
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
    let verdict = brygga::contract::validate::validate_json_as(
        body.as_bytes(),
        "arbetssokande-status-response",
    );
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
        let verdict = brygga::contract::validate::validate_json_as(
            body.as_bytes(),
            "arbetssokande-status-response",
        );
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
    let verdict = brygga::contract::validate::validate_json_as(body, "ersattningsbeslut-response");
    assert!(!verdict.is_valid(), "{verdict:?}");
    assert!(
        format!("{verdict:?}").contains("not valid JSON"),
        "{verdict:?}"
    );
}

/// What brygga's SOAP decoders say about an input that found a bug (`fuzz/found/`, kept
/// there because a corpus merge drops inputs that add no coverage): its refusal, which must
/// be for malformed XML.
fn refusal_of(input: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/found")
        .join(input);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let limits = XmlLimits::default();
    let refused = if input.starts_with("soap_request/") {
        soap::decode_request(&bytes, &limits).unwrap_err()
    } else {
        match soap::decode_response(&bytes, &limits) {
            Err(e) => e,
            Ok(r) => panic!("{input}: decoded as {r:?}"),
        }
    };
    assert_eq!(
        refused.kind,
        soap::DecodeKind::Malformed,
        "{input}: {refused}"
    );
    refused.to_string()
}

/// Each input must be refused as malformed with a message holding `why`.
fn all_refused(inputs: &[&str], why: &str) {
    for input in inputs {
        let message = refusal_of(input);
        assert!(message.contains(why), "{input}: {message}");
    }
}

/// Found by the XSD differential: XML declarations that XML 1.0 [23] does not allow
/// (`<?xml versio>>>n="1.0"`, `en^oding`, `version="0"`, no version, a version that is not
/// closed, attributes out of order or run together) were read as if they were well-formed.
#[test]
fn a_malformed_xml_declaration_is_refused_naming_it() {
    all_refused(
        &[
            "soap_request/1b1d7543e22ee3a909c0eab3847a71ee7b09abee",
            "soap_request/2e763419b5c0fcfcd54aa7d2d72eab57dd710469",
            "soap_request/727eb7ec1ac869be6d4689776d970f6afb36f303",
            "soap_request/908d426187682effbb4fe9d5f15237293ceae947",
            "soap_request/a2f05b69b1ca64e30a01e5fd2b076d1aa25a8909",
            "soap_request/aa31d734b257429fe25c42e94b3fcde65180a3ae",
            "soap_request/b0b217c0bd7645a3d9278fa52438324ffc5642f2",
            "soap_response/06f676679d9e2696f454818465adc2c29fa5a99b",
            "soap_response/180a14b7dc8f55359429561c7265c0ee00c03ef6",
            "soap_response/334b5e52d42bf7d51fe0167c6502285bce4b490c",
            "soap_response/3b288cead7323ca6483c3616446b4e4b2574260f",
            "soap_response/92cb55ff96dbe20b561dc43e755a541e4461c943",
            "soap_response/956075152defe163350425875453437cd5662c19",
            "soap_response/c0ba2e0a32debcd44b2461bf2a110a6e8da471a4",
            "soap_response/df13e7048dd81eba60ec4a691ca993039639b97b",
            "soap_response/eb109f2ac2c7ed8bf7aa536274ff833e8db1befd",
            "soap_response/fd6d7d9c48b59292a7a99f43c865b383be84b478",
        ],
        "the XML declaration is malformed",
    );
}

/// Found by the XSD differential: element names that are no QName (`e:`, `e:x:`, `e:xe:`,
/// and `e:x/~<e:x`, where a broken `/>` ran into the next tag) were read, their local part
/// taken from after the first colon.
#[test]
fn an_element_name_with_an_empty_part_or_a_second_colon_is_refused() {
    all_refused(
        &[
            "soap_request/15d626b6a5fb2d71e37d5c0151ae4da9af2eb087",
            "soap_request/2dacc045b8fe1f57fa53c97e1bf768476544644b",
            "soap_request/2f116600b331555d32ee635ffedd30e2bb81aa9e",
            "soap_request/314773459e5734145d212de5ca2571031e622c36",
            "soap_request/467b1c6375ff3ba550f849570b4b2308cee606f1",
            "soap_request/4f172bf9deef57506045b54221a6c18af365e367",
            "soap_request/5633f701e3c290bba1d3987035a18fdd3cbd51f7",
            "soap_request/611127186c110204aac73f139927876917d2b962",
            "soap_request/91527cfff5258d96505382a75b1f784b715e5c4f",
            "soap_request/1d835e9ccac407515c7661dbbb79f6b8efd6220a",
            "soap_request/4110999af6d1b9fd2a0393acaeb0c105019552ac",
            "soap_request/b5dff6e9550c2ba5088e4901534f91dd0a291f59",
        ],
        "is not an XML name",
    );
}

/// Found by the XSD differential: attributes run together with a name that is no name
/// (`xmlns:e="…"k:Arendeident)tetand="0"`), and a `<` inside an attribute's value.
#[test]
fn an_attribute_run_together_or_holding_a_lt_is_refused() {
    assert!(
        refusal_of("soap_request/bee2025f418b59ae1b270426c4ec89bb3da2c805")
            .contains("separated by white space")
    );
    assert!(
        refusal_of("soap_request/a311f268b3a291b5223c59fb5de42cad770bd60e").contains("holds '<'")
    );
}

/// Found by the XSD differential: `xmlns:e="urn*:example:…"` names no URI (a scheme has no
/// `*`), which Namespaces in XML requires.
#[test]
fn a_namespace_that_is_not_a_uri_is_refused() {
    let message = refusal_of("soap_request/72b5a37f7b77787a0654e8efed1ecd4a8dbef277");
    assert!(message.contains("not a URI"), "{message}");
}

/// Found by the XSD differential: processing instructions whose target is no name (`<??>`,
/// `<?x"?>`, `<?xF-8"?>`, `<?xmlncoding="UTF-8"?>`).
#[test]
fn a_processing_instruction_without_a_name_is_refused() {
    all_refused(
        &[
            "soap_response/16e84dc6dba2f733a7958dd84b41bfe9fe1d568e",
            "soap_response/29a99218f0bfbc803402dd5ca846c0b9639b724b",
            "soap_response/605c09dcc07cf40aa22ad7d6dcd68735ccac7720",
            "soap_response/c2a118bf6c069d2745ca586fd9539afcd928b2b2",
        ],
        "processing instruction",
    );
}

/// Found by the XSD differential after the reader's rules were tightened: a processing
/// instruction whose content holds NUL characters (`<?lmvr exsion="1.0" encodin\0\0…?>`)
/// was read past, since only text and attribute values were checked for characters XML
/// 1.0 forbids. Processing instructions and comments are checked too.
#[test]
fn a_processing_instruction_or_comment_holding_a_forbidden_character_is_refused() {
    all_refused(
        &["soap_request/e98b16284babb173c968d183ce628cfaea1b5d3b"],
        "a character that XML 1.0 does not allow",
    );
    for doc in [
        "<a><!-- x\u{1} --></a>",
        "<a><?pi x\u{0}?></a>",
        "<?pi \u{FFFE}?><a/>",
    ] {
        let e = brygga::contract::xml::parse(doc.as_bytes(), &XmlLimits::default()).unwrap_err();
        assert!(e.to_string().contains("does not allow"), "{doc:?}: {e}");
    }
}

/// Found by the XSD differential on the second run over the stricter reader: an extension
/// element (`e:Tillagg`, of another namespace) holding the contract's own elements. brygga
/// dropped the extension unread; a schema validator checks lax content against every
/// declaration it has, so the nested `k:HamtaArbetssokandeStatus` (without its `Ingivare`) made
/// the document invalid. An extension, or a header entry, that holds elements of the
/// contract's namespace is refused.
#[test]
fn an_extension_or_header_entry_holding_the_contracts_own_elements_is_refused() {
    refused_as(
        "soap_request/ebbf670f17417b32b54907adc014867bef4672ad",
        soap::DecodeKind::Unexpected,
        "Fraga/Tillagg: an extension may not hold elements of the contract's namespace",
    );
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schemas/kommun/v1/examples/HamtaArbetssokandeStatus.request.xml"),
    )
    .unwrap();
    let in_header = example.replace(
        "<soap:Body>",
        r#"<soap:Header><e:Sparning xmlns:e="urn:example:x"><k:Syfte>EKB-BESLUT</k:Syfte></e:Sparning></soap:Header><soap:Body>"#,
    );
    let header_itself = example.replace(
        "<soap:Body>",
        r#"<soap:Header><k:Syfte>EKB-BESLUT</k:Syfte></soap:Header><soap:Body>"#,
    );
    for doc in [in_header, header_itself] {
        let e = brygga::contract::soap::decode_request(doc.as_bytes(), &XmlLimits::default())
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("may not hold elements of the contract's namespace")
                || e.to_string().contains("may not be or hold elements"),
            "{e}"
        );
    }
    // An extension of foreign elements only is still dropped, as the contract allows.
    let foreign_only = example.replace(
        "</k:Fraga>",
        r#"<e:Tillagg xmlns:e="urn:example:x"><e:Data>1</e:Data></e:Tillagg></k:Fraga>"#,
    );
    brygga::contract::soap::decode_request(foreign_only.as_bytes(), &XmlLimits::default()).unwrap();
}

/// Found by the XSD differential on the second run: `TimmarPerVecka` written as `0.5`
/// followed by 67 zeros. The value is 0.5, but libxml2 holds at most about 24 fraction digits
/// as written and refuses the rest. brygga now refuses a decimal with more than 18 digits on
/// either side of the point, as written, on both contracts (XML and AF's JSON).
#[test]
fn a_decimal_written_with_more_digits_than_a_validator_holds_is_refused() {
    refused_as(
        "soap_request/9d5de3455fb54d552294f7fe9e55ba9db164452e",
        soap::DecodeKind::Invalid,
        "TimmarPerVecka: must be a decimal number",
    );
    let parse = |s: &str| brygga::model::lexical::parse_decimal(s, 1, 5, 400);
    assert_eq!(parse("0.500000000000000000"), Ok(5));
    assert_eq!(parse("000000000000000012.5"), Ok(125));
    assert!(
        parse("0.5000000000000000000")
            .unwrap_err()
            .contains("at most 18 digits")
    );
    assert!(
        parse("0000000000000000012.5")
            .unwrap_err()
            .contains("at most 18 digits")
    );
}

/// A found request input must be refused with `kind`, naming `why`.
fn refused_as(input: &str, kind: soap::DecodeKind, why: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/found")
        .join(input);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let refused = soap::decode_request(&bytes, &XmlLimits::default()).unwrap_err();
    assert_eq!(refused.kind, kind, "{input}: {refused}");
    assert!(refused.to_string().contains(why), "{input}: {refused}");
}
