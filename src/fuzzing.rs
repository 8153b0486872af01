//! What each fuzz target checks, one function a target: `fuzz/` (cargo-fuzz, nightly) runs them
//! coverage-guided, and `tests/it/fuzz_replay.rs` replays every committed input on stable, so
//! an input once found stays fixed. Each function takes any bytes, must never panic on them,
//! and panics only when one of its invariants breaks (a round trip that does not come back, an
//! identity number that survives masking, brygga accepting what the contract rejects).

use std::sync::LazyLock;

use crate::contract::af_json as af;
use crate::contract::soap::{self, KommunResponse};
use crate::contract::translate;
use crate::contract::xml::{self, XmlLimits};
use crate::model::ident::{
    embeds_identity_number, format_date, mask_identity_numbers, parse_date, redact_digit_runs,
};
use crate::model::*;
use crate::store::audit;

/// Text from bytes: the targets that take text skip what is not UTF-8 (the HTTP and TOML
/// layers refuse it before these parsers see it).
fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A SOAP request: decoding never panics, and what decodes encodes to a request that decodes
/// to the same model.
pub fn soap_request(data: &[u8]) {
    let limits = XmlLimits::default();
    let _ = crate::contract::validate::validate(data);
    if let Ok(req) = soap::decode_request(data, &limits) {
        let again = soap::encode_request(&req);
        let back = soap::decode_request(again.as_bytes(), &limits)
            .unwrap_or_else(|e| panic!("brygga's own encoding does not decode: {e}\n{again}"));
        assert_eq!(back, req, "the round trip changed the request");
    }
}

/// A SOAP answer or Fault, as the case system's side reads it: the same round trip.
pub fn soap_response(data: &[u8]) {
    let limits = XmlLimits::default();
    if let Ok(KommunResponse::Answer(answer)) = soap::decode_response(data, &limits) {
        let again = soap::encode_answer(&answer);
        let back = soap::decode_response(again.as_bytes(), &limits)
            .unwrap_or_else(|e| panic!("brygga's own encoding does not decode: {e}\n{again}"));
        assert_eq!(back, KommunResponse::Answer(answer));
    }
}

/// The bounded XML reader: never panics, and what it returns stays within its limits.
pub fn xml_reader(data: &[u8]) {
    let limits = XmlLimits::default();
    if let Ok(root) = xml::parse(data, &limits) {
        fn walk(e: &xml::Element, depth: usize, count: &mut usize, limits: &XmlLimits) {
            *count += 1;
            assert!(depth <= limits.max_depth, "deeper than the limit");
            assert!(
                e.text.chars().count() <= limits.max_text_len,
                "text over the limit"
            );
            for c in &e.children {
                walk(c, depth + 1, count, limits);
            }
        }
        let mut count = 0;
        walk(&root, 1, &mut count, &limits);
        assert!(count <= limits.max_elements, "more elements than the limit");
    }
}

/// The published JSON Schema's verdict on a body (`true`: valid), where the caller has a
/// validator: the fuzz crate and the replay test do, the library does not depend on one.
pub type SchemaOracle<'a> = Option<&'a dyn Fn(&str, &[u8]) -> bool>;

/// AF's JSON messages, by schema name; the first byte of a fuzz input picks one.
pub const AF_SCHEMAS: [&str; 10] = [
    "arbetssokande-status-response",
    "ersattningsbeslut-response",
    "handlingsplan-response",
    "aktivitetsplan-response",
    "handelser-request",
    "handelse",
    "arbetssokande-status-request",
    "aktivitetsplan-request",
    "health-response",
    "token-response",
];

/// An AF JSON message: brygga's verdict never panics; when brygga accepts it, `schema_accepts`
/// (the published JSON Schema, where the caller has a validator) must too; an accepted status
/// answer survives the model and back.
pub fn af_json(data: &[u8], schema_accepts: SchemaOracle<'_>) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let schema = AF_SCHEMAS[usize::from(pick) % AF_SCHEMAS.len()];
    af_json_as(schema, body, schema_accepts);
}

/// The same for one named schema.
pub fn af_json_as(schema: &str, body: &[u8], schema_accepts: SchemaOracle<'_>) {
    let verdict = crate::contract::validate::validate_json_as(body, schema);
    if verdict.is_valid()
        && let Some(accepts) = schema_accepts
    {
        assert!(
            accepts(schema, body),
            "brygga accepts what the {schema} schema rejects: {}",
            String::from_utf8_lossy(body)
        );
    }
    if schema == "arbetssokande-status-response"
        && let Ok(r) = crate::contract::validate::parse_json::<af::StatusResponse>(body)
        && let Ok(st) = translate::status_from_af(&r)
    {
        let skydd: Vec<&str> = r.skyddsmarkeringar.iter().map(String::as_str).collect();
        let back = translate::status_from_af(&translate::status_to_af(&st, &skydd))
            .expect("brygga's own AF answer breaks the contract");
        assert_eq!(back, st, "the model did not survive AF's JSON and back");
    }
}

/// A message through the whole translation: AF's status answer into the model, into the
/// municipality's XML, and read back as the case system would, is the same model.
pub fn round_trip(data: &[u8]) {
    let Ok(r) = crate::contract::validate::parse_json::<af::StatusResponse>(data) else {
        return;
    };
    let Ok(status) = translate::status_from_af(&r) else {
        return;
    };
    let answer = KommunAnswer::Status(HamtaArbetssokandeStatusSvar {
        korrelationsid: uuid::Uuid::nil(),
        status,
    });
    let xml = soap::encode_answer(&answer);
    let back = soap::decode_response(xml.as_bytes(), &XmlLimits::default())
        .unwrap_or_else(|e| panic!("brygga's own answer does not decode: {e}\n{xml}"));
    assert_eq!(back, KommunResponse::Answer(answer));
}

/// The identifiers: every parser on any text, each value that parses printing as one that
/// parses to the same, and no masking that leaves an identity number behind.
pub fn identifiers(data: &[u8]) {
    let Some(s) = text(data) else {
        return;
    };
    if let Ok(p) = Personnummer::parse(s) {
        assert_eq!(Personnummer::parse(&p.expose()).ok(), Some(p.clone()));
    }
    if let Ok(p) = Personnummer::parse_written(s) {
        assert_eq!(Personnummer::parse(&p.expose()).ok(), Some(p));
    }
    if let Ok(o) = Organisationsnummer::parse(s) {
        assert_eq!(Organisationsnummer::parse(&o.to_string()).ok(), Some(o));
    }
    if let Ok(k) = Kommunkod::parse(s) {
        assert_eq!(Kommunkod::parse(&k.to_string()).ok(), Some(k));
    }
    if let Ok(h) = HsaId::parse(s) {
        assert_eq!(HsaId::parse(h.as_str()).ok(), Some(h));
    }
    if let Ok(d) = parse_date(s) {
        // A date with an offset prints without it: the same day.
        assert_eq!(parse_date(&format_date(d)).ok(), Some(d));
    }
    let _ = lexical::parse_tidpunkt(s);
    let _ = lexical::parse_decimal(s, 1, 0, 1_000);
    let _ = lexical::parse_int(s, -1_000, 1_000);
    let masked = mask_identity_numbers(s);
    assert!(
        !embeds_identity_number(&masked),
        "masking left a number: {masked:?}"
    );
    let redacted = redact_digit_runs(s);
    assert!(
        !embeds_identity_number(&redacted),
        "redaction left a number: {redacted:?}"
    );
    assert!(
        lexical::hidden_character(&lexical::shown(s)).is_none(),
        "shown text still hides characters"
    );
}

/// The example identity provider of Stockholm, loaded once.
static IDP: LazyLock<Option<(crate::access::identity::IdpKeys, Vec<u8>, String)>> =
    LazyLock::new(|| {
        let files = crate::devkit::demo::DemoFiles::default();
        let jwks = files.certs.join("idp-0180.jwks.json");
        let idp = crate::access::identity::IdpKeys::load(
            "https://idp.stockholm.example/",
            "ES256",
            &jwks,
        )
        .ok()?;
        let key = std::fs::read(files.certs.join("idp-0180.key")).ok()?;
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&jwks).ok()?).ok()?;
        let kid = doc["keys"][0]["kid"].as_str()?.to_owned();
        Some((idp, key, kid))
    });

/// The token path: any text as a token, and any bytes as the claims of a token the example
/// identity provider signed (so the claims are read, not only the signature checked). Never
/// panics; a token accepted names a valid case worker and municipality.
pub fn jwt(data: &[u8]) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let Some((idp, key, kid)) = IDP.as_ref() else {
        return;
    };
    let rules = crate::access::identity::TokenRules {
        audience: "urn:se:brygga:kommun:v1".into(),
        leeway: 30,
        max_lifetime: 3600,
        replay_protection: false,
    };
    if let Some(token) = text(data) {
        let _ = crate::access::identity::verify_token(idp, &rules, token);
    }
    // The first byte picks a header; the rest are the claims as sent.
    let Some((&pick, claims)) = data.split_first() else {
        return;
    };
    let header = match pick % 4 {
        0 => format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{kid}"}}"#),
        1 => format!(r#"{{"alg":"ES256","kid":"{kid}","crit":["exp"]}}"#),
        2 => r#"{"alg":"ES256"}"#.to_owned(),
        _ => format!(r#"{{"alg":"ES256","kid":"{kid}","typ":"at+jwt","x5t#S256":"x"}}"#),
    };
    let input = format!("{}.{}", B64.encode(header), B64.encode(claims));
    let Ok(encoding) = jsonwebtoken::EncodingKey::from_ec_pem(key) else {
        return;
    };
    let Ok(signature) =
        jsonwebtoken::crypto::sign(input.as_bytes(), &encoding, jsonwebtoken::Algorithm::ES256)
    else {
        return;
    };
    let token = format!("{input}.{signature}");
    if let Ok(worker) = crate::access::identity::verify_token(idp, &rules, &token) {
        assert!(HsaId::parse(worker.hsa_id.as_str()).is_ok());
        assert!(crate::model::lexical::is_code(&worker.syfte));
        assert!(worker.funktion.iter().all(|f| !embeds_identity_number(f)));
    }
}

/// W3C trace context: `traceparent` and `tracestate` as any text; a context read writes a
/// header that reads back to the same trace, and a kept state spells no identity number.
pub fn trace_context(data: &[u8]) {
    let Some(s) = text(data) else {
        return;
    };
    let (parent, state) = s.split_once('\n').unwrap_or((s, ""));
    if let Some(c) = crate::ops::tracectx::TraceContext::parse(parent) {
        let header = c.header("0123456789abcdef");
        let again = crate::ops::tracectx::TraceContext::parse(&header).expect("own header");
        assert_eq!(again.trace_id, c.trace_id);
    }
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(parent) {
        headers.insert("traceparent", v);
    }
    for part in state.split('\n') {
        if let Ok(v) = http::HeaderValue::from_str(part) {
            headers.append("tracestate", v);
        }
    }
    if let Some(c) = crate::ops::tracectx::TraceContext::from_headers(&headers)
        && let Some(kept) = &c.state
    {
        assert!(
            !embeds_identity_number(kept),
            "a kept tracestate spells a number"
        );
    }
}

/// The configuration file: any text through the TOML format and every check (with no files
/// beside it, so each file a key names is missing). Never panics.
pub fn config(data: &[u8]) {
    let Some(s) = text(data) else {
        return;
    };
    if let Ok(file) = toml::from_str::<crate::config::ConfigFile>(s) {
        let _ = crate::config::Config::from_file(file, std::path::Path::new("/nonexistent/brygga"));
    }
}

/// The example checkpoint public key, read once.
static CHECKPOINT_KEY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    std::fs::read(
        crate::devkit::demo::DemoFiles::default()
            .certs
            .join("audit-signing.pub.pem"),
    )
    .unwrap_or_default()
});

/// The audit export reader and the extract's proof: any text as an `audit export` and as a
/// JSON extract, checked with the example key. Never panics.
pub fn audit_export(data: &[u8]) {
    let Some(s) = text(data) else {
        return;
    };
    let keys: [&[u8]; 1] = [&CHECKPOINT_KEY];
    let _ = audit::verify_export_lines(s, &keys);
    if let Ok(x) = serde_json::from_str::<crate::cli::extract::Extract>(s)
        && let Some(proof) = &x.proof
    {
        let _ = audit::check_proof(proof, &keys);
    }
}

/// Every target by name, for the replay test and `fuzz/run-all.sh`.
pub const TARGETS: [&str; 10] = [
    "soap_request",
    "soap_response",
    "xml_reader",
    "af_json",
    "round_trip",
    "identifiers",
    "jwt",
    "trace_context",
    "config",
    "audit_export",
];

/// Runs the target `name` on `data` (the replay test's entry), with the JSON Schema check
/// when given.
pub fn run(name: &str, data: &[u8], schema_accepts: SchemaOracle<'_>) {
    match name {
        "soap_request" => soap_request(data),
        "soap_response" => soap_response(data),
        "xml_reader" => xml_reader(data),
        "af_json" => af_json(data, schema_accepts),
        "round_trip" => round_trip(data),
        "identifiers" => identifiers(data),
        "jwt" => jwt(data),
        "trace_context" => trace_context(data),
        "config" => config(data),
        "audit_export" => audit_export(data),
        other => panic!("no fuzz target {other}"),
    }
}
