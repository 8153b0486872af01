//! Translation between the municipal model and AF's JSON, both ways.
//!
//! AF's answers are checked field by field here: what does not fit the contract is refused
//! with the JSON path, so a faulty upstream never reaches a case system as data.

use time::Date;

use crate::contract::af_json as af;
use crate::error::{Failure, Felkod};
use crate::model::ident::{format_date, parse_date};
use crate::model::lexical;
use crate::model::*;

mod answer;
mod event;
mod request;

pub use answer::*;
pub use event::*;
pub use request::*;

/// A field of AF's answer that breaks the contract: JSON path and rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {rule}")]
pub struct AfContractError {
    pub path: String,
    pub rule: String,
}

fn bad(path: &str, rule: impl Into<String>) -> AfContractError {
    AfContractError {
        path: path.to_owned(),
        rule: rule.into(),
    }
}

/// AF's dates are plain `YYYY-MM-DD`, without offset.
fn date(path: &str, s: &str) -> Result<Date, AfContractError> {
    if s.len() != 10 {
        return Err(bad(path, "must be a date YYYY-MM-DD"));
    }
    parse_date(s).map_err(|e| bad(path, e.to_string()))
}

fn opt_date(path: &str, s: Option<&str>) -> Result<Option<Date>, AfContractError> {
    s.map(|d| date(path, d)).transpose()
}

fn procent(path: &str, p: i64) -> Result<u8, AfContractError> {
    u8::try_from(p)
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| bad(path, "must be 0 to 100"))
}

fn code<T>(
    path: &str,
    s: &str,
    from_code: fn(&str) -> Option<T>,
    codes: fn() -> String,
) -> Result<T, AfContractError> {
    from_code(s).ok_or_else(|| bad(path, format!("must be one of {}", codes())))
}

/// `xs:token`'s whitespace collapse; text that has nothing to collapse (nearly all) is copied
/// as it is.
fn collapse_xml_space(s: &str) -> String {
    const SPACE: [char; 4] = [' ', '\t', '\n', '\r'];
    let collapsible = s.starts_with(SPACE)
        || s.ends_with(SPACE)
        || s.contains(['\t', '\n', '\r'])
        || s.contains("  ");
    if !collapsible {
        return s.to_owned();
    }
    s.split(SPACE)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// AF's text as the municipal contract types it (`xs:token`): runs of XML whitespace collapse
/// to one space and the ends are trimmed, so what brygga holds, logs and checks is what the case
/// system's schema-aware reader sees.
fn text(path: &str, s: &str, max: usize) -> Result<String, AfContractError> {
    // AF's schema counts the characters as sent, every space included.
    if s.chars().count() > max {
        return Err(bad(path, format!("at most {max} characters")));
    }
    let s = collapse_xml_space(s);
    if s.trim().is_empty() {
        return Err(bad(path, "must not be empty"));
    }
    // What XML 1.0 cannot carry must not reach a case system's parser.
    if s.chars().any(|c| matches!(c, '\u{FFFE}' | '\u{FFFF}')) {
        return Err(bad(path, "contains characters that XML 1.0 does not allow"));
    }
    // Nor what the municipal contract refuses because it hides or reorders text (controls,
    // bidirectional and zero-width characters): a case system's reader would refuse it.
    if let Some(c) = crate::model::lexical::hidden_character(&s) {
        return Err(bad(
            path,
            format!(
                "contains U+{:04X}, a control or formatting character that hides or reorders text",
                c as u32
            ),
        ));
    }
    Ok(s)
}

/// Protection flags AF may set on a person's registration.
pub const SKYDDSMARKERINGAR: [&str; 2] = ["SEKRETESS_FBF", "SKYDDAD_FBF"];

/// Protection flags: known values, none repeated.
fn check_skyddsmarkeringar(m: &[String]) -> Result<(), AfContractError> {
    for (i, v) in m.iter().enumerate() {
        if !SKYDDSMARKERINGAR.contains(&v.as_str()) {
            return Err(bad(
                &format!("skyddsmarkeringar[{i}]"),
                "must be SEKRETESS_FBF or SKYDDAD_FBF",
            ));
        }
        if m[..i].contains(v) {
            return Err(bad(&format!("skyddsmarkeringar[{i}]"), "is repeated"));
        }
    }
    Ok(())
}

/// What the caller is told: the Felkod and the message of a SOAP Fault.
impl From<AfContractError> for Failure {
    fn from(_: AfContractError) -> Self {
        Failure::new(
            Felkod::AfOgiltigtSvar,
            "Arbetsförmedlingens svar följde inte kontraktet; kontakta driften",
        )
    }
}
