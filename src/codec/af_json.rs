//! AF's JSON wire format (see `schemas/af/v1/`). Unknown properties in AF's answers are
//! tolerated and dropped; what brygga sends is exactly the schema.

use serde::{Deserialize, Serialize};

/// `POST /arbetssokande/v1/status` request body. The personnummer travels here, never in a URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusRequest {
    pub personnummer: String,
    pub from_datum: String,
    pub tom_datum: String,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namn: Option<String>,
}

/// `POST /arbetssokande/v1/status` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    pub kand_av_af: bool,
    pub inskriven: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inskrivningsdatum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kontor: Option<KontorJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sokandekategori: Option<SokandekategoriJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    pub expires_in: u64,
}

/// RFC 9457 problem details, as AF and brygga's `af` listener answer errors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type", default = "about_blank")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

fn about_blank() -> String {
    "about:blank".to_owned()
}
