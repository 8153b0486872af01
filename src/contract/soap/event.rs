//! AF's events as delivered to the case system, and the case system's receipt.

use super::*;

/// Encodes an event as delivered to a case system.
pub fn encode_handelse(h: &ArbetssokandeHandelse) -> String {
    let mut o = Out::envelope();
    o.node("ArbetssokandeHandelse", |o| {
        o.leaf("HandelseId", &h.af.handelse_id.to_string());
        o.leaf("Typ", h.af.handelse.typ().code());
        o.leaf("Tidpunkt", &lexical::format_tidpunkt(h.af.tidpunkt));
        o.leaf("Personidentitet", &h.af.personidentitet.expose());
        o.leaf("Arendeidentitet", &h.arendeidentitet);
        match &h.af.handelse {
            Handelse::Inskriven => {}
            Handelse::Avaktualiserad(a) => {
                o.node("Avaktualisering", |o| encode_avaktualisering(o, a))
            }
            Handelse::SokandekategoriAndrad(k) => o.node("Sokandekategori", |o| {
                o.leaf("Kod", &k.kod);
                o.leaf("Text", &k.text);
                o.opt_date("From", k.from);
            }),
            Handelse::ProgramStartat(p) | Handelse::ProgramAvslutat(p) => o.node("Program", |o| {
                o.leaf("Kod", &p.kod);
                o.leaf("Namn", &p.namn);
                o.date("From", p.from);
                o.opt_date("Tom", p.tom);
            }),
            Handelse::UteblivenAktivitet(u) => o.node("UteblivenAktivitet", |o| {
                o.date("Datum", u.datum);
                o.leaf("Aktivitet", &u.aktivitet);
                o.leaf("Meddelande", &u.meddelande);
            }),
        }
    });
    o.finish()
}

/// Decodes an event envelope (what a case system receives).
pub fn decode_handelse(
    bytes: &[u8],
    limits: &XmlLimits,
) -> Result<ArbetssokandeHandelse, DecodeError> {
    let root = xml::parse(bytes, limits)?;
    let el = body_element(&root)?;
    if !el.is(KOMMUN_NS, "ArbetssokandeHandelse") {
        return Err(DecodeError::doc(
            DecodeKind::UnknownOperation,
            format!("{} is not ArbetssokandeHandelse", el.name),
        ));
    }
    decode_root(el, |s| {
        let handelse_id = s.leaf("HandelseId", uuid)?;
        let typ = s.leaf("Typ", code(HandelseTyp::from_code, HandelseTyp::codes))?;
        let tidpunkt = s.leaf("Tidpunkt", tidpunkt)?;
        let personidentitet = s.leaf("Personidentitet", with(Personnummer::parse))?;
        let arendeidentitet = s.leaf("Arendeidentitet", text(1, 64))?;
        let program = |s: &mut Seq<'_>| {
            s.node("Program", |s| {
                Ok(Program {
                    kod: s.leaf("Kod", text(1, 16))?,
                    namn: s.leaf("Namn", text(1, 200))?,
                    from: s.leaf("From", date)?,
                    tom: s.opt_leaf("Tom", date)?,
                })
            })
        };
        let handelse = match typ {
            HandelseTyp::Inskriven => Handelse::Inskriven,
            HandelseTyp::Avaktualiserad => {
                Handelse::Avaktualiserad(s.node("Avaktualisering", decode_avaktualisering)?)
            }
            HandelseTyp::SokandekategoriAndrad => {
                Handelse::SokandekategoriAndrad(s.node("Sokandekategori", decode_sokandekategori)?)
            }
            HandelseTyp::ProgramStartat => Handelse::ProgramStartat(program(s)?),
            HandelseTyp::ProgramAvslutat => Handelse::ProgramAvslutat(program(s)?),
            HandelseTyp::UteblivenAktivitet => {
                Handelse::UteblivenAktivitet(s.node("UteblivenAktivitet", |s| {
                    Ok(UteblivenAktivitet {
                        datum: s.leaf("Datum", date)?,
                        aktivitet: s.leaf("Aktivitet", text(1, 200))?,
                        meddelande: s.leaf("Meddelande", text(1, 500))?,
                    })
                })?)
            }
        };
        Ok(ArbetssokandeHandelse {
            af: AfHandelse {
                handelse_id,
                tidpunkt,
                personidentitet,
                handelse,
            },
            arendeidentitet,
        })
    })
}

/// Encodes the case system's receipt for an event.
pub fn encode_handelse_kvittens(k: &ArbetssokandeHandelseKvittens) -> String {
    let mut o = Out::envelope();
    o.node("ArbetssokandeHandelseKvittens", |o| {
        o.leaf("HandelseId", &k.handelse_id.to_string());
        o.leaf("Mottagen", &lexical::format_tidpunkt(k.mottagen));
    });
    o.finish()
}

/// Decodes the case system's receipt for an event.
pub fn decode_handelse_kvittens(
    bytes: &[u8],
    limits: &XmlLimits,
) -> Result<ArbetssokandeHandelseKvittens, DecodeError> {
    let root = xml::parse(bytes, limits)?;
    let el = body_element(&root)?;
    if !el.is(KOMMUN_NS, "ArbetssokandeHandelseKvittens") {
        return Err(DecodeError::doc(
            DecodeKind::UnknownOperation,
            format!("{} is not ArbetssokandeHandelseKvittens", el.name),
        ));
    }
    decode_root(el, |s| {
        Ok(ArbetssokandeHandelseKvittens {
            handelse_id: s.leaf("HandelseId", uuid)?,
            mottagen: s.leaf("Mottagen", tidpunkt)?,
        })
    })
}
