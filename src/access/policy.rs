//! Authorisation, deny by default: this client may run this operation for this purpose, for
//! its own municipality only, as the case worker named in the token.

use crate::access::identity::CaseWorker;
use crate::config::{Client, Syfte};
use crate::error::{Failure, Felkod};
use std::collections::HashSet;

use crate::model::{
    Datakategori, Ersattningar, HandelseTyp, KommunAnswer, KommunRequest, Operation,
};

/// Why a request was refused. Each is its own Felkod.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("the token's kommunkod is not the municipality of the client certificate")]
    ForeignKommun,
    #[error("Handlaggare must be the case worker named in the token (sub)")]
    Handlaggare,
    #[error("Organisationsnummer must be the organisation of the client certificate")]
    Ingivare,
    #[error("Syfte must be the purpose named in the token")]
    SyfteMismatch,
    #[error("this client may not call {}", .0.name())]
    Operation(Operation),
    #[error("this client may not use the purpose {0}")]
    Syfte(String),
    #[error("this client may not use the purpose {syfte} for {op}", op = .0.name(), syfte = .1)]
    SyfteForOperation(Operation, String),
    #[error("the case worker's HSA-id is not one this client has authorised")]
    HandlaggarePrefix,
    #[error("the stated legal basis (Lagrum) is not one the purpose {0} accepts; state: {1}")]
    Lagrum(String, String),
}

/// Checks a decoded request against the client's policy, the verified token and the purpose
/// it names (`syfte`, as configured; a purpose that is not is refused by the client's policy).
pub fn authorise(
    client: &Client,
    worker: &CaseWorker,
    req: &KommunRequest,
    syfte: Option<&Syfte>,
) -> Result<(), Denial> {
    if worker.kommunkod != client.kommunkod {
        return Err(Denial::ForeignKommun);
    }
    if !client.operations.contains(&req.operation()) {
        return Err(Denial::Operation(req.operation()));
    }
    // Ping carries no personal data, so there is no case worker or purpose to match.
    let Some(caller) = req.caller() else {
        return Ok(());
    };
    if caller.ingivare.organisationsnummer != client.orgnr {
        return Err(Denial::Ingivare);
    }
    if caller.ingivare.handlaggare != worker.hsa_id {
        return Err(Denial::Handlaggare);
    }
    if caller.syfte != worker.syfte {
        return Err(Denial::SyfteMismatch);
    }
    if !client.syften.iter().any(|s| s == caller.syfte) {
        return Err(Denial::Syfte(caller.syfte.to_owned()));
    }
    if let Some(allowed) = client.syften_per_operation.get(&req.operation())
        && !allowed.iter().any(|s| s == caller.syfte)
    {
        return Err(Denial::SyfteForOperation(
            req.operation(),
            caller.syfte.to_owned(),
        ));
    }
    if !client.handlaggare_prefix.is_empty()
        && !client
            .handlaggare_prefix
            .iter()
            .any(|p| worker.hsa_id.as_str().starts_with(p.as_str()))
    {
        return Err(Denial::HandlaggarePrefix);
    }
    // The legal basis the caller states must be the purpose's.
    if let (Some(syfte), Some(stated)) = (syfte, caller.lagrum)
        && !syfte.accepts(stated)
    {
        return Err(Denial::Lagrum(syfte.kod.clone(), syfte.lagrum.clone()));
    }
    Ok(())
}

/// Removes from an answer what the purpose may not see, and what a protected identity hides.
/// Whether the person is known, registered and protected always stays: it is what every
/// purpose asks.
pub fn minimise(answer: KommunAnswer, may_see: &HashSet<Datakategori>) -> KommunAnswer {
    let sees = |d: Datakategori| may_see.contains(&d);
    match answer {
        KommunAnswer::Status(mut svar) => {
            let s = &mut svar.status;
            if !sees(Datakategori::Registrering) {
                s.inskrivningsdatum = None;
                s.avaktualisering = None;
            }
            // Protected identity: the office would place the person.
            if !sees(Datakategori::Kontor) || s.sekretessmarkering {
                s.kontor = None;
            }
            if !sees(Datakategori::Sokandekategori) {
                s.sokandekategori = None;
                s.omfattning_procent = None;
            }
            if !sees(Datakategori::Aktivitetsrapport) {
                s.senaste_aktivitetsrapport = None;
            }
            if !sees(Datakategori::AKassa) {
                s.a_kassa = None;
            }
            KommunAnswer::Status(svar)
        }
        KommunAnswer::Ersattningsbeslut(mut svar) if !sees(Datakategori::Ersattningar) => {
            svar.ersattningar = Ersattningar {
                beslut: vec![],
                aktivitetsstod_dagar: None,
                senaste_utbetalning: None,
            };
            KommunAnswer::Ersattningsbeslut(svar)
        }
        KommunAnswer::Handlingsplan(mut svar) => {
            if !sees(Datakategori::Handlingsplan) {
                svar.handlingsplan = None;
            }
            if let Some(plan) = svar.handlingsplan.as_mut() {
                if !sees(Datakategori::Aktiviteter) {
                    plan.aktiviteter.clear();
                }
                if !sees(Datakategori::Kontor) {
                    plan.kontor = None;
                }
            }
            KommunAnswer::Handlingsplan(svar)
        }
        other => other,
    }
}

/// The data categories an answer actually carries, for the audit record. Whether the person
/// is known, registered and protected is registration data and is in every status answer.
/// Whether AF marked the person's identity as protected (sekretessmarkering), which the
/// audit record flags. Read before minimisation: the flag holds whatever the purpose sees.
pub fn protected_identity(answer: &KommunAnswer) -> bool {
    matches!(answer, KommunAnswer::Status(svar) if svar.status.sekretessmarkering)
}

pub fn disclosed(answer: &KommunAnswer) -> Vec<Datakategori> {
    let mut out = Vec::new();
    let mut add = |present: bool, d: Datakategori| {
        if present {
            out.push(d);
        }
    };
    match answer {
        KommunAnswer::Status(svar) => {
            let s = &svar.status;
            add(true, Datakategori::Registrering);
            add(s.kontor.is_some(), Datakategori::Kontor);
            add(
                s.sokandekategori.is_some() || s.omfattning_procent.is_some(),
                Datakategori::Sokandekategori,
            );
            add(
                s.senaste_aktivitetsrapport.is_some(),
                Datakategori::Aktivitetsrapport,
            );
            add(s.a_kassa.is_some(), Datakategori::AKassa);
        }
        KommunAnswer::Ersattningsbeslut(svar) => {
            let e = &svar.ersattningar;
            add(
                !e.beslut.is_empty()
                    || e.aktivitetsstod_dagar.is_some()
                    || e.senaste_utbetalning.is_some(),
                Datakategori::Ersattningar,
            );
        }
        KommunAnswer::Handlingsplan(svar) => {
            if let Some(plan) = &svar.handlingsplan {
                add(true, Datakategori::Handlingsplan);
                add(!plan.aktiviteter.is_empty(), Datakategori::Aktiviteter);
                add(plan.kontor.is_some(), Datakategori::Kontor);
            }
        }
        // The municipality disclosed its plan to AF; AF's receipt holds no personal data.
        KommunAnswer::Aktivitetsplan(_) => add(true, Datakategori::Aktiviteter),
        // A subscription's answer names no person and carries nothing from AF.
        KommunAnswer::Ping(_)
        | KommunAnswer::RegistreraPrenumeration(_)
        | KommunAnswer::AvslutaPrenumeration(_)
        | KommunAnswer::ListaPrenumerationer(_) => {}
    }
    out
}

/// The categories AF's events carry: a purpose that may see none of them receives no event.
pub const EVENT_CATEGORIES: [Datakategori; 4] = [
    Datakategori::Registrering,
    Datakategori::Sokandekategori,
    Datakategori::Aktiviteter,
    Datakategori::Aktivitetsrapport,
];

/// The data category an event of this kind carries (each kind carries one, whole: a purpose
/// that may see it gets the event as it is, one that may not gets nothing of it).
pub fn event_category(typ: HandelseTyp) -> Datakategori {
    match typ {
        HandelseTyp::Inskriven | HandelseTyp::Avaktualiserad => Datakategori::Registrering,
        HandelseTyp::SokandekategoriAndrad => Datakategori::Sokandekategori,
        HandelseTyp::ProgramStartat | HandelseTyp::ProgramAvslutat => Datakategori::Aktiviteter,
        HandelseTyp::UteblivenAktivitet => Datakategori::Aktivitetsrapport,
    }
}

/// What the caller is told: the Felkod and the message of a SOAP Fault.
impl From<Denial> for Failure {
    fn from(d: Denial) -> Self {
        let (felkod, field) = match &d {
            Denial::ForeignKommun => (Felkod::FelKommun, None),
            Denial::Handlaggare => (
                Felkod::HandlaggareMatcharEj,
                Some("Fraga/Ingivare/Handlaggare"),
            ),
            Denial::Ingivare => (
                Felkod::IngivareMatcharEj,
                Some("Fraga/Ingivare/Organisationsnummer"),
            ),
            Denial::SyfteMismatch => (Felkod::SyfteMatcharEj, Some("Fraga/Syfte")),
            Denial::Operation(_) => (Felkod::OperationEjTillaten, None),
            Denial::Syfte(_) | Denial::SyfteForOperation(..) => {
                (Felkod::SyfteEjTillatet, Some("Fraga/Syfte"))
            }
            Denial::HandlaggarePrefix => (
                Felkod::HandlaggareEjBehorig,
                Some("Fraga/Ingivare/Handlaggare"),
            ),
            Denial::Lagrum(..) => (Felkod::LagrumEjGodtaget, Some("Fraga/Lagrum")),
        };
        Failure {
            felkod,
            message: d.to_string(),
            field: field.map(str::to_owned),
            retry_after: None,
        }
    }
}
