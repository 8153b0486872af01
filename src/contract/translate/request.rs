//! The municipality's questions and plans → AF's requests, and AF's receipts back.

use super::*;

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
    if !crate::model::lexical::is_code(&f.syfte) {
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
