//! The municipality's requests, both ways: decoded at brygga's front door, encoded by the
//! case-system client and the simulator.

use super::*;

/// The longest period a question may cover, in days (a year, leap day included).
pub const MAX_PERIOD_DAYS: i64 = 366;

pub(super) fn decode_tidsperiod(s: &mut Seq<'_>) -> Result<Tidsperiod, DecodeError> {
    let path = s.path.clone();
    let from = s.leaf("From", date)?;
    let tom = s.leaf("Tom", date)?;
    let period =
        Tidsperiod::new(from, tom).ok_or_else(|| invalid(&path, "From must not be after Tom"))?;
    if (tom - from).whole_days() >= MAX_PERIOD_DAYS {
        return Err(invalid(
            &path,
            format!("the period may cover at most {MAX_PERIOD_DAYS} days"),
        ));
    }
    Ok(period)
}

pub(super) fn decode_fraga(s: &mut Seq<'_>) -> Result<Fraga, DecodeError> {
    let korrelationsid = s.leaf("Korrelationsid", uuid)?;
    let ingivare = s.node("Ingivare", decode_ingivare)?;
    Ok(Fraga {
        korrelationsid,
        ingivare,
        arendeidentitet: s.leaf("Arendeidentitet", kept_text(1, 64))?,
        personidentitet: s.leaf("Personidentitet", with(Personnummer::parse))?,
        tidsperiod: s.node("Tidsperiod", decode_tidsperiod)?,
        syfte: s.leaf("Syfte", syfte)?,
        lagrum: s.leaf("Lagrum", kept_text(1, 500))?,
        personuppgiftsbitrade: s.opt_leaf("Personuppgiftsbitrade", kept_text(1, 200))?,
    })
}

pub(super) fn decode_ingivare(s: &mut Seq<'_>) -> Result<Ingivare, DecodeError> {
    Ok(Ingivare {
        organisationsnummer: s.leaf("Organisationsnummer", orgnr12)?,
        namn: s.leaf("Namn", kept_text(1, 200))?,
        handlaggare: s.leaf("Handlaggare", with(HsaId::parse))?,
    })
}

pub(super) fn syfte(t: &str, p: &str) -> Result<String, DecodeError> {
    if crate::model::ident::embeds_identity_number(t) {
        return Err(invalid(
            p,
            crate::model::ident::IdentError::EmbedsIdentityNumber.to_string(),
        ));
    }
    pattern(
        is_code,
        "must be a purpose code such as EKB-BESLUT (A-Z, 0-9, '-', 2 to 32 characters)",
    )(t, p)
}

pub(super) fn decode_prenumerations_fraga(
    s: &mut Seq<'_>,
) -> Result<PrenumerationsFraga, DecodeError> {
    Ok(PrenumerationsFraga {
        korrelationsid: s.leaf("Korrelationsid", uuid)?,
        ingivare: s.node("Ingivare", decode_ingivare)?,
        arendeidentitet: s.leaf("Arendeidentitet", kept_text(1, 64))?,
        syfte: s.leaf("Syfte", syfte)?,
    })
}

pub(super) fn decode_prenumeration(s: &mut Seq<'_>) -> Result<Prenumeration, DecodeError> {
    let path = s.path.clone();
    let id = s.leaf("PrenumerationsId", uuid)?;
    let arendeidentitet = s.leaf("Arendeidentitet", text(1, 64))?;
    let syfte = s.leaf("Syfte", syfte)?;
    let from = s.leaf("From", date)?;
    let tom = s.leaf("Tom", date)?;
    let period =
        Tidsperiod::new(from, tom).ok_or_else(|| invalid(&path, "From must not be after Tom"))?;
    Ok(Prenumeration {
        id,
        arendeidentitet,
        syfte,
        period,
        status: s.leaf(
            "Status",
            code(PrenumerationStatus::from_code, PrenumerationStatus::codes),
        )?,
        registrerad: s.leaf("Registrerad", tidpunkt)?,
        avslutad: s.opt_leaf("Avslutad", tidpunkt)?,
    })
}

pub(super) fn decode_aktivitetsplan(s: &mut Seq<'_>) -> Result<Aktivitetsplan, DecodeError> {
    let plan_path = s.path.clone();
    let plan = Aktivitetsplan {
        plan_id: s.leaf("PlanId", text(1, 64))?,
        beslutsdatum: s.leaf("Beslutsdatum", date)?,
        aktiviteter: s.many("Aktivitet", 1, 50, |s| {
            let path = s.path.clone();
            let slag = s.leaf(
                "Slag",
                code(AktivitetskravSlag::from_code, AktivitetskravSlag::codes),
            )?;
            let timmar = s.leaf("TimmarPerVecka", |t, p| {
                lexical::parse_decimal(t, 1, 5, 400).map_err(|e| invalid(p, e))
            })?;
            let omfattning =
                s.leaf("Omfattning", code(Omfattning::from_code, Omfattning::codes))?;
            let from = s.leaf("From", date)?;
            let tom = s.leaf("Tom", date)?;
            let period = Tidsperiod::new(from, tom)
                .ok_or_else(|| invalid(&path, "From must not be after Tom"))?;
            let anordnare = s.node("Anordnare", |s| {
                Ok(Anordnare {
                    organisationsnummer: s.opt_leaf("Organisationsnummer", orgnr12)?,
                    namn: s.leaf("Namn", text(1, 200))?,
                })
            })?;
            Ok(KravAktivitet {
                slag,
                timmar_per_vecka: Tiondelstimmar(timmar as u16),
                omfattning,
                period,
                anordnare,
            })
        })?,
    };
    if plan.peak_hours() > MAX_TIMMAR_PER_VECKA {
        return Err(invalid(
            &plan_path,
            format!(
                "activities that run at the same time add up to {} hours per week; at most 40 are allowed",
                lexical::format_decimal(u64::from(plan.peak_hours().0), 1)
            ),
        ));
    }
    Ok(plan)
}

/// Decodes a municipal request envelope.
pub fn decode_request(bytes: &[u8], limits: &XmlLimits) -> Result<KommunRequest, DecodeError> {
    let root = xml::parse(bytes, limits)?;
    let op_el = body_element(&root)?;
    if op_el.ns.as_deref() != Some(KOMMUN_NS) {
        return Err(DecodeError::doc(
            DecodeKind::UnknownOperation,
            format!(
                "the Body element {} is not in namespace {KOMMUN_NS}",
                op_el.name
            ),
        ));
    }
    let op = Operation::from_name(&op_el.name).ok_or_else(|| {
        DecodeError::doc(
            DecodeKind::UnknownOperation,
            format!(
                "{} is not an operation of this service (operations: {})",
                op_el.name,
                Operation::ALL.map(|o| o.name()).join(", ")
            ),
        )
    })?;
    let decoded = decode_root(op_el, |s| {
        Ok(match op {
            Operation::HamtaArbetssokandeStatus => {
                KommunRequest::HamtaArbetssokandeStatus(s.node("Fraga", decode_fraga)?)
            }
            Operation::HamtaErsattningsbeslut => {
                KommunRequest::HamtaErsattningsbeslut(s.node("Fraga", decode_fraga)?)
            }
            Operation::HamtaHandlingsplan => {
                KommunRequest::HamtaHandlingsplan(s.node("Fraga", decode_fraga)?)
            }
            Operation::AnmalAktivitetsplan => {
                let fraga = s.node("Fraga", decode_fraga)?;
                let plan = s.node("Aktivitetsplan", decode_aktivitetsplan)?;
                KommunRequest::AnmalAktivitetsplan(fraga, plan)
            }
            Operation::Ping => KommunRequest::Ping(s.leaf("Korrelationsid", uuid)?),
            Operation::RegistreraPrenumeration => {
                KommunRequest::RegistreraPrenumeration(s.node("Fraga", decode_fraga)?)
            }
            Operation::AvslutaPrenumeration => {
                KommunRequest::AvslutaPrenumeration(s.node("Fraga", decode_fraga)?)
            }
            Operation::ListaPrenumerationer => {
                KommunRequest::ListaPrenumerationer(decode_prenumerations_fraga(s)?)
            }
        })
    });
    decoded.map_err(|mut e| {
        e.operation = Some(op);
        e.korrelationsid = korrelationsid_in(op_el);
        e
    })
}

/// The Korrelationsid of a request that could not be decoded whole: in its `Fraga`, or
/// straight in the operation element, where it stands first.
pub(super) fn korrelationsid_in(op_el: &Element) -> Option<Uuid> {
    let first = op_el.children.first()?;
    let holder = if first.is(KOMMUN_NS, "Fraga") {
        first.children.first()?
    } else {
        first
    };
    if !holder.is(KOMMUN_NS, "Korrelationsid") {
        return None;
    }
    parse_uuid(holder.text.trim()).ok()
}

pub(super) fn encode_ingivare(o: &mut Out, i: &Ingivare) {
    o.node("Ingivare", |o| {
        o.leaf("Organisationsnummer", &i.organisationsnummer.to_ssbtek());
        o.leaf("Namn", &i.namn);
        o.leaf("Handlaggare", i.handlaggare.as_str());
    });
}

pub(super) fn encode_prenumeration(o: &mut Out, p: &Prenumeration) {
    o.node("Prenumeration", |o| {
        o.leaf("PrenumerationsId", &p.id.to_string());
        o.leaf("Arendeidentitet", &p.arendeidentitet);
        o.leaf("Syfte", &p.syfte);
        o.date("From", p.period.from());
        o.date("Tom", p.period.tom());
        o.leaf("Status", p.status.code());
        o.leaf("Registrerad", &lexical::format_tidpunkt(p.registrerad));
        if let Some(t) = p.avslutad {
            o.leaf("Avslutad", &lexical::format_tidpunkt(t));
        }
    });
}

pub(super) fn encode_fraga(o: &mut Out, f: &Fraga) {
    o.node("Fraga", |o| {
        o.leaf("Korrelationsid", &f.korrelationsid.to_string());
        encode_ingivare(o, &f.ingivare);
        o.leaf("Arendeidentitet", &f.arendeidentitet);
        o.leaf("Personidentitet", &f.personidentitet.expose());
        o.node("Tidsperiod", |o| {
            o.date("From", f.tidsperiod.from());
            o.date("Tom", f.tidsperiod.tom());
        });
        o.leaf("Syfte", &f.syfte);
        o.leaf("Lagrum", &f.lagrum);
        o.opt("Personuppgiftsbitrade", f.personuppgiftsbitrade.as_deref());
    });
}

/// Encodes a municipal request (what a case system sends).
pub fn encode_request(req: &KommunRequest) -> String {
    let mut o = Out::envelope();
    o.node(req.operation().name(), |o| match req {
        KommunRequest::HamtaArbetssokandeStatus(f)
        | KommunRequest::HamtaErsattningsbeslut(f)
        | KommunRequest::HamtaHandlingsplan(f)
        | KommunRequest::RegistreraPrenumeration(f)
        | KommunRequest::AvslutaPrenumeration(f) => encode_fraga(o, f),
        KommunRequest::ListaPrenumerationer(l) => {
            o.leaf("Korrelationsid", &l.korrelationsid.to_string());
            encode_ingivare(o, &l.ingivare);
            o.leaf("Arendeidentitet", &l.arendeidentitet);
            o.leaf("Syfte", &l.syfte);
        }
        KommunRequest::AnmalAktivitetsplan(f, plan) => {
            encode_fraga(o, f);
            o.node("Aktivitetsplan", |o| {
                o.leaf("PlanId", &plan.plan_id);
                o.date("Beslutsdatum", plan.beslutsdatum);
                for a in &plan.aktiviteter {
                    o.node("Aktivitet", |o| {
                        o.leaf("Slag", a.slag.code());
                        o.leaf(
                            "TimmarPerVecka",
                            &lexical::format_decimal(u64::from(a.timmar_per_vecka.0), 1),
                        );
                        o.leaf("Omfattning", a.omfattning.code());
                        o.date("From", a.period.from());
                        o.date("Tom", a.period.tom());
                        o.node("Anordnare", |o| {
                            o.opt(
                                "Organisationsnummer",
                                a.anordnare
                                    .organisationsnummer
                                    .map(|n| n.to_ssbtek())
                                    .as_deref(),
                            );
                            o.leaf("Namn", &a.anordnare.namn);
                        });
                    });
                }
            });
        }
        KommunRequest::Ping(id) => o.leaf("Korrelationsid", &id.to_string()),
    });
    o.finish()
}
