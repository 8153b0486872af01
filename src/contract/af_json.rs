//! AF's JSON wire format (see `schemas/af/v1/`). Unknown properties in AF's answers are
//! tolerated and dropped; what brygga sends is exactly the schema.

use serde::{Deserialize, Deserializer, Serialize};

/// serde reads a struct from a JSON array as well as from an object (its fields by position);
/// AF's contract has objects only. `body` has been read into `read`: this is an error (path,
/// empty for the document, and why) where `body` has an array for an object of `read`, or
/// where `body` is no JSON value at all (serde skips members it ignores without reading their
/// numbers: `1E666` there passes serde and is no JSON number).
pub fn objects_as_sent<T: Serialize>(body: &str, read: &T) -> Result<(), (String, &'static str)> {
    let sent = serde_json::from_str::<serde_json::Value>(body)
        .map_err(|_| (String::new(), "not valid JSON (a number out of range?)"))?;
    let read = serde_json::to_value(read)
        .map_err(|_| (String::new(), "cannot be read as AF's contract"))?;
    match array_for_object(&sent, &read) {
        Some(path) => Err((path, "must be an object, not an array")),
        None => Ok(()),
    }
}

/// The path of the first array in `sent` where `read` (brygga's reading written back) has an
/// object.
fn array_for_object(sent: &serde_json::Value, read: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match (sent, read) {
        (Value::Array(_), Value::Object(_)) => Some(String::new()),
        (Value::Object(sent), Value::Object(read)) => read.iter().find_map(|(k, r)| {
            let at = array_for_object(sent.get(k)?, r)?;
            Some(if at.is_empty() {
                k.clone()
            } else if at.starts_with('[') {
                format!("{k}{at}")
            } else {
                format!("{k}.{at}")
            })
        }),
        (Value::Array(sent), Value::Array(read)) => {
            sent.iter().zip(read).enumerate().find_map(|(i, (s, r))| {
                let at = array_for_object(s, r)?;
                Some(if at.is_empty() || at.starts_with('[') {
                    format!("[{i}]{at}")
                } else {
                    format!("[{i}].{at}")
                })
            })
        }
        _ => None,
    }
}

/// A JSON integer as JSON Schema defines it: `50` and `50.0` are the same integer; `50.5` is
/// not one. (serde alone would refuse `50.0`, which the schemas accept.)
pub fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => Ok(f as i64),
        _ => Err(serde::de::Error::custom("must be an integer")),
    }
}

/// An optional integer member: absent is `None` (through `default`); present, it must be an
/// integer — the schemas allow `null` only for objects.
fn opt_integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    integer(d).map(Some)
}

/// An optional scalar member: absent is `None`; present, it must hold a value, not `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `POST /arbetssokande/v1/status` request body. The personnummer travels here, never in a URL.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusRequest {
    pub personnummer: String,
    pub from_datum: String,
    pub tom_datum: String,
    /// Who asks and why, so AF can make its own secrecy assessment and keep its own log.
    pub fragande: FragandeJson,
    /// The data categories the purpose may see: AF leaves out the rest (minimisation at the
    /// source). Absent: every category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kategorier: Option<Vec<String>>,
}

impl std::fmt::Debug for StatusRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusRequest")
            .field("personnummer", &"************")
            .field("from_datum", &self.from_datum)
            .field("tom_datum", &self.tom_datum)
            .field("fragande", &self.fragande)
            .field("kategorier", &self.kategorier)
            .finish()
    }
}

/// Who asks AF about a person, and why: as SSBTEK's AF part is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FragandeJson {
    /// The requesting organisation (the client certificate's), NNNNNN-NNNN.
    pub organisationsnummer: String,
    pub organisationsnamn: String,
    /// The case worker (HSA-id), as in `AF-EndUserId`.
    pub handlaggare: String,
    /// The case worker's unit (HSA-id), when the token names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enhet: Option<String>,
    /// The purpose code and its description.
    pub syfte: String,
    pub syfte_beskrivning: String,
    /// The legal basis the request states.
    pub lagrum: String,
    /// The case, as a keyed hash: stable for one case, never the case id in clear.
    pub arendereferens: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personuppgiftsbitrade: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KontorJson {
    pub kod: String,
    pub namn: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SokandekategoriJson {
    pub kod: String,
    pub benamning: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub from_datum: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvaktualiseringJson {
    pub datum: String,
    pub orsak_kod: String,
    pub orsak_text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AktivitetsrapportJson {
    pub datum: String,
    pub meddelande: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AKassaJson {
    pub medlem: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub namn: Option<String>,
}

/// `POST /arbetssokande/v1/status` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    pub kand_av_af: bool,
    pub inskriven: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub inskrivningsdatum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kontor: Option<KontorJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sokandekategori: Option<SokandekategoriJson>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_integer"
    )]
    pub omfattning_procent: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avaktualisering: Option<AvaktualiseringJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub senaste_aktivitetsrapport: Option<AktivitetsrapportJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a_kassa: Option<AKassaJson>,
    #[serde(default)]
    pub skyddsmarkeringar: Vec<String>,
}

/// The OAuth2 client-credentials answer of AF's token endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    #[serde(deserialize_with = "integer")]
    pub expires_in: i64,
}

impl TokenResponse {
    /// The token answer's contract: a bearer token of sensible size and lifetime.
    pub fn check(&self) -> Result<(), String> {
        if !self.token_type.eq_ignore_ascii_case("bearer") {
            return Err("token_type: must be Bearer".into());
        }
        if self.access_token.is_empty() || self.access_token.len() > 4096 {
            return Err("access_token: must be 1 to 4096 characters".into());
        }
        if !(1..=86_400).contains(&self.expires_in) {
            return Err("expires_in: must be 1 to 86400 seconds".into());
        }
        Ok(())
    }
}

/// RFC 9457 problem details, as AF and brygga's `af` listener answer errors. Every member is
/// optional.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type", default = "about_blank")]
    pub kind: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub title: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_integer"
    )]
    pub status: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub detail: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub instance: Option<String>,
}

fn about_blank() -> String {
    "about:blank".to_owned()
}

/// `POST /arbetssokande/v1/ersattningsbeslut` and `/handlingsplan` take the same body as the
/// status request.
pub type PersonRequest = StatusRequest;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BeslutJson {
    pub typ: String,
    #[serde(deserialize_with = "integer")]
    pub omfattning_procent: i64,
    pub from_datum: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub tom_datum: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UtbetalningJson {
    pub datum: String,
    /// Kronor, at most two decimals.
    pub belopp: f64,
}

/// `POST /arbetssokande/v1/ersattningsbeslut` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErsattningsbeslutResponse {
    #[serde(default)]
    pub beslut: Vec<BeslutJson>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_integer"
    )]
    pub aktivitetsstod_dagar: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub senaste_utbetalning: Option<UtbetalningJson>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AfAktivitetJson {
    pub slag: String,
    pub typ_kod: String,
    pub namn: String,
    pub from_datum: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub tom_datum: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_integer"
    )]
    pub omfattning_procent: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub anordnare: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnsvarigHandlaggareJson {
    pub namn: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub kontaktvag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandlingsplanJson {
    pub upprattad_datum: String,
    pub status: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub nasta_uppfoljning: Option<String>,
    pub hinder_for_lampligt_arbete: bool,
    pub aktiviteter: Vec<AfAktivitetJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kontor: Option<KontorJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ansvarig_handlaggare: Option<AnsvarigHandlaggareJson>,
}

/// `POST /arbetssokande/v1/handlingsplan` answer; `handlingsplan` is null when there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlingsplanResponse {
    /// Required, and `null` when there is no plan: a missing member is an error.
    #[serde(deserialize_with = "nullable")]
    pub handlingsplan: Option<HandlingsplanJson>,
    /// Protection flags of the person, as in the status answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skyddsmarkeringar: Vec<String>,
}

/// A required member that may be `null` (serde alone would treat a missing one as `null`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnordnareJson {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub organisationsnummer: Option<String>,
    pub namn: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KravAktivitetJson {
    pub slag: String,
    pub timmar_per_vecka: f64,
    pub omfattning: String,
    pub from_datum: String,
    pub tom_datum: String,
    pub anordnare: AnordnareJson,
}

/// `POST /aktivitetskrav/v1/planer` request: the municipality's plan.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AktivitetsplanRequest {
    pub personnummer: String,
    pub kommunkod: String,
    pub plan_id: String,
    pub beslutsdatum: String,
    pub aktiviteter: Vec<KravAktivitetJson>,
    /// Who sends the plan and why.
    pub fragande: FragandeJson,
}

impl std::fmt::Debug for AktivitetsplanRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AktivitetsplanRequest")
            .field("personnummer", &"************")
            .field("plan_id", &self.plan_id)
            .finish_non_exhaustive()
    }
}

/// `POST /aktivitetskrav/v1/planer` answer: AF's receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AktivitetsplanResponse {
    pub referens: String,
    pub mottagen: String,
    pub status: String,
}

/// `GET /health` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgramJson {
    pub kod: String,
    pub namn: String,
    pub from_datum: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub tom_datum: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UteblivenAktivitetJson {
    pub datum: String,
    pub aktivitet: String,
    pub meddelande: String,
}

/// One AF event.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandelseJson {
    pub handelse_id: String,
    pub typ: String,
    pub personnummer: String,
    pub tidpunkt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avaktualisering: Option<AvaktualiseringJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sokandekategori: Option<SokandekategoriJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<ProgramJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utebliven_aktivitet: Option<UteblivenAktivitetJson>,
}

impl std::fmt::Debug for HandelseJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandelseJson")
            .field("handelse_id", &self.handelse_id)
            .field("typ", &self.typ)
            .field("personnummer", &"************")
            .finish_non_exhaustive()
    }
}

/// `POST /af/v1/handelser` body: a batch of events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandelserRequest {
    pub handelser: Vec<HandelseJson>,
}
