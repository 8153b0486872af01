//! Typed messages of interface v1, independent of their XML or JSON encoding.

use time::Date;
use uuid::Uuid;

use super::ident::{HsaId, Organisationsnummer, Personnummer};

/// Namespace of the municipal SOAP interface, version 1.
pub const KOMMUN_NS: &str = "urn:se:brygga:kommun:v1";

/// The sender of a question: organisation, its name and the case worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingivare {
    pub organisationsnummer: Organisationsnummer,
    pub namn: String,
    pub handlaggare: HsaId,
}

/// The period a question concerns; `from <= tom` holds for every value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tidsperiod {
    from: Date,
    tom: Date,
}

impl Tidsperiod {
    /// `None` when `from` is after `tom`.
    pub fn new(from: Date, tom: Date) -> Option<Self> {
        (from <= tom).then_some(Self { from, tom })
    }
    pub fn from(&self) -> Date {
        self.from
    }
    pub fn tom(&self) -> Date {
        self.tom
    }
}

/// The common header of every municipal request (modelled on SSBTEK's general part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fraga {
    pub korrelationsid: Uuid,
    pub ingivare: Ingivare,
    pub arendeidentitet: String,
    pub personidentitet: Personnummer,
    pub tidsperiod: Tidsperiod,
    pub syfte: String,
    pub lagrum: String,
    pub personuppgiftsbitrade: Option<String>,
}

/// The operations of the `kommun` listener that this version implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    HamtaArbetssokandeStatus,
}

impl Operation {
    pub const ALL: [Operation; 1] = [Operation::HamtaArbetssokandeStatus];

    /// The request element's local name, which is also the operation's name.
    pub fn name(self) -> &'static str {
        match self {
            Operation::HamtaArbetssokandeStatus => "HamtaArbetssokandeStatus",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == name)
    }
}

/// A decoded municipal request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KommunRequest {
    HamtaArbetssokandeStatus(Fraga),
}

impl KommunRequest {
    pub fn operation(&self) -> Operation {
        match self {
            KommunRequest::HamtaArbetssokandeStatus(_) => Operation::HamtaArbetssokandeStatus,
        }
    }
    pub fn fraga(&self) -> &Fraga {
        match self {
            KommunRequest::HamtaArbetssokandeStatus(f) => f,
        }
    }
}

/// AF's office responsible for the jobseeker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kontor {
    pub kod: String,
    pub namn: String,
}

/// The jobseeker category (two-digit AF code and its text) and since when it applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sokandekategori {
    pub kod: String,
    pub text: String,
    pub from: Option<Date>,
}

/// Deregistration from AF's register: when and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Avaktualisering {
    pub datum: Date,
    pub orsak_kod: String,
    pub orsak_text: String,
}

/// The latest activity report the jobseeker handed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aktivitetsrapport {
    pub datum: Date,
    pub meddelande: String,
}

/// Membership of an unemployment insurance fund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AKassa {
    pub medlem: bool,
    pub namn: Option<String>,
}

/// What AF knows about a person's registration as a jobseeker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arbetssokandestatus {
    pub kand_av_af: bool,
    pub inskriven: bool,
    pub inskrivningsdatum: Option<Date>,
    pub kontor: Option<Kontor>,
    pub sokandekategori: Option<Sokandekategori>,
    pub omfattning_procent: Option<u8>,
    pub avaktualisering: Option<Avaktualisering>,
    pub senaste_aktivitetsrapport: Option<Aktivitetsrapport>,
    pub a_kassa: Option<AKassa>,
    pub sekretessmarkering: bool,
}

/// The answer to `HamtaArbetssokandeStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HamtaArbetssokandeStatusSvar {
    pub korrelationsid: Uuid,
    pub status: Arbetssokandestatus,
}

/// Which side caused an error: decides the HTTP class and whether the caller can fix it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kalla {
    Gateway,
    Af,
}

impl Kalla {
    pub fn as_str(self) -> &'static str {
        match self {
            Kalla::Gateway => "GATEWAY",
            Kalla::Af => "AF",
        }
    }
}

/// The detail of a SOAP Fault (`detail/Fel`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fel {
    pub kalla: Kalla,
    pub felkod: String,
    pub meddelande: String,
    pub falt: Option<String>,
    pub korrelationsid: Uuid,
    pub kan_forsokas_igen: bool,
}
