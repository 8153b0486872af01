//! Translation between the municipal model and AF's JSON, both ways.
//!
//! AF's answers are checked field by field here: what does not fit the contract is refused
//! with the JSON path, so a faulty upstream never reaches a case system as data.

use time::Date;

use crate::contract::af_json as af;
use crate::model::ident::{format_date, parse_date};
use crate::model::lexical;
use crate::model::*;

/// The AF request for the reads about one person (status, benefit decisions, handlingsplan):
/// who asks and why go with it, and the categories the purpose may see (`None`: all).
pub fn person_request(
    fraga: &Fraga,
    fragande: af::FragandeJson,
    kategorier: Option<Vec<String>>,
) -> af::PersonRequest {
    af::StatusRequest {
        personnummer: fraga.personidentitet.expose(),
        from_datum: format_date(fraga.tidsperiod.from()),
        tom_datum: format_date(fraga.tidsperiod.tom()),
        fragande,
        kategorier,
    }
}

/// Who asks, as AF is told: the organisation of the client certificate, the case worker and
/// unit of the token, the purpose (code and description), the legal basis the request stated,
/// any processor it named, and the case as a keyed reference (AF can tell two questions in
/// one case from two cases, and learns no id).
pub fn fragande(
    organisation: &Organisationsnummer,
    fraga: &Fraga,
    handlaggare: &HsaId,
    enhet: Option<&HsaId>,
    (syfte, beskrivning): (&str, &str),
    arendereferens: String,
) -> af::FragandeJson {
    af::FragandeJson {
        organisationsnummer: organisation.to_string(),
        organisationsnamn: fraga.ingivare.namn.clone(),
        handlaggare: handlaggare.as_str().to_owned(),
        enhet: enhet.map(|e| e.as_str().to_owned()),
        syfte: syfte.to_owned(),
        syfte_beskrivning: beskrivning.to_owned(),
        lagrum: fraga.lagrum.clone(),
        arendereferens,
        personuppgiftsbitrade: fraga.personuppgiftsbitrade.clone(),
    }
}

/// AF's side: who asks, checked (what AF, and the simulator, require of every person
/// request): an organisation number, a case worker's and any unit's HSA-id, a purpose code, a
/// stated legal basis and a keyed case reference, never the case id in clear.
pub fn check_fragande(f: &af::FragandeJson) -> Result<(), AfContractError> {
    Organisationsnummer::parse(&f.organisationsnummer)
        .map_err(|e| bad("fragande.organisationsnummer", e.to_string()))?;
    text("fragande.organisationsnamn", &f.organisationsnamn, 200)?;
    HsaId::parse(&f.handlaggare).map_err(|e| bad("fragande.handlaggare", e.to_string()))?;
    if let Some(e) = &f.enhet {
        HsaId::parse(e).map_err(|e| bad("fragande.enhet", e.to_string()))?;
    }
    if !crate::contract::soap::is_code(&f.syfte) {
        return Err(bad("fragande.syfte", "must be a purpose code"));
    }
    text("fragande.syfteBeskrivning", &f.syfte_beskrivning, 500)?;
    text("fragande.lagrum", &f.lagrum, 500)?;
    let reference_ok = f.arendereferens.split_once(':').is_some_and(|(id, mac)| {
        (1..=16).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_alphanumeric())
            && mac.len() == 22
            && mac
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !reference_ok {
        return Err(bad(
            "fragande.arendereferens",
            "must be a keyed case reference (key id, ':', 22 base64url characters)",
        ));
    }
    if let Some(p) = &f.personuppgiftsbitrade {
        text("fragande.personuppgiftsbitrade", p, 200)?;
    }
    Ok(())
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

/// AF's status answer → the municipal model, checking every field against the contract.
pub fn status_from_af(r: &af::StatusResponse) -> Result<Arbetssokandestatus, AfContractError> {
    check_skyddsmarkeringar(&r.skyddsmarkeringar)?;
    if !r.kand_av_af && r.inskriven {
        return Err(bad("inskriven", "cannot be true when kandAvAf is false"));
    }
    Ok(Arbetssokandestatus {
        kand_av_af: r.kand_av_af,
        inskriven: r.inskriven,
        inskrivningsdatum: opt_date("inskrivningsdatum", r.inskrivningsdatum.as_deref())?,
        kontor: r
            .kontor
            .as_ref()
            .map(|k| kontor_from_af("kontor", k))
            .transpose()?,
        sokandekategori: r
            .sokandekategori
            .as_ref()
            .map(|k| sokandekategori_from_af("sokandekategori", k))
            .transpose()?,
        omfattning_procent: r
            .omfattning_procent
            .map(|p| procent("omfattningProcent", p))
            .transpose()?,
        avaktualisering: r
            .avaktualisering
            .as_ref()
            .map(|a| avaktualisering_from_af("avaktualisering", a))
            .transpose()?,
        senaste_aktivitetsrapport: r
            .senaste_aktivitetsrapport
            .as_ref()
            .map(|a| {
                Ok(Aktivitetsrapport {
                    datum: date("senasteAktivitetsrapport.datum", &a.datum)?,
                    meddelande: text("senasteAktivitetsrapport.meddelande", &a.meddelande, 500)?,
                })
            })
            .transpose()?,
        a_kassa: r
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
            .transpose()?,
        sekretessmarkering: !r.skyddsmarkeringar.is_empty(),
    })
}

fn s(v: &str) -> String {
    v.to_owned()
}

/// The municipal model → AF's status answer (the simulator's and the property tests' side).
pub fn status_to_af(st: &Arbetssokandestatus, skydd: &[&str]) -> af::StatusResponse {
    af::StatusResponse {
        kand_av_af: st.kand_av_af,
        inskriven: st.inskriven,
        inskrivningsdatum: st.inskrivningsdatum.map(format_date),
        kontor: st.kontor.as_ref().map(|k| af::KontorJson {
            kod: k.kod.clone(),
            namn: k.namn.clone(),
        }),
        sokandekategori: st
            .sokandekategori
            .as_ref()
            .map(|k| af::SokandekategoriJson {
                kod: k.kod.clone(),
                benamning: k.text.clone(),
                from_datum: k.from.map(format_date),
            }),
        omfattning_procent: st.omfattning_procent.map(i64::from),
        avaktualisering: st.avaktualisering.as_ref().map(avaktualisering_to_af),
        senaste_aktivitetsrapport: st.senaste_aktivitetsrapport.as_ref().map(|r| {
            af::AktivitetsrapportJson {
                datum: format_date(r.datum),
                meddelande: r.meddelande.clone(),
            }
        }),
        a_kassa: st.a_kassa.as_ref().map(|a| af::AKassaJson {
            medlem: a.medlem,
            namn: a.namn.clone(),
        }),
        skyddsmarkeringar: if st.sekretessmarkering {
            skydd.iter().map(|m| s(m)).collect()
        } else {
            vec![]
        },
    }
}

fn avaktualisering_to_af(a: &Avaktualisering) -> af::AvaktualiseringJson {
    af::AvaktualiseringJson {
        datum: format_date(a.datum),
        orsak_kod: a.orsak_kod.clone(),
        orsak_text: a.orsak_text.clone(),
    }
}

fn avaktualisering_from_af(
    path: &str,
    a: &af::AvaktualiseringJson,
) -> Result<Avaktualisering, AfContractError> {
    Ok(Avaktualisering {
        datum: date(&format!("{path}.datum"), &a.datum)?,
        orsak_kod: text(&format!("{path}.orsakKod"), &a.orsak_kod, 16)?,
        orsak_text: text(&format!("{path}.orsakText"), &a.orsak_text, 200)?,
    })
}

fn sokandekategori_from_af(
    path: &str,
    k: &af::SokandekategoriJson,
) -> Result<Sokandekategori, AfContractError> {
    if !(k.kod.len() == 2 && k.kod.bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad(&format!("{path}.kod"), "must be two digits"));
    }
    Ok(Sokandekategori {
        kod: k.kod.clone(),
        text: text(&format!("{path}.benamning"), &k.benamning, 200)?,
        from: opt_date(&format!("{path}.fromDatum"), k.from_datum.as_deref())?,
    })
}

fn kontor_from_af(path: &str, k: &af::KontorJson) -> Result<Kontor, AfContractError> {
    Ok(Kontor {
        kod: text(&format!("{path}.kod"), &k.kod, 16)?,
        namn: text(&format!("{path}.namn"), &k.namn, 200)?,
    })
}

/// AF's benefit decisions → the municipal model.
pub fn ersattningar_from_af(
    r: &af::ErsattningsbeslutResponse,
) -> Result<Ersattningar, AfContractError> {
    let beslut = r
        .beslut
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let p = format!("beslut[{i}]");
            let from = date(&format!("{p}.fromDatum"), &b.from_datum)?;
            let tom = opt_date(&format!("{p}.tomDatum"), b.tom_datum.as_deref())?;
            if tom.is_some_and(|t| t < from) {
                return Err(bad(&p, "fromDatum is after tomDatum"));
            }
            Ok(Ersattningsbeslut {
                typ: code(
                    &format!("{p}.typ"),
                    &b.typ,
                    Ersattningstyp::from_code,
                    Ersattningstyp::codes,
                )?,
                omfattning_procent: procent(
                    &format!("{p}.omfattningProcent"),
                    b.omfattning_procent,
                )?,
                from,
                tom,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let aktivitetsstod_dagar = r
        .aktivitetsstod_dagar
        .map(|d| {
            u16::try_from(d)
                .ok()
                .filter(|d| *d <= 9999)
                .ok_or_else(|| bad("aktivitetsstodDagar", "must be 0 to 9999"))
        })
        .transpose()?;
    let senaste_utbetalning = r
        .senaste_utbetalning
        .as_ref()
        .map(|u| {
            Ok(Utbetalning {
                datum: date("senasteUtbetalning.datum", &u.datum)?,
                belopp: Ore(lexical::decimal_from_f64(u.belopp, 2, 0, 999_999_999)
                    .map_err(|e| bad("senasteUtbetalning.belopp", e))?),
            })
        })
        .transpose()?;
    Ok(Ersattningar {
        beslut,
        aktivitetsstod_dagar,
        senaste_utbetalning,
    })
}

/// The municipal model → AF's benefit-decision answer.
pub fn ersattningar_to_af(e: &Ersattningar) -> af::ErsattningsbeslutResponse {
    af::ErsattningsbeslutResponse {
        beslut: e
            .beslut
            .iter()
            .map(|b| af::BeslutJson {
                typ: s(b.typ.code()),
                omfattning_procent: i64::from(b.omfattning_procent),
                from_datum: format_date(b.from),
                tom_datum: b.tom.map(format_date),
            })
            .collect(),
        aktivitetsstod_dagar: e.aktivitetsstod_dagar.map(i64::from),
        senaste_utbetalning: e.senaste_utbetalning.as_ref().map(|u| af::UtbetalningJson {
            datum: format_date(u.datum),
            belopp: lexical::decimal_to_f64(u.belopp.0, 2),
        }),
    }
}

/// AF's handlingsplan → the municipal model.
pub fn handlingsplan_from_af(
    r: &af::HandlingsplanResponse,
) -> Result<Option<Handlingsplan>, AfContractError> {
    check_skyddsmarkeringar(&r.skyddsmarkeringar)?;
    let Some(h) = &r.handlingsplan else {
        return Ok(None);
    };
    if h.aktiviteter.len() > 100 {
        return Err(bad("handlingsplan.aktiviteter", "at most 100"));
    }
    let aktiviteter = h
        .aktiviteter
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let p = format!("handlingsplan.aktiviteter[{i}]");
            Ok(AfAktivitet {
                slag: code(
                    &format!("{p}.slag"),
                    &a.slag,
                    AktivitetSlag::from_code,
                    AktivitetSlag::codes,
                )?,
                typ_kod: text(&format!("{p}.typKod"), &a.typ_kod, 16)?,
                namn: text(&format!("{p}.namn"), &a.namn, 200)?,
                from: date(&format!("{p}.fromDatum"), &a.from_datum)?,
                tom: opt_date(&format!("{p}.tomDatum"), a.tom_datum.as_deref())?,
                omfattning_procent: a
                    .omfattning_procent
                    .map(|v| procent(&format!("{p}.omfattningProcent"), v))
                    .transpose()?,
                anordnare: a
                    .anordnare
                    .as_deref()
                    .map(|n| text(&format!("{p}.anordnare"), n, 200))
                    .transpose()?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut plan = Handlingsplan {
        upprattad: date("handlingsplan.upprattadDatum", &h.upprattad_datum)?,
        status: code(
            "handlingsplan.status",
            &h.status,
            HandlingsplanStatus::from_code,
            HandlingsplanStatus::codes,
        )?,
        nasta_uppfoljning: opt_date(
            "handlingsplan.nastaUppfoljning",
            h.nasta_uppfoljning.as_deref(),
        )?,
        hinder_for_lampligt_arbete: h.hinder_for_lampligt_arbete,
        aktiviteter,
        kontor: h
            .kontor
            .as_ref()
            .map(|k| kontor_from_af("handlingsplan.kontor", k))
            .transpose()?,
        ansvarig_handlaggare: h
            .ansvarig_handlaggare
            .as_ref()
            .map(|a| {
                Ok(AnsvarigHandlaggare {
                    namn: text("handlingsplan.ansvarigHandlaggare.namn", &a.namn, 200)?,
                    kontaktvag: a
                        .kontaktvag
                        .as_deref()
                        .map(|k| text("handlingsplan.ansvarigHandlaggare.kontaktvag", k, 200))
                        .transpose()?,
                })
            })
            .transpose()?,
    };
    // Protected identity: nothing that places the person — the office, the activities'
    // providers — leaves the translation.
    if !r.skyddsmarkeringar.is_empty() {
        plan.kontor = None;
        for a in &mut plan.aktiviteter {
            a.anordnare = None;
        }
    }
    Ok(Some(plan))
}

/// The municipal model → AF's handlingsplan answer.
pub fn handlingsplan_to_af(h: Option<&Handlingsplan>) -> af::HandlingsplanResponse {
    af::HandlingsplanResponse {
        skyddsmarkeringar: vec![],
        handlingsplan: h.map(|h| af::HandlingsplanJson {
            upprattad_datum: format_date(h.upprattad),
            status: s(h.status.code()),
            nasta_uppfoljning: h.nasta_uppfoljning.map(format_date),
            hinder_for_lampligt_arbete: h.hinder_for_lampligt_arbete,
            aktiviteter: h
                .aktiviteter
                .iter()
                .map(|a| af::AfAktivitetJson {
                    slag: s(a.slag.code()),
                    typ_kod: a.typ_kod.clone(),
                    namn: a.namn.clone(),
                    from_datum: format_date(a.from),
                    tom_datum: a.tom.map(format_date),
                    omfattning_procent: a.omfattning_procent.map(i64::from),
                    anordnare: a.anordnare.clone(),
                })
                .collect(),
            kontor: h.kontor.as_ref().map(|k| af::KontorJson {
                kod: k.kod.clone(),
                namn: k.namn.clone(),
            }),
            ansvarig_handlaggare: h.ansvarig_handlaggare.as_ref().map(|a| {
                af::AnsvarigHandlaggareJson {
                    namn: a.namn.clone(),
                    kontaktvag: a.kontaktvag.clone(),
                }
            }),
        }),
    }
}

/// The AF request for `AnmalAktivitetsplan`.
pub fn aktivitetsplan_request(
    fraga: &Fraga,
    kommunkod: Kommunkod,
    plan: &Aktivitetsplan,
    fragande: af::FragandeJson,
) -> af::AktivitetsplanRequest {
    af::AktivitetsplanRequest {
        fragande,
        personnummer: fraga.personidentitet.expose(),
        kommunkod: kommunkod.to_string(),
        plan_id: plan.plan_id.clone(),
        beslutsdatum: format_date(plan.beslutsdatum),
        aktiviteter: plan
            .aktiviteter
            .iter()
            .map(|a| af::KravAktivitetJson {
                slag: s(a.slag.code()),
                timmar_per_vecka: lexical::decimal_to_f64(u64::from(a.timmar_per_vecka.0), 1),
                omfattning: s(a.omfattning.code()),
                from_datum: format_date(a.period.from()),
                tom_datum: format_date(a.period.tom()),
                anordnare: af::AnordnareJson {
                    organisationsnummer: a.anordnare.organisationsnummer.map(|o| o.plain()),
                    namn: a.anordnare.namn.clone(),
                },
            })
            .collect(),
    }
}

/// AF's side: the plan request → the model (what AF, and the simulator, check).
pub fn aktivitetsplan_from_request(
    r: &af::AktivitetsplanRequest,
) -> Result<(Personnummer, Kommunkod, Aktivitetsplan), AfContractError> {
    let pnr =
        Personnummer::parse(&r.personnummer).map_err(|e| bad("personnummer", e.to_string()))?;
    let kommun = Kommunkod::parse(&r.kommunkod).map_err(|e| bad("kommunkod", e.to_string()))?;
    if r.aktiviteter.is_empty() || r.aktiviteter.len() > 50 {
        return Err(bad("aktiviteter", "must hold 1 to 50 activities"));
    }
    let aktiviteter = r
        .aktiviteter
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let p = format!("aktiviteter[{i}]");
            let from = date(&format!("{p}.fromDatum"), &a.from_datum)?;
            let tom = date(&format!("{p}.tomDatum"), &a.tom_datum)?;
            Ok(KravAktivitet {
                slag: code(
                    &format!("{p}.slag"),
                    &a.slag,
                    AktivitetskravSlag::from_code,
                    AktivitetskravSlag::codes,
                )?,
                timmar_per_vecka: Tiondelstimmar(
                    lexical::decimal_from_f64(a.timmar_per_vecka, 1, 5, 400)
                        .map_err(|e| bad(&format!("{p}.timmarPerVecka"), e))?
                        as u16,
                ),
                omfattning: code(
                    &format!("{p}.omfattning"),
                    &a.omfattning,
                    Omfattning::from_code,
                    Omfattning::codes,
                )?,
                period: Tidsperiod::new(from, tom)
                    .ok_or_else(|| bad(&p, "fromDatum is after tomDatum"))?,
                anordnare: Anordnare {
                    organisationsnummer: a
                        .anordnare
                        .organisationsnummer
                        .as_deref()
                        .map(|o| {
                            if o.len() != 10 {
                                return Err(bad(
                                    &format!("{p}.anordnare.organisationsnummer"),
                                    "must be 10 digits",
                                ));
                            }
                            Organisationsnummer::parse(o).map_err(|e| {
                                bad(&format!("{p}.anordnare.organisationsnummer"), e.to_string())
                            })
                        })
                        .transpose()?,
                    namn: text(&format!("{p}.anordnare.namn"), &a.anordnare.namn, 200)?,
                },
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let plan = Aktivitetsplan {
        plan_id: text("planId", &r.plan_id, 64)?,
        beslutsdatum: date("beslutsdatum", &r.beslutsdatum)?,
        aktiviteter,
    };
    if plan.peak_hours() > MAX_TIMMAR_PER_VECKA {
        return Err(bad(
            "aktiviteter",
            "more than 40 hours per week at the same time",
        ));
    }
    Ok((pnr, kommun, plan))
}

/// AF's receipt → the municipal model.
pub fn kvittens_from_af(r: &af::AktivitetsplanResponse) -> Result<Kvittens, AfContractError> {
    Ok(Kvittens {
        referens: text("referens", &r.referens, 64)?,
        mottagen: lexical::parse_tidpunkt(&r.mottagen).map_err(|e| bad("mottagen", e))?,
        status: code(
            "status",
            &r.status,
            KvittensStatus::from_code,
            KvittensStatus::codes,
        )?,
    })
}

/// The municipal model → AF's receipt.
pub fn kvittens_to_af(k: &Kvittens) -> af::AktivitetsplanResponse {
    af::AktivitetsplanResponse {
        referens: k.referens.clone(),
        mottagen: lexical::format_tidpunkt(k.mottagen),
        status: s(k.status.code()),
    }
}

/// One AF event → the model; the detail must be the one its type needs, and only that one.
pub fn handelse_from_af(h: &af::HandelseJson) -> Result<AfHandelse, AfContractError> {
    let typ = code("typ", &h.typ, HandelseTyp::from_code, HandelseTyp::codes)?;
    let details = [
        (
            "avaktualisering",
            h.avaktualisering.is_some(),
            HandelseTyp::Avaktualiserad,
        ),
        (
            "sokandekategori",
            h.sokandekategori.is_some(),
            HandelseTyp::SokandekategoriAndrad,
        ),
        ("program", h.program.is_some(), HandelseTyp::ProgramStartat),
        (
            "uteblivenAktivitet",
            h.utebliven_aktivitet.is_some(),
            HandelseTyp::UteblivenAktivitet,
        ),
    ];
    let wanted = match typ {
        HandelseTyp::ProgramAvslutat => HandelseTyp::ProgramStartat,
        other => other,
    };
    for (name, present, owner) in details {
        if present && owner != wanted {
            return Err(bad(
                name,
                format!("does not belong to an event of type {}", typ.code()),
            ));
        }
    }
    let missing = |name: &str| {
        bad(
            name,
            format!("is required for an event of type {}", typ.code()),
        )
    };
    let program = || {
        let p = h.program.as_ref().ok_or_else(|| missing("program"))?;
        Ok::<_, AfContractError>(Program {
            kod: text("program.kod", &p.kod, 16)?,
            namn: text("program.namn", &p.namn, 200)?,
            from: date("program.fromDatum", &p.from_datum)?,
            tom: opt_date("program.tomDatum", p.tom_datum.as_deref())?,
        })
    };
    let handelse = match typ {
        HandelseTyp::Inskriven => Handelse::Inskriven,
        HandelseTyp::Avaktualiserad => Handelse::Avaktualiserad(avaktualisering_from_af(
            "avaktualisering",
            h.avaktualisering
                .as_ref()
                .ok_or_else(|| missing("avaktualisering"))?,
        )?),
        HandelseTyp::SokandekategoriAndrad => {
            Handelse::SokandekategoriAndrad(sokandekategori_from_af(
                "sokandekategori",
                h.sokandekategori
                    .as_ref()
                    .ok_or_else(|| missing("sokandekategori"))?,
            )?)
        }
        HandelseTyp::ProgramStartat => Handelse::ProgramStartat(program()?),
        HandelseTyp::ProgramAvslutat => Handelse::ProgramAvslutat(program()?),
        HandelseTyp::UteblivenAktivitet => {
            let u = h
                .utebliven_aktivitet
                .as_ref()
                .ok_or_else(|| missing("uteblivenAktivitet"))?;
            Handelse::UteblivenAktivitet(UteblivenAktivitet {
                datum: date("uteblivenAktivitet.datum", &u.datum)?,
                aktivitet: text("uteblivenAktivitet.aktivitet", &u.aktivitet, 200)?,
                meddelande: text("uteblivenAktivitet.meddelande", &u.meddelande, 500)?,
            })
        }
    };
    Ok(AfHandelse {
        handelse_id: crate::model::ident::parse_uuid(&h.handelse_id)
            .map_err(|e| bad("handelseId", e.to_string()))?,
        tidpunkt: lexical::parse_tidpunkt(&h.tidpunkt).map_err(|e| bad("tidpunkt", e))?,
        personidentitet: Personnummer::parse(&h.personnummer)
            .map_err(|e| bad("personnummer", e.to_string()))?,
        handelse,
    })
}

/// The model → AF's event JSON.
pub fn handelse_to_af(h: &AfHandelse) -> af::HandelseJson {
    let mut out = af::HandelseJson {
        handelse_id: h.handelse_id.to_string(),
        typ: s(h.handelse.typ().code()),
        personnummer: h.personidentitet.expose(),
        tidpunkt: lexical::format_tidpunkt(h.tidpunkt),
        avaktualisering: None,
        sokandekategori: None,
        program: None,
        utebliven_aktivitet: None,
    };
    match &h.handelse {
        Handelse::Inskriven => {}
        Handelse::Avaktualiserad(a) => out.avaktualisering = Some(avaktualisering_to_af(a)),
        Handelse::SokandekategoriAndrad(k) => {
            out.sokandekategori = Some(af::SokandekategoriJson {
                kod: k.kod.clone(),
                benamning: k.text.clone(),
                from_datum: k.from.map(format_date),
            })
        }
        Handelse::ProgramStartat(p) | Handelse::ProgramAvslutat(p) => {
            out.program = Some(af::ProgramJson {
                kod: p.kod.clone(),
                namn: p.namn.clone(),
                from_datum: format_date(p.from),
                tom_datum: p.tom.map(format_date),
            })
        }
        Handelse::UteblivenAktivitet(u) => {
            out.utebliven_aktivitet = Some(af::UteblivenAktivitetJson {
                datum: format_date(u.datum),
                aktivitet: u.aktivitet.clone(),
                meddelande: u.meddelande.clone(),
            })
        }
    }
    out
}
