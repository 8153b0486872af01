//! Every way a request can fail, and the one place (`rescue`) that turns a failure into an
//! HTTP status, a SOAP Fault with a stable Felkod, and whether a retry can help.
//!
//! Upstream detail never reaches the caller: it goes to the log (without personal data).

use http::StatusCode;

use crate::access::identity::TokenError;
use crate::access::policy::Denial;
use crate::contract::soap::{DecodeError, DecodeKind};
use crate::contract::translate::AfContractError;
use crate::gateway::upstream::UpstreamError;
use crate::model::Kalla;

/// Stable error codes of interface v1. Integrators program against these; never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Felkod {
    OkandResurs,
    MetodEjTillaten,
    FelMediatyp,
    ForStorBegaran,
    LangsamKlient,
    OgiltigXml,
    OtillatenXml,
    XmlForDjup,
    XmlForMangaElement,
    XmlForLangText,
    XmlForStoraAttribut,
    OfullstandigBegaran,
    InteSoap,
    OkandOperation,
    FaltSaknas,
    OgiltigtFalt,
    OvantatElement,
    OforstaddHeader,
    FelaktigHttp,
    KlientOkand,
    TokenSaknas,
    TokenOgiltigt,
    TokenFelAlgoritm,
    TokenOkandNyckel,
    TokenFelSignatur,
    TokenUtganget,
    TokenEjGiltigtAnnu,
    TokenFelUtfardare,
    TokenFelMottagare,
    TokenSaknarAnsprak,
    TokenForLangLivstid,
    TokenAteranvant,
    TokenFelCertifikat,
    TokenKritiskUtokning,
    TokenkontrollFull,
    FelKommun,
    HandlaggareMatcharEj,
    IngivareMatcharEj,
    SyfteMatcharEj,
    OperationEjTillaten,
    SyfteEjTillatet,
    SyfteUtanHandelser,
    LagrumEjGodtaget,
    HandlaggareEjBehorig,
    AfEjNabar,
    AfTidsgrans,
    AfFel,
    AfAvvisade,
    AfAvvisadeFragan,
    AfOverbelastad,
    AfOgiltigtSvar,
    LoggningMisslyckades,
    PrenumerationSaknas,
    LagringMisslyckades,
    ForMangaForfragningar,
    ForMangaSamtidiga,
    AfKvotSlut,
    Tidsgrans,
    InterntFel,
}

impl Felkod {
    pub fn as_str(self) -> &'static str {
        use Felkod::*;
        match self {
            OkandResurs => "OKAND_RESURS",
            MetodEjTillaten => "METOD_EJ_TILLATEN",
            FelMediatyp => "FEL_MEDIATYP",
            ForStorBegaran => "FOR_STOR_BEGARAN",
            LangsamKlient => "LANGSAM_KLIENT",
            OgiltigXml => "OGILTIG_XML",
            OtillatenXml => "OTILLATEN_XML",
            XmlForDjup => "XML_FOR_DJUP",
            XmlForMangaElement => "XML_FOR_MANGA_ELEMENT",
            XmlForLangText => "XML_FOR_LANG_TEXT",
            XmlForStoraAttribut => "XML_FOR_STORA_ATTRIBUT",
            OfullstandigBegaran => "OFULLSTANDIG_BEGARAN",
            InteSoap => "INTE_SOAP",
            OkandOperation => "OKAND_OPERATION",
            FaltSaknas => "FALT_SAKNAS",
            OgiltigtFalt => "OGILTIGT_FALT",
            OvantatElement => "OVANTAT_ELEMENT",
            OforstaddHeader => "OFORSTADD_HEADER",
            FelaktigHttp => "FELAKTIG_HTTP",
            KlientOkand => "KLIENT_OKAND",
            TokenSaknas => "TOKEN_SAKNAS",
            TokenOgiltigt => "TOKEN_OGILTIGT",
            TokenFelAlgoritm => "TOKEN_FEL_ALGORITM",
            TokenOkandNyckel => "TOKEN_OKAND_NYCKEL",
            TokenFelSignatur => "TOKEN_FEL_SIGNATUR",
            TokenUtganget => "TOKEN_UTGANGET",
            TokenEjGiltigtAnnu => "TOKEN_EJ_GILTIGT_ANNU",
            TokenFelUtfardare => "TOKEN_FEL_UTFARDARE",
            TokenFelMottagare => "TOKEN_FEL_MOTTAGARE",
            TokenSaknarAnsprak => "TOKEN_SAKNAR_ANSPRAK",
            TokenForLangLivstid => "TOKEN_FOR_LANG_LIVSTID",
            TokenAteranvant => "TOKEN_ATERANVANT",
            TokenFelCertifikat => "TOKEN_FEL_CERTIFIKAT",
            TokenKritiskUtokning => "TOKEN_KRITISK_UTOKNING",
            TokenkontrollFull => "TOKENKONTROLL_FULL",
            FelKommun => "FEL_KOMMUN",
            HandlaggareMatcharEj => "HANDLAGGARE_MATCHAR_EJ",
            IngivareMatcharEj => "INGIVARE_MATCHAR_EJ",
            SyfteMatcharEj => "SYFTE_MATCHAR_EJ",
            OperationEjTillaten => "OPERATION_EJ_TILLATEN",
            SyfteEjTillatet => "SYFTE_EJ_TILLATET",
            SyfteUtanHandelser => "SYFTE_UTAN_HANDELSER",
            LagrumEjGodtaget => "LAGRUM_EJ_GODTAGET",
            HandlaggareEjBehorig => "HANDLAGGARE_EJ_BEHORIG",
            AfEjNabar => "AF_EJ_NABAR",
            AfTidsgrans => "AF_TIDSGRANS",
            AfFel => "AF_FEL",
            AfAvvisade => "AF_AVVISADE",
            AfAvvisadeFragan => "AF_AVVISADE_FRAGAN",
            AfOverbelastad => "AF_OVERBELASTAD",
            AfOgiltigtSvar => "AF_OGILTIGT_SVAR",
            LoggningMisslyckades => "LOGGNING_MISSLYCKADES",
            PrenumerationSaknas => "PRENUMERATION_SAKNAS",
            LagringMisslyckades => "LAGRING_MISSLYCKADES",
            ForMangaForfragningar => "FOR_MANGA_FORFRAGNINGAR",
            ForMangaSamtidiga => "FOR_MANGA_SAMTIDIGA",
            AfKvotSlut => "AF_KVOT_SLUT",
            Tidsgrans => "TIDSGRANS",
            InterntFel => "INTERNT_FEL",
        }
    }

    /// The HTTP status that tells the class of the error.
    pub fn status(self) -> StatusCode {
        use Felkod::*;
        match self {
            OkandResurs | PrenumerationSaknas => StatusCode::NOT_FOUND,
            ForMangaForfragningar | ForMangaSamtidiga | AfKvotSlut => StatusCode::TOO_MANY_REQUESTS,
            MetodEjTillaten => StatusCode::METHOD_NOT_ALLOWED,
            FelMediatyp => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ForStorBegaran => StatusCode::PAYLOAD_TOO_LARGE,
            LangsamKlient => StatusCode::REQUEST_TIMEOUT,
            OgiltigXml | OtillatenXml | XmlForDjup | XmlForMangaElement | XmlForLangText
            | XmlForStoraAttribut | OfullstandigBegaran | InteSoap | OkandOperation
            | FaltSaknas | OgiltigtFalt | OvantatElement | OforstaddHeader | FelaktigHttp => {
                StatusCode::BAD_REQUEST
            }
            TokenSaknas | TokenOgiltigt | TokenFelAlgoritm | TokenOkandNyckel
            | TokenFelSignatur | TokenUtganget | TokenEjGiltigtAnnu | TokenFelUtfardare
            | TokenFelMottagare | TokenSaknarAnsprak | TokenForLangLivstid | TokenAteranvant
            | TokenFelCertifikat | TokenKritiskUtokning => StatusCode::UNAUTHORIZED,
            KlientOkand | FelKommun | HandlaggareMatcharEj | IngivareMatcharEj | SyfteMatcharEj
            | OperationEjTillaten | SyfteEjTillatet | SyfteUtanHandelser | LagrumEjGodtaget
            | HandlaggareEjBehorig => StatusCode::FORBIDDEN,
            AfEjNabar | AfOverbelastad | TokenkontrollFull | LoggningMisslyckades
            | LagringMisslyckades => StatusCode::SERVICE_UNAVAILABLE,
            AfTidsgrans | Tidsgrans => StatusCode::GATEWAY_TIMEOUT,
            AfFel | AfAvvisade | AfAvvisadeFragan | AfOgiltigtSvar => StatusCode::BAD_GATEWAY,
            InterntFel => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn kalla(self) -> Kalla {
        use Felkod::*;
        match self {
            AfEjNabar | AfTidsgrans | AfFel | AfAvvisadeFragan | AfOverbelastad
            | AfOgiltigtSvar => Kalla::Af,
            _ => Kalla::Gateway,
        }
    }

    /// Whether sending the same request again later can succeed.
    pub fn retry_can_help(self) -> bool {
        use Felkod::*;
        matches!(
            self,
            LangsamKlient
                | OfullstandigBegaran
                | AfEjNabar
                | AfTidsgrans
                | AfFel
                | AfOverbelastad
                | InterntFel
                | TokenkontrollFull
                | LoggningMisslyckades
                | LagringMisslyckades
                | ForMangaForfragningar
                | ForMangaSamtidiga
                | AfKvotSlut
                | Tidsgrans
        )
    }

    /// Whether the caller must change the request (SOAP `Client` fault) or not (`Server`).
    pub fn is_client_fault(self) -> bool {
        self.status().is_client_error()
    }

    /// The SOAP 1.1 `faultcode` (§4.4.1): `MustUnderstand` for a header entry brygga must
    /// understand and does not, `Client` when the caller must change the request, else `Server`.
    pub fn faultcode(self) -> &'static str {
        match self {
            Felkod::OforstaddHeader => "soap:MustUnderstand",
            c if c.is_client_fault() => "soap:Client",
            _ => "soap:Server",
        }
    }
}

/// A failed request: its code, a message a person can act on, and the field if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub felkod: Felkod,
    pub message: String,
    pub field: Option<String>,
    /// Seconds for a `Retry-After` header, when the cause says when to come back.
    pub retry_after: Option<u64>,
}

impl Failure {
    pub fn new(felkod: Felkod, message: impl Into<String>) -> Self {
        Self {
            felkod,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl From<DecodeError> for Failure {
    fn from(e: DecodeError) -> Self {
        let felkod = match e.kind {
            DecodeKind::Malformed => Felkod::OgiltigXml,
            DecodeKind::TooDeep => Felkod::XmlForDjup,
            DecodeKind::TooManyElements => Felkod::XmlForMangaElement,
            DecodeKind::TextTooLong => Felkod::XmlForLangText,
            DecodeKind::AttributesTooLarge => Felkod::XmlForStoraAttribut,
            DecodeKind::Forbidden => Felkod::OtillatenXml,
            DecodeKind::NotSoap => Felkod::InteSoap,
            DecodeKind::UnknownOperation => Felkod::OkandOperation,
            DecodeKind::Missing => Felkod::FaltSaknas,
            DecodeKind::Invalid => Felkod::OgiltigtFalt,
            DecodeKind::Unexpected => Felkod::OvantatElement,
            DecodeKind::MustUnderstand => Felkod::OforstaddHeader,
        };
        Failure {
            felkod,
            message: e.to_string(),
            field: e.path,
            retry_after: None,
        }
    }
}

impl From<TokenError> for Failure {
    fn from(e: TokenError) -> Self {
        let felkod = match e {
            TokenError::Missing => Felkod::TokenSaknas,
            TokenError::Malformed => Felkod::TokenOgiltigt,
            TokenError::Algorithm(_) => Felkod::TokenFelAlgoritm,
            TokenError::UnknownKey => Felkod::TokenOkandNyckel,
            TokenError::Signature => Felkod::TokenFelSignatur,
            TokenError::Expired => Felkod::TokenUtganget,
            TokenError::NotYetValid => Felkod::TokenEjGiltigtAnnu,
            TokenError::Issuer => Felkod::TokenFelUtfardare,
            TokenError::Audience => Felkod::TokenFelMottagare,
            TokenError::Claim(_) => Felkod::TokenSaknarAnsprak,
            TokenError::Lifetime(_) => Felkod::TokenForLangLivstid,
            TokenError::Replayed => Felkod::TokenAteranvant,
            TokenError::CertificateBinding => Felkod::TokenFelCertifikat,
            TokenError::CriticalExtension => Felkod::TokenKritiskUtokning,
            TokenError::ReplayStoreFull => Felkod::TokenkontrollFull,
        };
        Failure::new(felkod, e.to_string())
    }
}

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

impl From<crate::access::limit::Limited> for Failure {
    fn from(l: crate::access::limit::Limited) -> Self {
        use crate::access::limit::Limited;
        let felkod = match l {
            Limited::Client(..) | Limited::Operation(..) => Felkod::ForMangaForfragningar,
            Limited::Concurrent(_) => Felkod::ForMangaSamtidiga,
            Limited::Af(_) => Felkod::AfKvotSlut,
        };
        Failure {
            retry_after: Some(l.retry_after()),
            ..Failure::new(felkod, l.to_string())
        }
    }
}

impl From<UpstreamError> for Failure {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::BreakerOpen(d) => Failure {
                retry_after: Some(d.as_secs() + u64::from(d.subsec_nanos() > 0)),
                ..Failure::new(
                    Felkod::AfEjNabar,
                    "Arbetsförmedlingen har inte svarat på de senaste anropen; brygga väntar en stund innan nästa försök",
                )
            },
            UpstreamError::Unreachable(_) => Failure::new(
                Felkod::AfEjNabar,
                "Arbetsförmedlingen kan inte nås just nu; försök igen om en stund",
            ),
            UpstreamError::Timeout(d) => Failure::new(
                Felkod::AfTidsgrans,
                format!(
                    "Arbetsförmedlingen svarade inte inom {} ms; försök igen",
                    d.as_millis()
                ),
            ),
            UpstreamError::Saturated(d) => Failure::new(
                Felkod::Tidsgrans,
                format!(
                    "alla förbindelser till Arbetsförmedlingen var upptagna i {} ms; försök igen",
                    d.as_millis()
                ),
            ),
            UpstreamError::Busy(after) => Failure {
                retry_after: Some(after.unwrap_or(1)),
                ..Failure::new(
                    Felkod::AfOverbelastad,
                    "Arbetsförmedlingen tar inte emot fler frågor just nu; försök igen efter Retry-After",
                )
            },
            UpstreamError::Status(s) if (400..500).contains(&s) => Failure::new(
                Felkod::AfAvvisadeFragan,
                format!(
                    "Arbetsförmedlingen avvisade frågan (HTTP {s}); kontakta driften om felet består"
                ),
            ),
            UpstreamError::Status(s) => Failure::new(
                Felkod::AfFel,
                format!("Arbetsförmedlingen svarade med ett fel (HTTP {s}); försök igen senare"),
            ),
            UpstreamError::Credentials(_) => Failure::new(
                Felkod::AfAvvisade,
                "Arbetsförmedlingen godtog inte brygga's behörighet; kontakta driften",
            ),
            UpstreamError::Contract(_) => Failure::new(
                Felkod::AfOgiltigtSvar,
                "Arbetsförmedlingens svar följde inte kontraktet; kontakta driften",
            ),
        }
    }
}

impl From<AfContractError> for Failure {
    fn from(_: AfContractError) -> Self {
        Failure::new(
            Felkod::AfOgiltigtSvar,
            "Arbetsförmedlingens svar följde inte kontraktet; kontakta driften",
        )
    }
}

/// An error with its causes, e.g. to see the TLS alert behind a refused connection.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}
