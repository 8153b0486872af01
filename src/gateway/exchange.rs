//! The exchange, top to bottom: identify, limit, decode and validate, authorise, translate,
//! call AF, validate and minimise the answer, answer in the municipality's XML.
//!
//! `serve_kommun` runs for every request on the `kommun` listener and logs every outcome;
//! `rescue` is the one place that turns a failure into a SOAP Fault.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, StatusCode, header};
use hyper::Request;
use hyper::body::Incoming;
use uuid::Uuid;

use crate::access::identity::{self, CaseWorker};
use crate::config::Client;
use crate::contract::soap;
use crate::error::{Failure, Felkod};
use crate::gateway::server::{HttpResponse, Peer, respond};
use crate::gateway::state::Gateway;
use crate::gateway::upstream::{self, UpstreamError};
use crate::model::ident::redact_digit_runs;
use crate::model::*;
use crate::store::audit::{Action, Entry};
use crate::{access::policy, contract::translate};

/// The log target operators filter on (`[log] level = "info,brygga::exchange=debug"`), kept as it was
/// before the module moved into `gateway/`.
const LOG_TARGET: &str = "brygga::exchange";

/// The path of the SOAP endpoint.
pub const KOMMUN_PATH: &str = "/kommun/v1";

/// What is known about a request so far: for the log line, the Fault and the audit record.
#[derive(Debug, Clone, Default)]
struct Trace {
    korrelationsid: Uuid,
    /// The request is for the SOAP endpoint: from here on it is an access or a refusal and
    /// gets an audit record.
    audited: bool,
    client: Option<String>,
    /// From the client certificate, even when it names no configured client.
    organisation: Option<String>,
    operation: Option<Operation>,
    handlaggare: Option<String>,
    /// The case worker's unit and function, from the token.
    enhet: Option<String>,
    funktion: Option<String>,
    arende: Option<String>,
    /// The person's pseudonym in the `audit` domain.
    subject: Option<String>,
    syfte: Option<String>,
    /// The legal basis configured for the purpose.
    lagrum: Option<String>,
    kategorier: Vec<Datakategori>,
    personuppgiftsbitrade: Option<String>,
    /// AF marked the person's identity as protected.
    skyddad_identitet: bool,
    af_status: Option<u16>,
    /// The operation a request that failed to decode was for, when that much was read.
    attempted: Option<Operation>,
    /// The caller's W3C `traceparent`, when it sent a valid one.
    incoming_trace: Option<crate::ops::tracectx::TraceContext>,
    /// The trace id the AF call carried.
    trace_id: Option<String>,
    /// The AF call as a span: its id (sent to AF as the parent), start, end, outcome.
    af_span: Option<AfSpan>,
}

#[derive(Debug, Clone)]
struct AfSpan {
    span_id: String,
    start: std::time::SystemTime,
    end: std::time::SystemTime,
    felkod: Option<Felkod>,
}

/// Serves one request of the `kommun` listener.
///
/// The exchange runs in its own task: if the caller goes away, the AF call still completes
/// and the outcome is still logged and audited; a panic becomes `INTERNT_FEL` instead of a
/// dropped stream.
pub async fn serve_kommun(
    gw: Arc<Gateway>,
    peer: Arc<Peer>,
    req: Request<Incoming>,
) -> HttpResponse {
    // The published contract is public: serving it is no access to record.
    if (req.method() == Method::GET || req.method() == Method::HEAD)
        && req.uri().path() == KOMMUN_PATH
        && let Some(contract) = contract(req.uri().query())
    {
        return if req.method() == Method::HEAD {
            crate::gateway::server::head_only(contract)
        } else {
            contract
        };
    }
    let started = Instant::now();
    let started_at = std::time::SystemTime::now();
    // Kept outside the task, so that even a panic inside it leaves a record.
    let (gw_outside, organisation) = (
        gw.clone(),
        peer.orgnr.as_ref().ok().map(ToString::to_string),
    );
    let task = tokio::spawn(async move {
        let mut trace = Trace {
            korrelationsid: Uuid::new_v4(),
            ..Trace::default()
        };
        // One deadline over the whole exchange, whatever step is slow.
        let deadline = gw.config.limits.operation_deadline;
        let result =
            match tokio::time::timeout(deadline, exchange(&gw, &peer, req, &mut trace)).await {
                Ok(result) => result,
                Err(_) => Err(Failure::new(
                    Felkod::Tidsgrans,
                    format!(
                        "the request did not complete within {} ms; try again",
                        deadline.as_millis()
                    ),
                )),
            };
        // Nothing leaves before its record is durable.
        let result = record(&gw, &trace, result, started).await;
        let response = match &result {
            Ok(xml) => respond(StatusCode::OK, "text/xml; charset=utf-8", xml.clone()),
            Err(failure) => rescue(
                failure,
                trace.korrelationsid,
                trace.operation.or(trace.attempted),
            ),
        };
        let felkod = result.as_ref().err().map(|f| f.felkod);
        // Every request has its trace, whether or not it reached AF.
        if trace.trace_id.is_none() {
            trace.trace_id = Some(trace_id_of(&trace));
        }
        log_outcome(&trace, felkod, response.status(), started);
        let operation = trace.operation.or(trace.attempted).map(Operation::name);
        gw.metrics.request(
            operation.unwrap_or("-"),
            trace.client.as_deref(),
            felkod,
            started.elapsed(),
        );
        export_spans(&gw, &trace, felkod, response.status(), started_at);
        response
    });
    match task.await {
        Ok(response) => response,
        Err(e) => {
            let trace = Trace {
                korrelationsid: Uuid::new_v4(),
                audited: true,
                organisation,
                ..Trace::default()
            };
            tracing::error!(target: LOG_TARGET, korrelationsid = %redact_digit_runs(&trace.korrelationsid.to_string()), panicked = e.is_panic(), "the exchange task failed");
            let failure = Failure::new(
                Felkod::InterntFel,
                "an internal error occurred; the request was not completed",
            );
            // What it was about is lost with the task; that it happened is not.
            let _ = record(&gw_outside, &trace, Err(failure.clone()), started).await;
            gw_outside
                .metrics
                .request("-", None, Some(failure.felkod), started.elapsed());
            rescue(&failure, trace.korrelationsid, None)
        }
    }
}

/// The exchange as spans for the OpenTelemetry collector, when one is configured: brygga's
/// server span (child of the caller's), and the AF call as its child.
fn export_spans(
    gw: &Gateway,
    trace: &Trace,
    felkod: Option<Felkod>,
    status: StatusCode,
    started_at: std::time::SystemTime,
) {
    use crate::ops::telemetry::{Kind, Span};
    let Some(exporter) = &gw.telemetry else {
        return;
    };
    // The caller said not to sample this trace.
    if trace
        .incoming_trace
        .as_ref()
        .is_some_and(|t| t.flags == "00")
    {
        return;
    }
    let trace_id = trace_id_of(trace);
    let operation = trace
        .operation
        .or(trace.attempted)
        .map(Operation::name)
        .unwrap_or("-");
    let client = trace.client.clone().unwrap_or_else(|| "-".into());
    let outcome = felkod.map(Felkod::as_str).unwrap_or("OK");
    let server_span = crate::ops::tracectx::new_span_id();
    if let Some(af) = &trace.af_span {
        exporter.record(Span {
            trace_id: trace_id.clone(),
            span_id: af.span_id.clone(),
            parent_id: Some(server_span.clone()),
            name: operation,
            kind: Kind::Client,
            start: af.start,
            end: af.end,
            attributes: vec![
                ("peer.service", "AF".into()),
                ("brygga.operation", operation.into()),
                (
                    "brygga.outcome",
                    af.felkod.map(Felkod::as_str).unwrap_or("OK").into(),
                ),
            ],
            error: af.felkod.map(Felkod::as_str),
        });
    }
    exporter.record(Span {
        trace_id,
        span_id: server_span,
        parent_id: trace
            .incoming_trace
            .as_ref()
            .and_then(|t| t.parent_id.clone()),
        name: operation,
        kind: Kind::Server,
        start: started_at,
        end: std::time::SystemTime::now(),
        attributes: vec![
            ("brygga.client", client.into()),
            ("brygga.operation", operation.into()),
            ("brygga.outcome", outcome.into()),
            (
                "http.response.status_code",
                crate::ops::telemetry::Attribute::Int(i64::from(status.as_u16())),
            ),
        ],
        // A refusal is the caller's to fix, not a failure of brygga's.
        error: felkod
            .filter(|f| f.status().is_server_error())
            .map(Felkod::as_str),
    });
}

/// The trace a request belongs to: the one its AF call carried, else the caller's, else one
/// named after its Korrelationsid.
fn trace_id_of(trace: &Trace) -> String {
    trace.trace_id.clone().unwrap_or_else(|| {
        trace
            .incoming_trace
            .clone()
            .unwrap_or_else(|| crate::ops::tracectx::TraceContext::start(trace.korrelationsid))
            .trace_id
    })
}

fn log_outcome(trace: &Trace, felkod: Option<Felkod>, status: StatusCode, started: Instant) {
    // The Korrelationsid is the caller's text: a UUID could be made to spell a personnummer.
    tracing::info!(target: LOG_TARGET,
        korrelationsid = %redact_digit_runs(&trace.korrelationsid.to_string()),
        trace_id = trace.trace_id.as_deref().unwrap_or("-"),
        client = trace.client.as_deref().unwrap_or("-"),
        operation = trace.operation.map(Operation::name).unwrap_or("-"),
        outcome = felkod.map(Felkod::as_str).unwrap_or("OK"),
        status = status.as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "kommun request"
    );
}

/// Appends the audit record of an access or refusal and waits until it is durable. An answer
/// whose record cannot be written becomes `LOGGNING_MISSLYCKADES`: nothing is disclosed
/// unrecorded. A refusal is sent even when its record fails (it discloses nothing).
async fn record(
    gw: &Gateway,
    trace: &Trace,
    result: Result<String, Failure>,
    started: Instant,
) -> Result<String, Failure> {
    if !trace.audited {
        return result;
    }
    let felkod = result.as_ref().err().map(|f| f.felkod);
    // A subscription names the person to brygga but discloses nothing about them.
    let carries_personal_data =
        trace.subject.is_some() && !trace.operation.is_some_and(Operation::is_local);
    let action = match felkod {
        None if carries_personal_data => Action::Disclose,
        None => Action::Read,
        // AF was asked, but nothing left the gateway.
        Some(code) if code.kalla() == Kalla::Af => Action::Read,
        // Refused or failed in the gateway.
        Some(_) => Action::Deny,
    };
    let direction = match trace.operation {
        Some(Operation::AnmalAktivitetsplan) => "kommun-till-af",
        Some(op) if op.is_local() => "kommun-till-brygga",
        _ => "af-till-kommun",
    };
    let entry = Entry {
        time: crate::store::audit::now(),
        korrelationsid: crate::store::audit::recorded_korrelationsid(&trace.korrelationsid),
        direction: direction.to_owned(),
        operation: trace
            .operation
            .map(Operation::name)
            .unwrap_or("-")
            .to_owned(),
        action,
        organisation: trace.organisation.clone().unwrap_or_else(|| "-".into()),
        handlaggare: trace.handlaggare.clone(),
        arende: trace.arende.clone(),
        subject: trace.subject.clone(),
        syfte: trace.syfte.clone(),
        lagrum: trace.lagrum.clone(),
        kategorier: if felkod.is_none() {
            trace
                .kategorier
                .iter()
                .map(|d| d.code().to_owned())
                .collect()
        } else {
            Vec::new()
        },
        outcome: felkod.map(Felkod::as_str).unwrap_or("OK").to_owned(),
        af_status: trace.af_status,
        duration_ms: started.elapsed().as_millis() as u64,
        genesis: None,
        enhet: trace.enhet.clone(),
        funktion: trace.funktion.clone(),
        personuppgiftsbitrade: trace.personuppgiftsbitrade.clone(),
        skyddad_identitet: trace.skyddad_identitet,
        pruned: None,
        sample: None,
        review: None,
    };
    match (gw.audit.append(entry).await, result) {
        (Ok(_), result) => result,
        (Err(e), Ok(_)) => {
            tracing::error!(target: LOG_TARGET, korrelationsid = %redact_digit_runs(&trace.korrelationsid.to_string()), error = %e, "the audit record could not be written; the answer is withheld");
            Err(Failure::new(
                Felkod::LoggningMisslyckades,
                "the access could not be recorded in the audit log, so nothing was disclosed; try again later",
            ))
        }
        (Err(e), Err(f)) => {
            tracing::error!(target: LOG_TARGET, korrelationsid = %redact_digit_runs(&trace.korrelationsid.to_string()), error = %e, "the audit record of a refusal could not be written");
            Err(f)
        }
    }
}

async fn exchange(
    gw: &Gateway,
    peer: &Peer,
    req: Request<Incoming>,
    trace: &mut Trace,
) -> Result<String, Failure> {
    // From here every request is an access or a refusal with its record, whatever its fate
    // (a wrong path or method, a wrong content type included).
    trace.audited = true;
    trace.incoming_trace = crate::ops::tracectx::TraceContext::from_headers(req.headers());
    // 1. Identify: the organisation from the certificate, the case worker from the token.
    trace.organisation = peer.orgnr.as_ref().ok().map(ToString::to_string);
    trace.client = peer
        .orgnr
        .as_ref()
        .ok()
        .and_then(|o| gw.config.client(o))
        .map(|c| c.name.clone());
    route(&req)?;
    let client = identify_client(gw, peer)?;
    trace.client = Some(client.name.clone());
    // 2. Limit: this client's rate and requests under way (the place is held to the end).
    let _place = gw.limiter.admit(&client.name).map_err(Failure::from)?;
    let thumbprint = peer
        .certificate
        .as_ref()
        .map(identity::certificate_thumbprint);
    let presenter = identity::Presenter {
        client: &client.name,
        idp: &client.idp,
        binding_required: client.bind_tokens_to_certificate,
        certificate: thumbprint.as_deref(),
    };
    let token = bearer(&req)?;
    if client.idp.is_remote()
        && let Ok(header) = jsonwebtoken::decode_header(token)
    {
        // A key the identity provider has just rotated in.
        client
            .idp
            .refresh_for_unknown_kid(header.kid.as_deref())
            .await;
    }
    let worker: CaseWorker = gw
        .tokens
        .verify(&presenter, &gw.config.token_rules, token)?;
    trace.handlaggare = Some(worker.hsa_id.as_str().to_owned());
    trace.enhet = worker.enhet.as_ref().map(|e| e.as_str().to_owned());
    trace.funktion = worker.funktion.clone();

    // Body size and time.
    let body = read_body(gw, req).await?;

    // 3. Decode and validate against the contract.
    let request = soap::decode_request(&body, &gw.xml_limits).map_err(|e| {
        trace.attempted = e.operation;
        // The caller's id, when it could be read: the case system matches the Fault to it.
        if let Some(id) = e.korrelationsid {
            trace.korrelationsid = id;
        }
        Failure::from(e)
    })?;
    trace.korrelationsid = request.korrelationsid();
    trace.operation = Some(request.operation());
    let syfte = request.caller().and_then(|c| gw.config.syften.get(c.syfte));
    if let Some(c) = request.caller() {
        trace.arende = Some(c.arendeidentitet.to_owned());
        trace.syfte = Some(c.syfte.to_owned());
        // What the caller stated: the record keeps it (it must be the purpose's, below).
        trace.lagrum = c.lagrum.map(str::to_owned);
    }
    if let Some(f) = request.fraga() {
        trace.subject = gw.pseudonyms().pseudonym("audit", &f.personidentitet);
        trace.personuppgiftsbitrade = f.personuppgiftsbitrade.clone();
    }

    // The operation's own rate for this client.
    gw.limiter
        .admit_operation(&client.name, request.operation())
        .map_err(Failure::from)?;

    // 4. Authorise: client × operation × purpose, own municipality, the token's case worker.
    policy::authorise(&client, &worker, &request, syfte).map_err(|d| {
        let mut f = Failure::from(d);
        // ListaPrenumerationer carries the caller's fields at the top, not in a Fraga.
        if request.fraga().is_none() {
            f.field = f.field.map(|p| p.trim_start_matches("Fraga/").to_owned());
        }
        f
    }).inspect_err(|f| {
        tracing::warn!(target: LOG_TARGET, korrelationsid = %redact_digit_runs(&trace.korrelationsid.to_string()), client = %client.name, felkod = f.felkod.as_str(), "request denied");
    })?;

    // Subscriptions are brygga's own: no AF call, and nothing about the person is answered.
    if request.operation().is_local() {
        let answer = subscribe(gw, &client, request).await?;
        return Ok(soap::encode_answer(&answer));
    }

    // The quota towards AF, shared by all clients (Ping's health check is outside it).
    if request.operation() != Operation::Ping {
        gw.limiter.admit_af().map_err(Failure::from)?;
    }

    // 5–8. Translate, call AF, validate and minimise its answer, encode.
    let kategorier = syfte.map(|s| s.kategorier.clone());
    let operation = request.operation();
    // The caller's trace, or one named after the Korrelationsid, goes on to AF.
    let context = trace
        .incoming_trace
        .clone()
        .unwrap_or_else(|| crate::ops::tracectx::TraceContext::start(trace.korrelationsid));
    let af_span_id = crate::ops::tracectx::new_span_id();
    let traceparent = context.outgoing(&af_span_id);
    trace.trace_id = Some(context.trace_id);
    let af_started = Instant::now();
    let af_started_at = std::time::SystemTime::now();
    // AF is told who asks and why, and asked only for what the purpose may see.
    let asking = match (request.fraga(), syfte) {
        (Some(f), Some(s)) => Some(Asking {
            fragande: fragande(gw, &client, &worker, f, s)?,
            kategorier: {
                let mut k: Vec<String> = s.kategorier.iter().map(|d| d.code().to_owned()).collect();
                k.sort();
                k
            },
        }),
        _ => None,
    };
    let answer = call_af(
        gw,
        &client,
        &worker,
        request,
        asking,
        &traceparent,
        &mut trace.af_status,
    )
    .await;
    let af_felkod = answer.as_ref().err().map(|f| f.felkod);
    gw.metrics
        .af_call(operation.name(), af_felkod, af_started.elapsed());
    trace.af_span = Some(AfSpan {
        span_id: af_span_id,
        start: af_started_at,
        end: std::time::SystemTime::now(),
        felkod: af_felkod,
    });
    let answer = answer?;
    trace.skyddad_identitet = policy::protected_identity(&answer);
    // Only what the purpose may see leaves; a purpose without a list sees nothing optional
    // (Ping carries no personal data).
    let answer = match &kategorier {
        Some(k) => policy::minimise(answer, k),
        None => answer,
    };
    trace.kategorier = policy::disclosed(&answer);
    Ok(soap::encode_answer(&answer))
}

/// Registers, ends or lists the client's subscriptions to AF's events. The person is stored as
/// a pseudonym of the `subscriptions` domain, found under every key of it.
async fn subscribe(
    gw: &Gateway,
    client: &Client,
    request: KommunRequest,
) -> Result<KommunAnswer, Failure> {
    let store = gw.subscriptions.clone();
    let client_name = client.name.clone();
    let subjects = request
        .fraga()
        .map(|f| gw.pseudonyms().all("subscriptions", &f.personidentitet))
        .unwrap_or_default();
    let now = time::OffsetDateTime::now_utc();
    // A purpose that may see none of what AF's events carry would follow the person for
    // nothing it may receive.
    if let KommunRequest::RegistreraPrenumeration(f) = &request
        && !gw.config.syften.get(&f.syfte).is_some_and(|s| {
            crate::access::policy::EVENT_CATEGORIES
                .iter()
                .any(|k| s.kategorier.contains(k))
        })
    {
        return Err(Failure::new(
            Felkod::SyfteUtanHandelser,
            format!(
                "the purpose {} may see none of the categories AF's events carry, so it may not follow a person's events",
                f.syfte
            ),
        )
        .field("Fraga/Syfte"));
    }
    if let KommunRequest::RegistreraPrenumeration(f) = &request
        && f.tidsperiod.tom() < now.date()
    {
        return Err(Failure::new(
            Felkod::OgiltigtFalt,
            "a subscription must end today or later: Tom is the last day events are delivered",
        )
        .field("Fraga/Tidsperiod/Tom"));
    }
    let failed = |e: String| {
        tracing::error!(target: LOG_TARGET, error = %e, "the subscription store failed");
        Failure::new(
            Felkod::LagringMisslyckades,
            "the subscription could not be stored; nothing was changed, try again later",
        )
    };
    let answer = tokio::task::spawn_blocking(move || -> Result<KommunAnswer, Failure> {
        let stored = |e: crate::store::schema::StoreError| failed(e.to_string());
        Ok(match request {
            KommunRequest::RegistreraPrenumeration(f) => {
                let r = store
                    .register(
                        &client_name,
                        &f.arendeidentitet,
                        &f.syfte,
                        &subjects,
                        f.tidsperiod,
                        now,
                    )
                    .map_err(stored)?;
                KommunAnswer::RegistreraPrenumeration(PrenumerationSvar {
                    korrelationsid: f.korrelationsid,
                    prenumeration: r.prenumeration,
                })
            }
            KommunRequest::AvslutaPrenumeration(f) => {
                let ended = store
                    .end(&client_name, &f.arendeidentitet, &subjects, now)
                    .map_err(stored)?
                    .ok_or_else(|| {
                        Failure::new(
                            Felkod::PrenumerationSaknas,
                            "this client has no active subscription for this case and person",
                        )
                    })?;
                KommunAnswer::AvslutaPrenumeration(PrenumerationSvar {
                    korrelationsid: f.korrelationsid,
                    prenumeration: ended,
                })
            }
            KommunRequest::ListaPrenumerationer(l) => {
                KommunAnswer::ListaPrenumerationer(ListaPrenumerationerSvar {
                    korrelationsid: l.korrelationsid,
                    prenumerationer: store
                        .list(&client_name, &l.arendeidentitet)
                        .map_err(stored)?,
                })
            }
            other => {
                return Err(Failure::new(
                    Felkod::InterntFel,
                    format!(
                        "{} is not a subscription operation",
                        other.operation().name()
                    ),
                ));
            }
        })
    })
    .await
    .map_err(|e| failed(e.to_string()))??;
    // Ending a subscription erased what it had not been delivered: from the files too.
    if matches!(answer, KommunAnswer::AvslutaPrenumeration(_)) {
        gw.erasures_due
            .store(true, std::sync::atomic::Ordering::Release);
        gw.delivery_wake.notify_one();
    }
    Ok(answer)
}

/// Steps 5–8 for each operation: the AF request, AF's answer checked against its contract,
/// and the municipal answer.
/// What goes to AF with a person request besides the person: who asks and why, and the data
/// categories the purpose may see.
struct Asking {
    fragande: crate::contract::af_json::FragandeJson,
    kategorier: Vec<String>,
}

/// Who asks, as AF is told (see [`translate::fragande`]), with the case as a keyed reference.
fn fragande(
    gw: &Gateway,
    client: &Client,
    worker: &CaseWorker,
    fraga: &Fraga,
    syfte: &crate::config::Syfte,
) -> Result<crate::contract::af_json::FragandeJson, Failure> {
    let arendereferens = gw
        .pseudonyms()
        .case_reference(&client.orgnr, &fraga.arendeidentitet)
        .ok_or_else(|| {
            Failure::new(
                Felkod::InterntFel,
                "no pseudonym key for the domain 'audit' to make AF's case reference with",
            )
        })?;
    Ok(translate::fragande(
        &client.orgnr,
        fraga,
        &worker.hsa_id,
        worker.enhet.as_ref(),
        (&syfte.kod, &syfte.beskrivning),
        arendereferens,
    ))
}

async fn call_af(
    gw: &Gateway,
    client: &Client,
    worker: &CaseWorker,
    request: KommunRequest,
    asking: Option<Asking>,
    traceparent: &crate::ops::tracectx::Outgoing,
    af_status: &mut Option<u16>,
) -> Result<KommunAnswer, Failure> {
    let end_user = worker.hsa_id.as_str();
    let korrelationsid = request.korrelationsid();
    // AF answered (when the call got that far); its contract is checked after.
    if request.operation() != Operation::Ping {
        *af_status = Some(200);
    }
    let logged = |e: UpstreamError| {
        *af_status = match &e {
            UpstreamError::Status(n) | UpstreamError::Credentials(n) => Some(*n),
            UpstreamError::Busy(_) => Some(429),
            UpstreamError::Contract(_) => Some(200),
            UpstreamError::Unreachable(_)
            | UpstreamError::Timeout(_)
            | UpstreamError::Saturated(_)
            | UpstreamError::BreakerOpen(_) => None,
        };
        tracing::warn!(target: LOG_TARGET, korrelationsid = %redact_digit_runs(&korrelationsid.to_string()), error = %e, "AF call failed");
        Failure::from(e)
    };
    let checked = |e: translate::AfContractError| {
        tracing::warn!(target: LOG_TARGET, korrelationsid = %redact_digit_runs(&korrelationsid.to_string()), error = %e, "AF answer breaks the contract");
        Failure::from(e)
    };
    // Every person request carries who asks; authorisation made sure there is a purpose.
    let asked = || {
        asking
            .ok_or_else(|| Failure::new(Felkod::InterntFel, "a person request without its purpose"))
    };
    Ok(match request {
        KommunRequest::HamtaArbetssokandeStatus(f) => {
            let r = gw
                .af
                .post_json(
                    upstream::STATUS_PATH,
                    &asked()
                        .map(|a| translate::person_request(&f, a.fragande, Some(a.kategorier)))?,
                    korrelationsid,
                    end_user,
                    traceparent,
                )
                .await
                .map_err(logged)?;
            let status = translate::status_from_af(&r).map_err(checked)?;
            KommunAnswer::Status(HamtaArbetssokandeStatusSvar {
                korrelationsid,
                status,
            })
        }
        KommunRequest::HamtaErsattningsbeslut(f) => {
            let r = gw
                .af
                .post_json(
                    upstream::ERSATTNINGSBESLUT_PATH,
                    &asked()
                        .map(|a| translate::person_request(&f, a.fragande, Some(a.kategorier)))?,
                    korrelationsid,
                    end_user,
                    traceparent,
                )
                .await
                .map_err(logged)?;
            let ersattningar = translate::ersattningar_from_af(&r).map_err(checked)?;
            KommunAnswer::Ersattningsbeslut(HamtaErsattningsbeslutSvar {
                korrelationsid,
                ersattningar,
            })
        }
        KommunRequest::HamtaHandlingsplan(f) => {
            let r = gw
                .af
                .post_json(
                    upstream::HANDLINGSPLAN_PATH,
                    &asked()
                        .map(|a| translate::person_request(&f, a.fragande, Some(a.kategorier)))?,
                    korrelationsid,
                    end_user,
                    traceparent,
                )
                .await
                .map_err(logged)?;
            let handlingsplan = translate::handlingsplan_from_af(&r).map_err(checked)?;
            KommunAnswer::Handlingsplan(HamtaHandlingsplanSvar {
                korrelationsid,
                handlingsplan,
            })
        }
        KommunRequest::AnmalAktivitetsplan(f, plan) => {
            let fragande = asked()?.fragande;
            let body = translate::aktivitetsplan_request(&f, client.kommunkod, &plan, fragande);
            let r = gw
                .af
                .post_json(
                    upstream::AKTIVITETSPLAN_PATH,
                    &body,
                    korrelationsid,
                    end_user,
                    traceparent,
                )
                .await
                .map_err(logged)?;
            let kvittens = translate::kvittens_from_af(&r).map_err(checked)?;
            KommunAnswer::Aktivitetsplan(AnmalAktivitetsplanSvar {
                korrelationsid,
                kvittens,
            })
        }
        KommunRequest::Ping(id) => {
            let (status, ms) = gw.af.health().await;
            KommunAnswer::Ping(PingSvar {
                korrelationsid: id,
                tjanster: vec![Tjanst {
                    namn: "Arbetsförmedlingen".into(),
                    status,
                    svarstid_ms: Some(ms),
                }],
            })
        }
        local @ (KommunRequest::RegistreraPrenumeration(_)
        | KommunRequest::AvslutaPrenumeration(_)
        | KommunRequest::ListaPrenumerationer(_)) => {
            return Err(Failure::new(
                Felkod::InterntFel,
                format!("{} does not call AF", local.operation().name()),
            ));
        }
    })
}

fn identify_client(gw: &Gateway, peer: &Peer) -> Result<Arc<Client>, Failure> {
    let orgnr = peer
        .orgnr
        .as_ref()
        .map_err(|why| Failure::new(Felkod::KlientOkand, why.clone()))?;
    gw.config.client(orgnr).cloned().ok_or_else(|| {
        Failure::new(
            Felkod::KlientOkand,
            format!("organisation {orgnr} in the client certificate is not a configured client"),
        )
    })
}

const WSDL: &str = include_str!("../../schemas/kommun/v1/brygga-kommun-v1.wsdl");
const XSD: &str = include_str!("../../schemas/kommun/v1/brygga-kommun-v1.xsd");
const XSD_NAME: &str = "brygga-kommun-v1.xsd";

/// The WSDL as served: its XSD reference rewritten to point at the gateway. Built once; each
/// answer shares these bytes, so a request for it costs no copy (it comes before the client
/// is identified).
static SERVED_WSDL: std::sync::LazyLock<bytes::Bytes> = std::sync::LazyLock::new(|| {
    WSDL.replace(
        &format!("schemaLocation=\"{XSD_NAME}\""),
        &format!("schemaLocation=\"v1?xsd={XSD_NAME}\""),
    )
    .into()
});

/// The published contract: `GET /kommun/v1?wsdl`, and the XSD it imports at
/// `GET /kommun/v1?xsd=brygga-kommun-v1.xsd` (the WSDL's reference is rewritten to point there).
/// None for another query: the exchange refuses it (and records that).
fn contract(query: Option<&str>) -> Option<HttpResponse> {
    match query {
        Some(q) if q.eq_ignore_ascii_case("wsdl") => Some(respond(
            StatusCode::OK,
            "text/xml; charset=utf-8",
            SERVED_WSDL.clone(),
        )),
        Some(q) if q.strip_prefix("xsd=") == Some(XSD_NAME) => Some(respond(
            StatusCode::OK,
            "text/xml; charset=utf-8",
            bytes::Bytes::from_static(XSD.as_bytes()),
        )),
        _ => None,
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
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return Err(Failure::new(
            Felkod::OkandResurs,
            format!(
                "GET {KOMMUN_PATH}?wsdl gives the WSDL, GET {KOMMUN_PATH}?xsd={XSD_NAME} its XSD; requests are POSTed"
            ),
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
    // A charset, when given, must be UTF-8; without one, the XML declaration decides.
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
    crate::gateway::body::read_bounded(
        req,
        gw.config.limits.max_body_bytes,
        gw.config.limits.body_read_timeout,
    )
    .await
}

/// Makes text from hostile input safe for a Fault: no identity number, no character XML 1.0
/// forbids, and no longer than the contract allows.
fn fault_text(s: &str, max: usize) -> String {
    redact_digit_runs(s)
        .chars()
        .map(|c| {
            let forbidden = (c < ' ' && !matches!(c, '\t' | '\n' | '\r'))
                || matches!(c, '\u{FFFE}' | '\u{FFFF}');
            if forbidden { '\u{FFFD}' } else { c }
        })
        .take(max)
        .collect()
}

/// A request the HTTP layer refused (a bad `Host`), as a Fault naming the header.
pub fn refused_by_http(r: crate::gateway::server::Refusal) -> HttpResponse {
    rescue(
        &Failure::new(Felkod::FelaktigHttp, r.message).field(r.field),
        Uuid::new_v4(),
        None,
    )
}

/// Turns a failure into the HTTP status and SOAP Fault the caller sees.
pub fn rescue(
    failure: &Failure,
    korrelationsid: Uuid,
    operation: Option<Operation>,
) -> HttpResponse {
    let code = failure.felkod;
    let fel = Fel {
        kalla: code.kalla(),
        felkod: code.as_str().to_owned(),
        meddelande: fault_text(&failure.message, 1000),
        falt: failure.field.as_deref().map(|f| fault_text(f, 200)),
        korrelationsid,
        kan_forsokas_igen: code.retry_can_help(),
        operation: operation.map(|o| o.name().to_owned()),
    };
    let mut r = respond(
        code.status(),
        "text/xml; charset=utf-8",
        soap::encode_fault(&fel, code.faultcode()),
    );
    match code {
        // RFC 6750 §3.1: no error code when no credentials were sent.
        Felkod::TokenSaknas => {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        c if c.status() == StatusCode::UNAUTHORIZED => {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            );
        }
        // The endpoint answers GET and HEAD (its WSDL and XSD) and POST (the exchange).
        Felkod::MetodEjTillaten => {
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
        }
        _ => {}
    }
    if let Some(secs) = failure.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::fault_text;

    #[test]
    fn fault_text_is_safe_for_xml_and_people() {
        assert_eq!(fault_text("a\u{0}b\u{1}c", 100), "a\u{FFFD}b\u{FFFD}c");
        assert_eq!(fault_text("x850709-9805", 100), "x******-****");
        assert_eq!(fault_text(&"é".repeat(2000), 1000).chars().count(), 1000);
    }
}
