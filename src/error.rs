//! Every way a request can fail: the stable Felkoder, each with its HTTP status, its class
//! and whether a retry can help, and the `Failure` that `gateway::exchange::rescue` turns into
//! a SOAP Fault. Each module that has an error of its own says, beside it, how it becomes a
//! `Failure` (`impl From<…> for Failure`), so this module depends on no other layer.
//!
//! Upstream detail never reaches the caller: it goes to the log (without personal data).

use http::StatusCode;

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
