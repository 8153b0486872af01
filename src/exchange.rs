//! The exchange, top to bottom: identify, limit, decode and validate, authorise, translate,
//! call AF, validate and minimise the answer, answer in the municipality's XML.
//!
//! `serve_kommun` runs for every request on the `kommun` listener and logs every outcome;
//! `rescue` is the one place that turns a failure into a SOAP Fault.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::Request;
use hyper::body::Incoming;
use uuid::Uuid;

use crate::codec::soap;
use crate::error::{Failure, Felkod};
use crate::gateway::Gateway;
use crate::identity::{self, CaseWorker};
use crate::model::ident::redact_digit_runs;
use crate::model::*;
use crate::policy;
use crate::server::{HttpResponse, Peer, respond};
use crate::translate;

/// The path of the SOAP endpoint.
pub const KOMMUN_PATH: &str = "/kommun/v1";

/// What is known about a request so far, for the log line and the Fault.
struct Trace {
    korrelationsid: Uuid,
    client: Option<String>,
    operation: Option<Operation>,
}

/// Serves one request of the `kommun` listener. The log line is written on every path.
pub async fn serve_kommun(
    gw: Arc<Gateway>,
    peer: Arc<Peer>,
    req: Request<Incoming>,
) -> HttpResponse {
    let started = Instant::now();
    let mut trace = Trace {
        korrelationsid: Uuid::new_v4(),
        client: None,
        operation: None,
    };
    let result = exchange(&gw, &peer, req, &mut trace).await;
    let (response, outcome) = match result {
        Ok(xml) => (
            respond(StatusCode::OK, "text/xml; charset=utf-8", xml),
            "OK",
        ),
        Err(failure) => {
            let code = failure.felkod.as_str();
            (rescue(&failure, trace.korrelationsid), code)
        }
    };
    tracing::info!(
        korrelationsid = %trace.korrelationsid,
        client = trace.client.as_deref().unwrap_or("-"),
        operation = trace.operation.map(Operation::name).unwrap_or("-"),
        outcome,
        status = response.status().as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "kommun request"
    );
    response
}

async fn exchange(
    gw: &Gateway,
    peer: &Peer,
    req: Request<Incoming>,
    trace: &mut Trace,
) -> Result<String, Failure> {
    route(&req)?;

    // 1. Identify: the organisation from the certificate, the case worker from the token.
    let client = peer
        .orgnr
        .as_ref()
        .map_err(|why| Failure::new(Felkod::KlientOkand, why.clone()))
        .and_then(|orgnr| {
            gw.config.client(orgnr).cloned().ok_or_else(|| {
                Failure::new(
                    Felkod::KlientOkand,
                    format!(
                        "organisation {orgnr} in the client certificate is not a configured client"
                    ),
                )
            })
        })?;
    trace.client = Some(client.name.clone());
    let worker: CaseWorker = identity::verify_token(
        &client.idp,
        &gw.config.jwt_audience,
        gw.config.jwt_leeway.as_secs(),
        bearer(&req)?,
    )?;

    // 2. Limit: body size and time.
    let body = read_body(gw, req).await?;

    // 3. Decode and validate against the contract.
    let request = soap::decode_request(&body, &gw.xml_limits)?;
    trace.korrelationsid = request.fraga().korrelationsid;
    trace.operation = Some(request.operation());

    // 4. Authorise: client × operation × purpose, own municipality, the token's case worker.
    policy::authorise(&client, &worker, &request).inspect_err(|d| {
        tracing::warn!(korrelationsid = %trace.korrelationsid, client = %client.name, denial = %d, "request denied");
    })?;

    // 5–8. Translate, call AF, validate and minimise its answer, encode.
    match request {
        KommunRequest::HamtaArbetssokandeStatus(fraga) => {
            let af_req = translate::status_request(&fraga);
            let af_resp = gw
                .af
                .status(&af_req, fraga.korrelationsid, worker.hsa_id.as_str())
                .await
                .inspect_err(|e| {
                    tracing::warn!(korrelationsid = %fraga.korrelationsid, error = %e, "AF call failed");
                })?;
            let status = translate::status_from_af(&af_resp).inspect_err(|e| {
                tracing::warn!(korrelationsid = %fraga.korrelationsid, error = %e, "AF answer breaks the contract");
            })?;
            let svar = HamtaArbetssokandeStatusSvar {
                korrelationsid: fraga.korrelationsid,
                status: minimise(status),
            };
            Ok(soap::encode_status_svar(&svar))
        }
    }
}

/// Only `POST /kommun/v1` with a SOAP 1.1 content type is an exchange.
fn route(req: &Request<Incoming>) -> Result<(), Failure> {
    if req.uri().path() != KOMMUN_PATH {
        return Err(Failure::new(
            Felkod::OkandResurs,
            format!("no such resource; the SOAP endpoint is POST {KOMMUN_PATH}"),
        ));
    }
    if req.method() != Method::POST {
        return Err(Failure::new(
            Felkod::MetodEjTillaten,
            format!("use POST for SOAP requests to {KOMMUN_PATH}"),
        ));
    }
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut parts = ct.split(';').map(str::trim);
    let mime = parts.next().unwrap_or("");
    let charset_ok = parts.all(|p| {
        !p.to_ascii_lowercase().starts_with("charset=")
            || p[8..].trim_matches('"').eq_ignore_ascii_case("utf-8")
    });
    if !mime.eq_ignore_ascii_case("text/xml") || !charset_ok {
        return Err(Failure::new(
            Felkod::FelMediatyp,
            "Content-Type must be text/xml; charset=utf-8 (SOAP 1.1)",
        )
        .field("Content-Type"));
    }
    Ok(())
}

fn bearer(req: &Request<Incoming>) -> Result<&str, Failure> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(identity::TokenError::Missing)?;
    let (scheme, token) = value.split_once(' ').ok_or(identity::TokenError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(identity::TokenError::Missing.into());
    }
    Ok(token.trim())
}

async fn read_body(gw: &Gateway, req: Request<Incoming>) -> Result<bytes::Bytes, Failure> {
    let max = gw.config.limits.max_body_bytes;
    let too_large = || {
        Failure::new(
            Felkod::ForStorBegaran,
            format!("the request body is larger than {max} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let limit = gw.config.limits.body_read_timeout;
    match tokio::time::timeout(limit, Limited::new(req.into_body(), max).collect()).await {
        Err(_) => Err(Failure::new(
            Felkod::LangsamKlient,
            format!(
                "the request body did not arrive within {} s",
                limit.as_secs()
            ),
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(Failure::new(
            Felkod::OgiltigXml,
            format!("the request body could not be read: {e}"),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Protected identity: address-like data (here AF's office, which places the person) leaves
/// the answer; the flag itself stays so the case worker knows why.
fn minimise(mut status: Arbetssokandestatus) -> Arbetssokandestatus {
    if status.sekretessmarkering {
        status.kontor = None;
    }
    status
}

/// Turns a failure into the HTTP status and SOAP Fault the caller sees.
pub fn rescue(failure: &Failure, korrelationsid: Uuid) -> HttpResponse {
    let code = failure.felkod;
    let fel = Fel {
        kalla: code.kalla(),
        felkod: code.as_str().to_owned(),
        meddelande: redact_digit_runs(&failure.message),
        falt: failure.field.as_deref().map(redact_digit_runs),
        korrelationsid,
        kan_forsokas_igen: code.retry_can_help(),
    };
    let mut r = respond(
        code.status(),
        "text/xml; charset=utf-8",
        soap::encode_fault(&fel, code.is_client_fault()),
    );
    if code.status() == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="invalid_token""#),
        );
    }
    if code == Felkod::MetodEjTillaten {
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    r
}
