//! Typed messages of interface v1, independent of their XML or JSON encoding.

use time::{Date, OffsetDateTime};
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

/// The operations of the `kommun` listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    HamtaArbetssokandeStatus,
    HamtaErsattningsbeslut,
    HamtaHandlingsplan,
    AnmalAktivitetsplan,
    Ping,
    RegistreraPrenumeration,
    AvslutaPrenumeration,
    ListaPrenumerationer,
}

impl Operation {
    pub const ALL: [Operation; 8] = [
        Operation::HamtaArbetssokandeStatus,
        Operation::HamtaErsattningsbeslut,
        Operation::HamtaHandlingsplan,
        Operation::AnmalAktivitetsplan,
        Operation::Ping,
        Operation::RegistreraPrenumeration,
        Operation::AvslutaPrenumeration,
        Operation::ListaPrenumerationer,
    ];

    /// The request element's local name, which is also the operation's name.
    pub fn name(self) -> &'static str {
        match self {
            Operation::HamtaArbetssokandeStatus => "HamtaArbetssokandeStatus",
            Operation::HamtaErsattningsbeslut => "HamtaErsattningsbeslut",
            Operation::HamtaHandlingsplan => "HamtaHandlingsplan",
            Operation::AnmalAktivitetsplan => "AnmalAktivitetsplan",
            Operation::Ping => "Ping",
            Operation::RegistreraPrenumeration => "RegistreraPrenumeration",
            Operation::AvslutaPrenumeration => "AvslutaPrenumeration",
            Operation::ListaPrenumerationer => "ListaPrenumerationer",
        }
    }

    /// Whether brygga answers it itself, without asking AF.
    pub fn is_local(self) -> bool {
        matches!(
            self,
            Operation::RegistreraPrenumeration
                | Operation::AvslutaPrenumeration
                | Operation::ListaPrenumerationer
        )
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == name)
    }
}

/// A decoded municipal request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KommunRequest {
    HamtaArbetssokandeStatus(Fraga),
    HamtaErsattningsbeslut(Fraga),
    HamtaHandlingsplan(Fraga),
    AnmalAktivitetsplan(Fraga, Aktivitetsplan),
    /// A health check: carries no personal data, only a correlation id.
    Ping(Uuid),
    /// Start (or extend) a subscription to AF's events about the person in the case.
    RegistreraPrenumeration(Fraga),
    /// End the client's active subscription for the case and person.
    AvslutaPrenumeration(Fraga),
    /// The client's own subscriptions in a case; names no person.
    ListaPrenumerationer(PrenumerationsFraga),
}

/// The header of `ListaPrenumerationer`: who asks, about which case, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrenumerationsFraga {
    pub korrelationsid: Uuid,
    pub ingivare: Ingivare,
    pub arendeidentitet: String,
    pub syfte: String,
}

impl KommunRequest {
    pub fn operation(&self) -> Operation {
        match self {
            KommunRequest::HamtaArbetssokandeStatus(_) => Operation::HamtaArbetssokandeStatus,
            KommunRequest::HamtaErsattningsbeslut(_) => Operation::HamtaErsattningsbeslut,
            KommunRequest::HamtaHandlingsplan(_) => Operation::HamtaHandlingsplan,
            KommunRequest::AnmalAktivitetsplan(..) => Operation::AnmalAktivitetsplan,
            KommunRequest::Ping(_) => Operation::Ping,
            KommunRequest::RegistreraPrenumeration(_) => Operation::RegistreraPrenumeration,
            KommunRequest::AvslutaPrenumeration(_) => Operation::AvslutaPrenumeration,
            KommunRequest::ListaPrenumerationer(_) => Operation::ListaPrenumerationer,
        }
    }

    /// The common header, for the operations about one person.
    pub fn fraga(&self) -> Option<&Fraga> {
        match self {
            KommunRequest::HamtaArbetssokandeStatus(f)
            | KommunRequest::HamtaErsattningsbeslut(f)
            | KommunRequest::HamtaHandlingsplan(f)
            | KommunRequest::AnmalAktivitetsplan(f, _)
            | KommunRequest::RegistreraPrenumeration(f)
            | KommunRequest::AvslutaPrenumeration(f) => Some(f),
            KommunRequest::Ping(_) | KommunRequest::ListaPrenumerationer(_) => None,
        }
    }

    /// Who asks and why: the submitter (organisation, case worker), the case and the purpose.
    /// Every operation but `Ping` names them.
    pub fn caller(&self) -> Option<Caller<'_>> {
        match self {
            KommunRequest::ListaPrenumerationer(l) => Some(Caller {
                ingivare: &l.ingivare,
                arendeidentitet: &l.arendeidentitet,
                syfte: &l.syfte,
                lagrum: None,
            }),
            other => other.fraga().map(|f| Caller {
                ingivare: &f.ingivare,
                arendeidentitet: &f.arendeidentitet,
                syfte: &f.syfte,
                lagrum: Some(&f.lagrum),
            }),
        }
    }

    pub fn korrelationsid(&self) -> Uuid {
        match self {
            KommunRequest::Ping(id) => *id,
            KommunRequest::ListaPrenumerationer(l) => l.korrelationsid,
            other => other.fraga().map(|f| f.korrelationsid).unwrap_or_default(),
        }
    }
}

/// The parts of a request that say who asks and why (see [`KommunRequest::caller`]).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub ingivare: &'a Ingivare,
    pub arendeidentitet: &'a str,
    pub syfte: &'a str,
    /// The legal basis the caller states (a listing of subscriptions states none).
    pub lagrum: Option<&'a str>,
}

/// Defines a closed code list: an enum whose variants map one to one to the contract's codes.
macro_rules! code_list {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The code as the contracts write it.
            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }

            /// The variant for a code, if the code is in the list.
            pub fn from_code(code: &str) -> Option<Self> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }

            /// The codes, for error messages.
            pub fn codes() -> String {
                [$($code),+].join(", ")
            }
        }
    };
}

code_list!(
    /// Kinds of AF benefit decision.
    Ersattningstyp {
        Aktivitetsstod = "AKTIVITETSSTOD",
        Utvecklingsersattning = "UTVECKLINGSERSATTNING",
        Etableringsersattning = "ETABLERINGSERSATTNING",
        Arbetsloshetsersattning = "ARBETSLOSHETSERSATTNING",
    }
);

code_list!(
    /// Status of AF's handlingsplan.
    HandlingsplanStatus {
        UnderUpprattande = "UNDER_UPPRATTANDE",
        Aktiv = "AKTIV",
        Avslutad = "AVSLUTAD",
    }
);

code_list!(
    /// Whether an AF activity is an activity or a labour-market programme.
    AktivitetSlag {
        Aktivitet = "AKTIVITET",
        Program = "PROGRAM",
    }
);

code_list!(
    /// The kinds of activity the aktivitetskrav names.
    AktivitetskravSlag {
        OkaFormagaArbeteStudier = "OKA_FORMAGA_ARBETE_STUDIER",
        Sprak = "SPRAK",
        Arbetsplatsforlagd = "ARBETSPLATSFORLAGD",
        Jobbsokande = "JOBBSOKANDE",
        KommunalVerksamhet = "KOMMUNAL_VERKSAMHET",
        Studieforberedande = "STUDIEFORBEREDANDE",
    }
);

code_list!(
    /// Full time, or adapted to the person's ability.
    Omfattning {
        Heltid = "HELTID",
        Anpassad = "ANPASSAD",
    }
);

code_list!(
    /// What AF did with a reported plan.
    KvittensStatus {
        Mottagen = "MOTTAGEN",
        Uppdaterad = "UPPDATERAD",
    }
);

code_list!(
    /// Health of one upstream service.
    TjanstStatus {
        Ok = "OK",
        Fel = "FEL",
        EjNabar = "EJ_NABAR",
    }
);

code_list!(
    /// The kinds of AF event.
    HandelseTyp {
        Inskriven = "INSKRIVEN",
        Avaktualiserad = "AVAKTUALISERAD",
        SokandekategoriAndrad = "SOKANDEKATEGORI_ANDRAD",
        ProgramStartat = "PROGRAM_STARTAT",
        ProgramAvslutat = "PROGRAM_AVSLUTAT",
        UteblivenAktivitet = "UTEBLIVEN_AKTIVITET",
    }
);

code_list!(
    /// The categories of data a purpose may see; answers are minimised to them.
    Datakategori {
        Registrering = "REGISTRERING",
        Kontor = "KONTOR",
        Sokandekategori = "SOKANDEKATEGORI",
        Aktivitetsrapport = "AKTIVITETSRAPPORT",
        AKassa = "AKASSA",
        Handlingsplan = "HANDLINGSPLAN",
        Aktiviteter = "AKTIVITETER",
        Ersattningar = "ERSATTNINGAR",
    }
);

/// An amount in öre (hundredths of a krona), so no float ever carries money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ore(pub u64);

/// Hours per week in tenths of an hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tiondelstimmar(pub u16);

/// One AF benefit decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ersattningsbeslut {
    pub typ: Ersattningstyp,
    pub omfattning_procent: u8,
    pub from: Date,
    pub tom: Option<Date>,
}

/// The latest payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utbetalning {
    pub datum: Date,
    pub belopp: Ore,
}

/// AF's benefit decisions for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ersattningar {
    pub beslut: Vec<Ersattningsbeslut>,
    pub aktivitetsstod_dagar: Option<u16>,
    pub senaste_utbetalning: Option<Utbetalning>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HamtaErsattningsbeslutSvar {
    pub korrelationsid: Uuid,
    pub ersattningar: Ersattningar,
}

/// A planned or ongoing AF activity or programme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfAktivitet {
    pub slag: AktivitetSlag,
    pub typ_kod: String,
    pub namn: String,
    pub from: Date,
    pub tom: Option<Date>,
    pub omfattning_procent: Option<u8>,
    pub anordnare: Option<String>,
}

/// AF's officer responsible for the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsvarigHandlaggare {
    pub namn: String,
    pub kontaktvag: Option<String>,
}

/// AF's handlingsplan for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handlingsplan {
    pub upprattad: Date,
    pub status: HandlingsplanStatus,
    pub nasta_uppfoljning: Option<Date>,
    pub hinder_for_lampligt_arbete: bool,
    pub aktiviteter: Vec<AfAktivitet>,
    pub kontor: Option<Kontor>,
    pub ansvarig_handlaggare: Option<AnsvarigHandlaggare>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HamtaHandlingsplanSvar {
    pub korrelationsid: Uuid,
    pub handlingsplan: Option<Handlingsplan>,
}

/// Who provides an activity of the municipality's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anordnare {
    pub organisationsnummer: Option<Organisationsnummer>,
    pub namn: String,
}

/// One activity of the municipality's aktivitetskrav plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KravAktivitet {
    pub slag: AktivitetskravSlag,
    pub timmar_per_vecka: Tiondelstimmar,
    pub omfattning: Omfattning,
    pub period: Tidsperiod,
    pub anordnare: Anordnare,
}

/// The municipality's aktivitetskrav plan for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aktivitetsplan {
    pub plan_id: String,
    pub beslutsdatum: Date,
    pub aktiviteter: Vec<KravAktivitet>,
}

/// The most hours per week a plan may hold at any one time.
pub const MAX_TIMMAR_PER_VECKA: Tiondelstimmar = Tiondelstimmar(400);

impl Aktivitetsplan {
    /// The largest sum of hours per week over activities that run at the same time.
    pub fn peak_hours(&self) -> Tiondelstimmar {
        // The peak is reached at some activity's start date.
        let peak = self
            .aktiviteter
            .iter()
            .map(|a| {
                let day = a.period.from();
                self.aktiviteter
                    .iter()
                    .filter(|b| b.period.from() <= day && day <= b.period.tom())
                    .map(|b| u32::from(b.timmar_per_vecka.0))
                    .sum::<u32>()
            })
            .max()
            .unwrap_or(0);
        Tiondelstimmar(u16::try_from(peak).unwrap_or(u16::MAX))
    }
}

/// AF's receipt for a reported plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kvittens {
    pub referens: String,
    pub mottagen: OffsetDateTime,
    pub status: KvittensStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnmalAktivitetsplanSvar {
    pub korrelationsid: Uuid,
    pub kvittens: Kvittens,
}

/// Health of one upstream service, as `Ping` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tjanst {
    pub namn: String,
    pub status: TjanstStatus,
    pub svarstid_ms: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingSvar {
    pub korrelationsid: Uuid,
    pub tjanster: Vec<Tjanst>,
}

/// A labour-market programme in an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub kod: String,
    pub namn: String,
    pub from: Date,
    pub tom: Option<Date>,
}

/// An activity the person did not attend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UteblivenAktivitet {
    pub datum: Date,
    pub aktivitet: String,
    pub meddelande: String,
}

/// What happened, with the detail that belongs to that kind of event: a type without its
/// detail, or with another's, cannot be represented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handelse {
    Inskriven,
    Avaktualiserad(Avaktualisering),
    SokandekategoriAndrad(Sokandekategori),
    ProgramStartat(Program),
    ProgramAvslutat(Program),
    UteblivenAktivitet(UteblivenAktivitet),
}

impl Handelse {
    pub fn typ(&self) -> HandelseTyp {
        match self {
            Handelse::Inskriven => HandelseTyp::Inskriven,
            Handelse::Avaktualiserad(_) => HandelseTyp::Avaktualiserad,
            Handelse::SokandekategoriAndrad(_) => HandelseTyp::SokandekategoriAndrad,
            Handelse::ProgramStartat(_) => HandelseTyp::ProgramStartat,
            Handelse::ProgramAvslutat(_) => HandelseTyp::ProgramAvslutat,
            Handelse::UteblivenAktivitet(_) => HandelseTyp::UteblivenAktivitet,
        }
    }
}

/// An AF event about one person, as AF sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfHandelse {
    pub handelse_id: Uuid,
    pub tidpunkt: OffsetDateTime,
    pub personidentitet: Personnummer,
    pub handelse: Handelse,
}

/// An AF event as delivered to one subscribing case system (`ArbetssokandeHandelse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArbetssokandeHandelse {
    pub af: AfHandelse,
    pub arendeidentitet: String,
}

/// The case system's receipt for a delivered event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArbetssokandeHandelseKvittens {
    pub handelse_id: Uuid,
    pub mottagen: OffsetDateTime,
}

/// A decoded answer of the `kommun` listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KommunAnswer {
    Status(HamtaArbetssokandeStatusSvar),
    Ersattningsbeslut(HamtaErsattningsbeslutSvar),
    Handlingsplan(HamtaHandlingsplanSvar),
    Aktivitetsplan(AnmalAktivitetsplanSvar),
    Ping(PingSvar),
    RegistreraPrenumeration(PrenumerationSvar),
    AvslutaPrenumeration(PrenumerationSvar),
    ListaPrenumerationer(ListaPrenumerationerSvar),
}

code_list!(
    /// Whether a subscription still delivers.
    PrenumerationStatus {
        Aktiv = "AKTIV",
        Avslutad = "AVSLUTAD",
    }
);

/// A subscription to AF's events about one person in one case; the person is not named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prenumeration {
    pub id: Uuid,
    pub arendeidentitet: String,
    pub syfte: String,
    /// Events in this period are delivered, both days included.
    pub period: Tidsperiod,
    pub status: PrenumerationStatus,
    pub registrerad: OffsetDateTime,
    pub avslutad: Option<OffsetDateTime>,
}

/// The answer to `RegistreraPrenumeration` and to `AvslutaPrenumeration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrenumerationSvar {
    pub korrelationsid: Uuid,
    pub prenumeration: Prenumeration,
}

/// The answer to `ListaPrenumerationer`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListaPrenumerationerSvar {
    pub korrelationsid: Uuid,
    pub prenumerationer: Vec<Prenumeration>,
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
    /// The operation the request was for, when that much could be read.
    pub operation: Option<String>,
}
