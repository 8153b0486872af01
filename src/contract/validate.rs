//! `brygga validate`: detects a message's type and checks it with the gateway's own decoders
//! and contract checks, so what it accepts is exactly what the gateway accepts.

use serde::de::DeserializeOwned;

use crate::contract::af_json as af;
use crate::contract::soap::{self, DecodeError, SOAP_ENV_NS};
use crate::contract::translate::{self, AfContractError};
use crate::contract::xml::{self, XmlLimits};
use crate::model::ident::parse_date;
use crate::model::{KOMMUN_NS, Personnummer};

/// The outcome for one document: its detected type and its problems (`path: reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub message_type: String,
    pub problems: Vec<String>,
}

impl Verdict {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
    /// A problem names what was wrong, and may quote a name the document chose: digit runs
    /// that could be an identity number are masked, so the verdict can be printed or logged.
    fn of(message_type: &str, result: Result<(), String>) -> Self {
        Self {
            message_type: message_type.to_owned(),
            problems: result
                .err()
                .map(|p| crate::model::ident::redact_digit_runs(&p))
                .into_iter()
                .collect(),
        }
    }
}

fn decode_problem(e: DecodeError) -> String {
    format!(
        "{}: {}",
        e.path.as_deref().unwrap_or("(document)"),
        e.message
    )
}

/// Validates one document, XML or JSON.
pub fn validate(bytes: &[u8]) -> Verdict {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    match first {
        Some(b'{') | Some(b'[') => validate_json(bytes),
        _ => validate_xml(bytes),
    }
}

fn validate_xml(bytes: &[u8]) -> Verdict {
    let limits = XmlLimits::default();
    let root = match xml::parse(bytes, &limits) {
        Ok(r) => r,
        Err(e) => return Verdict::of("XML", Err(decode_problem(e.into()))),
    };
    let body = (root.is(SOAP_ENV_NS, "Envelope"))
        .then(|| root.children.iter().find(|c| c.is(SOAP_ENV_NS, "Body")))
        .flatten()
        .and_then(|b| b.children.first());
    let Some(el) = body else {
        return Verdict::of(
            "XML",
            Err("(document): not a SOAP 1.1 envelope with a Body element".into()),
        );
    };
    let name = if el.is(SOAP_ENV_NS, "Fault") {
        "Fault".to_owned()
    } else if el.ns.as_deref() == Some(KOMMUN_NS) {
        el.name.clone()
    } else {
        return Verdict::of(
            "XML",
            Err(format!(
                "(document): {} is not a message of {KOMMUN_NS}",
                el.name
            )),
        );
    };
    let result = match name.as_str() {
        "ArbetssokandeHandelse" => soap::decode_handelse(bytes, &limits).map(drop),
        "ArbetssokandeHandelseKvittens" => soap::decode_handelse_kvittens(bytes, &limits).map(drop),
        n if n.ends_with("Svar") || n == "Fault" => soap::decode_response(bytes, &limits).map(drop),
        _ => soap::decode_request(bytes, &limits).map(drop),
    };
    Verdict::of(&name, result.map_err(decode_problem))
}

fn parse<T: DeserializeOwned + serde::Serialize>(bytes: &[u8]) -> Result<T, String> {
    parse_json(bytes).map_err(|(path, reason)| {
        format!(
            "{}: {reason}",
            if path.is_empty() { "(document)" } else { &path }
        )
    })
}

/// Decodes AF JSON into `T`; an error names where (a path such as `handelser[1].typ`, empty
/// for the document) and why, without quoting the offending value.
pub fn parse_json<T: DeserializeOwned + serde::Serialize>(
    bytes: &[u8],
) -> Result<T, (String, String)> {
    // JSON is UTF-8 (RFC 8259). serde checks only the strings it reads: bytes in a member it
    // skips would pass unchecked, and be stored or relayed as if they were text.
    let text = std::str::from_utf8(bytes).map_err(|e| {
        (
            String::new(),
            format!("not UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    let de = &mut serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde's message names the expected type; the value it quotes is dropped.
        let reason = match inner.classify() {
            serde_json::error::Category::Data => {
                let msg = inner.to_string();
                let cut = msg.find(" at line").unwrap_or(msg.len());
                crate::model::ident::redact_digit_runs(&msg[..cut])
            }
            other => format!(
                "not valid JSON ({other:?}) at line {} column {}",
                inner.line(),
                inner.column()
            ),
        };
        (if path == "." { String::new() } else { path }, reason)
    })?;
    // One value per body: a second value, or anything but whitespace after the first, would
    // be acknowledged without being read.
    de.end().map_err(|e| {
        (
            String::new(),
            format!(
                "content after the JSON value at line {} column {}; a body holds exactly one value",
                e.line(),
                e.column()
            ),
        )
    })?;
    af::objects_as_sent(text, &value).map_err(|(path, why)| (path, why.to_owned()))?;
    Ok(value)
}

fn contract(e: AfContractError) -> String {
    e.to_string()
}

fn person_request(r: &af::PersonRequest) -> Result<(), String> {
    Personnummer::parse(&r.personnummer).map_err(|e| format!("personnummer: {e}"))?;
    crate::contract::translate::check_fragande(&r.fragande).map_err(contract)?;
    for k in r.kategorier.iter().flatten() {
        if crate::model::Datakategori::from_code(k).is_none() {
            return Err(format!(
                "kategorier: not a data category (one of {})",
                crate::model::Datakategori::codes()
            ));
        }
    }
    let mut dates = Vec::new();
    for (name, d) in [("fromDatum", &r.from_datum), ("tomDatum", &r.tom_datum)] {
        if d.len() != 10 {
            return Err(format!("{name}: must be a date YYYY-MM-DD"));
        }
        dates.push(parse_date(d).map_err(|e| format!("{name}: {e}"))?);
    }
    if dates[0] > dates[1] {
        return Err("(document): fromDatum must not be after tomDatum".into());
    }
    Ok(())
}

/// The JSON message types, detected by their distinctive members.
fn json_type(v: &serde_json::Value) -> Option<&'static str> {
    let o = v.as_object()?;
    let has = |k: &str| o.contains_key(k);
    Some(if has("handelser") {
        "handelser-request"
    } else if has("handelseId") {
        "handelse"
    } else if has("planId") {
        "aktivitetsplan-request"
    } else if has("referens") && has("mottagen") {
        "aktivitetsplan-response"
    } else if has("kandAvAf") {
        "arbetssokande-status-response"
    } else if has("handlingsplan") {
        "handlingsplan-response"
    } else if has("beslut") || has("aktivitetsstodDagar") || has("senasteUtbetalning") {
        "ersattningsbeslut-response"
    } else if has("personnummer") {
        "person-request"
    } else if has("access_token") {
        "token-response"
    } else if has("type") || has("title") || has("detail") || has("instance") {
        "problem"
    } else if has("status") && o.get("status").is_some_and(serde_json::Value::is_string) {
        "health-response"
    } else if has("status") {
        "problem"
    } else {
        return None;
    })
}

fn validate_json(bytes: &[u8]) -> Verdict {
    let value: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            return Verdict::of(
                "JSON",
                Err(format!(
                    "(document): not valid JSON at line {} column {}",
                    e.line(),
                    e.column()
                )),
            );
        }
    };
    match json_type(&value) {
        Some(t) => validate_json_as(bytes, t),
        None => Verdict::of(
            "JSON",
            Err("(document): not a message of AF's interface v1".into()),
        ),
    }
}

/// Validates JSON as the message of one AF schema (named as its file in `schemas/af/v1/`,
/// without `.schema.json`), without guessing the type.
pub fn validate_json_as(bytes: &[u8], schema: &str) -> Verdict {
    let t = match schema {
        "arbetssokande-status-request" | "ersattningsbeslut-request" | "handlingsplan-request" => {
            "person-request"
        }
        other => other,
    };
    let result = match t {
        "handelser-request" => parse::<af::HandelserRequest>(bytes).and_then(|r| {
            if r.handelser.is_empty() || r.handelser.len() > 100 {
                return Err("handelser: must hold 1 to 100 events".into());
            }
            r.handelser.iter().enumerate().try_for_each(|(i, h)| {
                translate::handelse_from_af(h)
                    .map(drop)
                    .map_err(|e| format!("handelser[{i}].{e}"))
            })
        }),
        "handelse" => parse::<af::HandelseJson>(bytes)
            .and_then(|h| translate::handelse_from_af(&h).map(drop).map_err(contract)),
        "aktivitetsplan-request" => parse::<af::AktivitetsplanRequest>(bytes).and_then(|r| {
            translate::check_fragande(&r.fragande).map_err(contract)?;
            translate::aktivitetsplan_from_request(&r)
                .map(drop)
                .map_err(contract)
        }),
        "aktivitetsplan-response" => parse::<af::AktivitetsplanResponse>(bytes)
            .and_then(|r| translate::kvittens_from_af(&r).map(drop).map_err(contract)),
        "arbetssokande-status-response" => parse::<af::StatusResponse>(bytes)
            .and_then(|r| translate::status_from_af(&r).map(drop).map_err(contract)),
        "handlingsplan-response" => parse::<af::HandlingsplanResponse>(bytes).and_then(|r| {
            translate::handlingsplan_from_af(&r)
                .map(drop)
                .map_err(contract)
        }),
        "ersattningsbeslut-response" => {
            parse::<af::ErsattningsbeslutResponse>(bytes).and_then(|r| {
                translate::ersattningar_from_af(&r)
                    .map(drop)
                    .map_err(contract)
            })
        }
        "person-request" => parse::<af::PersonRequest>(bytes).and_then(|r| person_request(&r)),
        "token-response" => parse::<af::TokenResponse>(bytes).and_then(|t| t.check()),
        "health-response" => parse::<af::HealthResponse>(bytes).and_then(|h| {
            if h.status == "UP" || h.status == "DOWN" {
                Ok(())
            } else {
                Err("status: must be UP or DOWN".into())
            }
        }),
        "problem" => parse::<af::Problem>(bytes).and_then(|p| match p.status {
            Some(s) if !(100..=599).contains(&s) => {
                Err("status: must be an HTTP status 100-599".into())
            }
            _ => Ok(()),
        }),
        other => Err(format!(
            "(document): {other} is not a message type of AF's interface v1"
        )),
    };
    Verdict::of(t, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An element named to spell a personnummer is not repeated in the verdict.
    #[test]
    fn a_problem_does_not_repeat_an_identity_number_the_document_spells() {
        let doc = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><x198507099805 xmlns="urn:other"/></soap:Body></soap:Envelope>"#;
        let verdict = validate(doc.as_bytes());
        assert!(!verdict.is_valid());
        let all = verdict.problems.join(" ");
        assert!(all.contains("x************"), "{all}");
        assert!(!all.contains("198507099805"), "{all}");
    }
}
