//! AF's answers about a person (status, benefit decisions, handlingsplan) → the municipal
//! model, checked field by field, and back (for the simulator).

use super::*;

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

pub(super) fn s(v: &str) -> String {
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

pub(super) fn avaktualisering_to_af(a: &Avaktualisering) -> af::AvaktualiseringJson {
    af::AvaktualiseringJson {
        datum: format_date(a.datum),
        orsak_kod: a.orsak_kod.clone(),
        orsak_text: a.orsak_text.clone(),
    }
}

pub(super) fn avaktualisering_from_af(
    path: &str,
    a: &af::AvaktualiseringJson,
) -> Result<Avaktualisering, AfContractError> {
    Ok(Avaktualisering {
        datum: date(&format!("{path}.datum"), &a.datum)?,
        orsak_kod: text(&format!("{path}.orsakKod"), &a.orsak_kod, 16)?,
        orsak_text: text(&format!("{path}.orsakText"), &a.orsak_text, 200)?,
    })
}

pub(super) fn sokandekategori_from_af(
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

pub(super) fn kontor_from_af(path: &str, k: &af::KontorJson) -> Result<Kontor, AfContractError> {
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
