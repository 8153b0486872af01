//! Translation between the municipal model and AF's JSON, both ways.
//!
//! AF's answers are checked field by field here: what does not fit the contract is refused
//! with the JSON path, so a faulty upstream never reaches a case system as data.

use time::Date;

use crate::codec::af_json as af;
use crate::model::ident::{format_date, parse_date};
use crate::model::*;

/// The AF request for `HamtaArbetssokandeStatus`.
pub fn status_request(fraga: &Fraga) -> af::StatusRequest {
    af::StatusRequest {
        personnummer: fraga.personidentitet.expose(),
        from_datum: format_date(fraga.tidsperiod.from()),
        tom_datum: format_date(fraga.tidsperiod.tom()),
    }
}

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

fn date(path: &str, s: &str) -> Result<Date, AfContractError> {
    parse_date(s).map_err(|e| bad(path, e.to_string()))
}

fn text(path: &str, s: &str, max: usize) -> Result<String, AfContractError> {
    let n = s.chars().count();
    if n == 0 || s.trim().is_empty() {
        return Err(bad(path, "must not be empty"));
    }
    if n > max {
        return Err(bad(path, format!("at most {max} characters")));
    }
    // What XML 1.0 cannot carry must not reach a case system's parser.
    if s.chars().any(|c| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
    }) {
        return Err(bad(path, "contains characters that XML 1.0 does not allow"));
    }
    Ok(s.to_owned())
}

/// Protection flags AF may set on a person's registration.
pub const SKYDDSMARKERINGAR: [&str; 2] = ["SEKRETESS_FBF", "SKYDDAD_FBF"];

/// AF's status answer → the municipal model, checking every field against the contract.
pub fn status_from_af(r: &af::StatusResponse) -> Result<Arbetssokandestatus, AfContractError> {
    let inskrivningsdatum = r
        .inskrivningsdatum
        .as_deref()
        .map(|d| date("inskrivningsdatum", d))
        .transpose()?;
    let kontor = r
        .kontor
        .as_ref()
        .map(|k| {
            Ok(Kontor {
                kod: text("kontor.kod", &k.kod, 16)?,
                namn: text("kontor.namn", &k.namn, 200)?,
            })
        })
        .transpose()?;
    let sokandekategori = r
        .sokandekategori
        .as_ref()
        .map(|k| {
            if !(k.kod.len() == 2 && k.kod.bytes().all(|b| b.is_ascii_digit())) {
                return Err(bad("sokandekategori.kod", "must be two digits"));
            }
            Ok(Sokandekategori {
                kod: k.kod.clone(),
                text: text("sokandekategori.benamning", &k.benamning, 200)?,
                from: k
                    .from_datum
                    .as_deref()
                    .map(|d| date("sokandekategori.fromDatum", d))
                    .transpose()?,
            })
        })
        .transpose()?;
    let omfattning_procent = r
        .omfattning_procent
        .map(|p| {
            u8::try_from(p)
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| bad("omfattningProcent", "must be 0 to 100"))
        })
        .transpose()?;
    let avaktualisering = r
        .avaktualisering
        .as_ref()
        .map(|a| {
            Ok(Avaktualisering {
                datum: date("avaktualisering.datum", &a.datum)?,
                orsak_kod: text("avaktualisering.orsakKod", &a.orsak_kod, 16)?,
                orsak_text: text("avaktualisering.orsakText", &a.orsak_text, 200)?,
            })
        })
        .transpose()?;
    let senaste_aktivitetsrapport = r
        .senaste_aktivitetsrapport
        .as_ref()
        .map(|a| {
            Ok(Aktivitetsrapport {
                datum: date("senasteAktivitetsrapport.datum", &a.datum)?,
                meddelande: text("senasteAktivitetsrapport.meddelande", &a.meddelande, 500)?,
            })
        })
        .transpose()?;
    let a_kassa = r
        .a_kassa
        .as_ref()
        .map(|a| {
            Ok(AKassa {
                medlem: a.medlem,
                namn: a
                    .namn
                    .as_deref()
                    .map(|n| text("aKassa.namn", n, 200))
                    .transpose()?,
            })
        })
        .transpose()?;
    for (i, m) in r.skyddsmarkeringar.iter().enumerate() {
        if !SKYDDSMARKERINGAR.contains(&m.as_str()) {
            return Err(bad(
                &format!("skyddsmarkeringar[{i}]"),
                "must be SEKRETESS_FBF or SKYDDAD_FBF",
            ));
        }
    }
    if !r.kand_av_af && r.inskriven {
        return Err(bad("inskriven", "cannot be true when kandAvAf is false"));
    }
    Ok(Arbetssokandestatus {
        kand_av_af: r.kand_av_af,
        inskriven: r.inskriven,
        inskrivningsdatum,
        kontor,
        sokandekategori,
        omfattning_procent,
        avaktualisering,
        senaste_aktivitetsrapport,
        a_kassa,
        sekretessmarkering: !r.skyddsmarkeringar.is_empty(),
    })
}
