//! AF's events → the model, the detail checked against its type, and back.

use super::*;

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
