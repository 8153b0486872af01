//! A case system's side of the exchange: mints development tokens, builds SOAP requests and
//! talks to the `kommun` listener over mutual TLS. Used by `brygga demo`, `brygga token` and
//! the tests.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::StatusCode;
use uuid::Uuid;

use crate::access::identity::{TokenClaims, es256_jwks, mint_token};
use crate::access::tls;
use crate::config::CertAndKey;
use crate::contract::soap::{self, KommunResponse};
use crate::contract::xml::XmlLimits;
use crate::error::error_chain;
use crate::model::*;

/// Signs development tokens with an identity provider's ES256 key.
#[derive(Clone)]
pub struct TokenMinter {
    key_pem: Vec<u8>,
    kid: String,
    pub issuer: String,
    pub audience: String,
}

impl TokenMinter {
    /// Reads an ES256 key (PKCS#8 PEM); the key id is its RFC 7638 thumbprint, as in the JWKS.
    pub fn load(key: &Path, issuer: &str, audience: &str) -> Result<Self, String> {
        let key_pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
        let text = String::from_utf8_lossy(&key_pem);
        let pair =
            rcgen::KeyPair::from_pem(&text).map_err(|e| format!("{}: {e}", key.display()))?;
        let (kid, _) = es256_jwks(pair.public_key_raw())?;
        Ok(Self {
            key_pem,
            kid,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// Claims valid from now for `lifetime`.
    pub fn claims(
        &self,
        sub: &str,
        kommunkod: &str,
        syfte: &str,
        lifetime: Duration,
    ) -> TokenClaims {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        TokenClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: sub.to_owned(),
            kommunkod: kommunkod.to_owned(),
            syfte: syfte.to_owned(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(lifetime.as_secs()),
            jti: Some(Uuid::new_v4().to_string()),
            cnf: None,
            enhet: None,
            funktion: None,
        }
    }

    pub fn sign(&self, claims: &TokenClaims) -> Result<String, String> {
        mint_token(&self.key_pem, Some(&self.kid), claims)
    }

    /// A token valid for five minutes.
    pub fn token(&self, sub: &str, kommunkod: &str, syfte: &str) -> Result<String, String> {
        self.sign(&self.claims(sub, kommunkod, syfte, Duration::from_secs(300)))
    }
}

/// What came back over HTTP.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl RawAnswer {
    /// Decodes the SOAP answer or Fault.
    pub fn decode(&self) -> Result<KommunResponse, String> {
        soap::decode_response(&self.body, &XmlLimits::default()).map_err(|e| e.to_string())
    }
}

/// An mTLS client of the `kommun` listener.
#[derive(Clone)]
pub struct KommunClient {
    http: reqwest::Client,
    pub url: String,
}

impl KommunClient {
    /// `url` is the full endpoint (`https://localhost:8443/kommun/v1`); `identity` is the case
    /// system's client certificate (None only to test refusals).
    pub fn new(
        url: &str,
        server_ca: &Path,
        identity: Option<(&Path, &Path)>,
    ) -> Result<Self, String> {
        let cas = tls::load_certs(server_ca).map_err(|e| e.to_string())?;
        let identity = match identity {
            Some((cert, key)) => Some(CertAndKey {
                chain: tls::load_certs(cert).map_err(|e| e.to_string())?,
                key: tls::load_key(key).map_err(|e| e.to_string())?,
            }),
            None => None,
        };
        Self::with_identity(url, &cas, identity)
    }

    pub fn with_identity(
        url: &str,
        server_cas: &[rustls_pki_types::CertificateDer<'static>],
        identity: Option<CertAndKey>,
    ) -> Result<Self, String> {
        let cfg = tls::client_config(server_cas, identity.map(|i| (i.chain, i.key)))
            .map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(cfg)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            url: url.to_owned(),
        })
    }

    /// Sends any body with the SOAP content type.
    pub async fn post_raw(
        &self,
        token: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Result<RawAnswer, String> {
        self.post_with_type(token, body, "text/xml; charset=utf-8")
            .await
    }

    pub async fn post_with_type(
        &self,
        token: Option<&str>,
        body: impl Into<Bytes>,
        content_type: &str,
    ) -> Result<RawAnswer, String> {
        self.post_with_headers(token, body, content_type, &[]).await
    }

    /// The same with extra headers (a `traceparent`, say).
    pub async fn post_with_headers(
        &self,
        token: Option<&str>,
        body: impl Into<Bytes>,
        content_type: &str,
        headers: &[(&str, &str)],
    ) -> Result<RawAnswer, String> {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", content_type)
            .header("SOAPAction", "\"\"")
            .body(body.into());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| error_chain(&e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| error_chain(&e))?;
        Ok(RawAnswer {
            status,
            headers,
            body,
        })
    }

    /// Sends a typed request.
    pub async fn call(&self, token: &str, req: &KommunRequest) -> Result<RawAnswer, String> {
        self.post_raw(Some(token), soap::encode_request(req)).await
    }
}

/// A complete, valid `Fraga` for an example municipality and person.
pub fn example_fraga(
    orgnr: &str,
    namn: &str,
    handlaggare: &str,
    personnummer: &str,
    syfte: &str,
) -> Result<Fraga, String> {
    let date = |s| crate::model::ident::parse_date(s).map_err(|e| e.to_string());
    Ok(Fraga {
        korrelationsid: Uuid::new_v4(),
        ingivare: Ingivare {
            organisationsnummer: Organisationsnummer::parse(orgnr).map_err(|e| e.to_string())?,
            namn: namn.to_owned(),
            handlaggare: HsaId::parse(handlaggare).map_err(|e| e.to_string())?,
        },
        arendeidentitet: "EB-2026-004711".to_owned(),
        personidentitet: Personnummer::parse(personnummer).map_err(|e| e.to_string())?,
        tidsperiod: Tidsperiod::new(date("2026-06-01")?, date("2026-11-30")?).ok_or("period")?,
        syfte: syfte.to_owned(),
        lagrum: example_lagrum(syfte).to_owned(),
        personuppgiftsbitrade: None,
    })
}

/// The legal basis a case system states for each example purpose (as the example
/// configuration accepts it).
pub fn example_lagrum(syfte: &str) -> &'static str {
    match syfte {
        "AKT-PLANERING" | "AKT-UPPFOLJNING" => {
            "Socialtjänstlagen, bestämmelserna om aktivitetskrav för den som får försörjningsstöd (i kraft 1 juli 2026)"
        }
        _ => "11 kap. 11 a § socialtjänstlagen; 5 § förordningen (2008:975)",
    }
}

/// A plan with three activities of different kinds, 40 hours per week at most at any time.
pub fn example_plan() -> Result<Aktivitetsplan, String> {
    let date = |s| crate::model::ident::parse_date(s).map_err(|e| e.to_string());
    let period = |from, tom| -> Result<Tidsperiod, String> {
        Tidsperiod::new(date(from)?, date(tom)?).ok_or_else(|| "period".to_owned())
    };
    Ok(Aktivitetsplan {
        plan_id: "AKP-0180-2026-0042".to_owned(),
        beslutsdatum: date("2026-11-20")?,
        aktiviteter: vec![
            KravAktivitet {
                slag: AktivitetskravSlag::Sprak,
                timmar_per_vecka: Tiondelstimmar(150),
                omfattning: Omfattning::Heltid,
                period: period("2026-12-01", "2027-05-31")?,
                anordnare: Anordnare {
                    organisationsnummer: None,
                    namn: "Komvux Stockholm".to_owned(),
                },
            },
            KravAktivitet {
                slag: AktivitetskravSlag::KommunalVerksamhet,
                timmar_per_vecka: Tiondelstimmar(200),
                omfattning: Omfattning::Heltid,
                period: period("2026-12-01", "2027-02-28")?,
                anordnare: Anordnare {
                    organisationsnummer: Some(
                        Organisationsnummer::parse("2120000142").map_err(|e| e.to_string())?,
                    ),
                    namn: "Stockholms stad, arbetsmarknadsförvaltningen".to_owned(),
                },
            },
            KravAktivitet {
                slag: AktivitetskravSlag::Jobbsokande,
                timmar_per_vecka: Tiondelstimmar(50),
                omfattning: Omfattning::Heltid,
                period: period("2026-12-01", "2027-05-31")?,
                anordnare: Anordnare {
                    organisationsnummer: None,
                    namn: "Jobbtorg Stockholm".to_owned(),
                },
            },
        ],
    })
}
