//! The `af` listener: AF pushes its events (`POST /af/v1/handelser`, a JSON batch) over mutual
//! TLS with AF's certificate. Each event is validated against AF's contract, stored once with
//! one delivery per subscribing case system (none when nobody follows the person), and
//! recorded in the audit chain as `receive`; AF hears `202` only when all of that is durable.
//! Errors are RFC 9457 `application/problem+json`.

use std::sync::Arc;
use std::time::Instant;

use http::{Method, StatusCode, header};
use hyper::Request;
use hyper::body::Incoming;
use serde::Serialize;
use uuid::Uuid;

use crate::access::policy;
use crate::contract::af_json::HandelserRequest;
use crate::contract::translate;
use crate::error::{Failure, Felkod};
use crate::gateway::server::{HttpResponse, Peer, respond};
use crate::gateway::state::Gateway;
use crate::store::audit::{Action, Entry};
use crate::store::outbox::Incoming as Event;

/// The log target operators filter on (`[log] level = "info,brygga::events=debug"`), kept as it was
/// before the module moved into `gateway/`.
const LOG_TARGET: &str = "brygga::events";

/// The path AF posts its events to.
pub const EVENTS_PATH: &str = "/af/v1/handelser";

/// The most events one batch may carry (`handelser-request.schema.json`: maxItems).
pub const MAX_BATCH: usize = 100;

/// What AF hears back: how many events arrived, how many were new, how many deliveries wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub mottagna: usize,
    pub nya: usize,
    pub dubbletter: usize,
    pub leveranser: usize,
}

/// Serves one request of the `af` listener, in a task of its own (a sender that hangs up does
/// not cut the store or the audit short).
pub async fn serve_af(gw: Arc<Gateway>, peer: Arc<Peer>, req: Request<Incoming>) -> HttpResponse {
    let started = Instant::now();
    let tracking = req
        .headers()
        .get("AF-TrackingId")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::try_parse(v).ok())
        .unwrap_or_else(Uuid::new_v4);
    let task = tokio::spawn(async move {
        let result = receive(&gw, &peer, req, tracking, started).await;
        if let Err(f) = &result {
            refused(&gw, &peer, f, tracking, started).await;
        }
        let response = match &result {
            Ok(receipt) => respond(
                StatusCode::ACCEPTED,
                "application/json",
                serde_json::to_string(receipt).unwrap_or_default(),
            ),
            Err(f) => problem(f, tracking),
        };
        tracing::info!(target: LOG_TARGET,
            tracking = %crate::store::audit::recorded_korrelationsid(&tracking),
            outcome = result.as_ref().err().map(|f| f.felkod.as_str()).unwrap_or("OK"),
            events = result.as_ref().map(|r| r.mottagna).unwrap_or(0),
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "af events"
        );
        let (new, repeated) = result
            .as_ref()
            .map(|r| (r.nya as u64, r.dubbletter as u64))
            .unwrap_or((0, 0));
        gw.metrics.event_batch(
            result.as_ref().err().map(|f| f.felkod),
            new,
            repeated,
            started.elapsed(),
        );
        response
    });
    match task.await {
        Ok(r) => r,
        Err(_) => problem(
            &Failure::new(
                Felkod::InterntFel,
                "an internal error occurred; send the batch again",
            ),
            tracking,
        ),
    }
}

async fn receive(
    gw: &Gateway,
    peer: &Peer,
    req: Request<Incoming>,
    tracking: Uuid,
    started: Instant,
) -> Result<Receipt, Failure> {
    if req.uri().path() != EVENTS_PATH {
        return Err(Failure::new(
            Felkod::OkandResurs,
            format!("no such resource; events are posted to {EVENTS_PATH}"),
        ));
    }
    if req.method() != Method::POST {
        return Err(Failure::new(
            Felkod::MetodEjTillaten,
            "events are sent with POST",
        ));
    }
    // Only AF: the CA already kept every other issuer out; this keeps out the CA's other
    // certificates (the gateway's own towards AF among them).
    let sender = gw.config.events.sender;
    match &peer.orgnr {
        Ok(o) if *o == sender => {}
        Ok(o) => {
            return Err(Failure::new(
                Felkod::KlientOkand,
                format!("organisation {o} may not send events; only {sender} may"),
            ));
        }
        Err(why) => return Err(Failure::new(Felkod::KlientOkand, why.clone())),
    }
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(Failure::new(
            Felkod::FelMediatyp,
            "the batch must be sent as application/json",
        ));
    }
    // At most so many bodies held at once, whatever the number of streams or connections.
    let _reading = gw.event_batches.try_acquire().map_err(|_| {
        let mut f = Failure::new(
            Felkod::ForMangaSamtidiga,
            format!(
                "{} batches are being received already; send this one again shortly",
                gw.config.events.max_batches_in_flight
            ),
        );
        f.retry_after = Some(1);
        f
    })?;
    let body = crate::gateway::body::read_bounded(
        req,
        gw.config.events.max_body_bytes,
        gw.config.limits.body_read_timeout,
    )
    .await?;

    // Validate the whole batch before storing any of it.
    let batch: HandelserRequest =
        crate::contract::validate::parse_json(&body).map_err(|(path, why)| {
            let f = Failure::new(Felkod::OgiltigtFalt, why);
            if path.is_empty() { f } else { f.field(path) }
        })?;
    if batch.handelser.is_empty() || batch.handelser.len() > MAX_BATCH {
        return Err(Failure::new(
            Felkod::OgiltigtFalt,
            format!("a batch carries 1 to {MAX_BATCH} events"),
        )
        .field("handelser"));
    }
    let mut events = Vec::with_capacity(batch.handelser.len());
    let mut audit_subjects = Vec::with_capacity(batch.handelser.len());
    for (i, h) in batch.handelser.iter().enumerate() {
        let e = translate::handelse_from_af(h).map_err(|e| {
            Failure::new(Felkod::OgiltigtFalt, e.rule.clone())
                .field(format!("handelser[{i}].{}", e.path))
        })?;
        let typ = e.handelse.typ();
        audit_subjects.push((
            gw.pseudonyms().pseudonym("audit", &e.personidentitet),
            typ,
            e.handelse_id,
        ));
        events.push(Event {
            kategori: policy::event_category(typ),
            handelse_id: e.handelse_id,
            typ: typ.code(),
            tidpunkt: e.tidpunkt,
            subjects: gw.pseudonyms().all("subscriptions", &e.personidentitet),
            payload: serde_json::to_string(&translate::handelse_to_af(&e)).unwrap_or_default(),
        });
    }

    // Record each arrival before it is stored (a repeat as such): the chain says what
    // brygga received, before anything is done with it.
    let ids: Vec<Uuid> = events.iter().map(|e| e.handelse_id).collect();
    let outbox = gw.outbox.clone();
    let seen = tokio::task::spawn_blocking(move || outbox.seen(&ids))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|e| {
            tracing::error!(target: LOG_TARGET, error = %e, "the event store cannot be read");
            Failure::new(
                Felkod::LagringMisslyckades,
                "the events could not be checked against those stored; send the batch again",
            )
        })?;
    let organisation = sender.to_string();
    let mut in_batch = std::collections::HashSet::new();
    for ((subject, typ, id), seen) in audit_subjects.into_iter().zip(seen) {
        let repeat = seen || !in_batch.insert(id);
        let entry = Entry {
            time: crate::store::audit::now(),
            korrelationsid: crate::store::audit::recorded_korrelationsid(&tracking),
            direction: "af-till-brygga".into(),
            operation: operation_name(&id.to_string()),
            action: Action::Receive,
            organisation: organisation.clone(),
            handlaggare: None,
            arende: None,
            subject,
            syfte: None,
            lagrum: None,
            kategorier: vec![policy::event_category(typ).code().to_owned()],
            outcome: if repeat { "DUBBLETT" } else { "OK" }.into(),
            af_status: None,
            duration_ms: started.elapsed().as_millis() as u64,
            genesis: None,
            enhet: None,
            funktion: None,
            personuppgiftsbitrade: None,
            skyddad_identitet: false,
            pruned: None,
            sample: None,
            review: None,
        };
        gw.audit.append(entry).await.map_err(|e| {
            tracing::error!(target: LOG_TARGET, error = %e, "the audit record of an event could not be written");
            Failure::new(
                Felkod::LoggningMisslyckades,
                "the events could not be recorded in the audit log; none was stored, send the batch again",
            )
        })?;
    }

    // Store: every event once, a delivery per subscriber, in one durable transaction.
    let new_deliveries = gw.delivery_wake.clone();
    let outbox = gw.outbox.clone();
    let now = time::OffsetDateTime::now_utc();
    let syften = gw.config.syften.clone();
    let stored = tokio::task::spawn_blocking(move || {
        outbox.accept(&events, now, |syfte, kategori| {
            syften
                .get(syfte)
                .is_some_and(|s| s.kategorier.contains(&kategori))
        })
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| e.to_string()))
    .map_err(|e| {
        tracing::error!(target: LOG_TARGET, error = %e, "the event store failed");
        Failure::new(
            Felkod::LagringMisslyckades,
            "the events could not be stored; none was accepted, send the batch again",
        )
    })?;

    let receipt = Receipt {
        mottagna: stored.len(),
        nya: stored.iter().filter(|a| a.new).count(),
        dubbletter: stored.iter().filter(|a| !a.new).count(),
        leveranser: stored.iter().map(|a| a.recipients.len()).sum(),
    };
    if receipt.leveranser > 0 {
        new_deliveries.notify_one();
    }
    Ok(receipt)
}

/// A refused batch is a `deny` record: who tried, and why (not when the audit itself failed,
/// and not a request for another resource).
async fn refused(gw: &Gateway, peer: &Peer, f: &Failure, tracking: Uuid, started: Instant) {
    if matches!(
        f.felkod,
        Felkod::LoggningMisslyckades | Felkod::OkandResurs | Felkod::MetodEjTillaten
    ) {
        return;
    }
    let entry = Entry {
        time: crate::store::audit::now(),
        korrelationsid: crate::store::audit::recorded_korrelationsid(&tracking),
        direction: "af-till-brygga".into(),
        operation: "ArbetssokandeHandelse".into(),
        action: Action::Deny,
        organisation: peer
            .orgnr
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|_| "-".into()),
        handlaggare: None,
        arende: None,
        subject: None,
        syfte: None,
        lagrum: None,
        kategorier: Vec::new(),
        outcome: f.felkod.as_str().into(),
        af_status: None,
        duration_ms: started.elapsed().as_millis() as u64,
        genesis: None,
        enhet: None,
        funktion: None,
        personuppgiftsbitrade: None,
        skyddad_identitet: false,
        pruned: None,
        sample: None,
        review: None,
    };
    if let Err(e) = gw.audit.append(entry).await {
        tracing::error!(target: LOG_TARGET, error = %e, "the audit record of a refused batch could not be written");
    }
}

/// How an event is named in the audit chain: the operation and AF's event id (its digits
/// masked should AF's id ever spell an identity number).
pub fn operation_name(event_id: &str) -> String {
    format!(
        "ArbetssokandeHandelse {}",
        crate::model::ident::mask_identity_numbers(event_id)
    )
}

/// A failure as RFC 9457 problem details, with brygga's Felkod and the field as extension
/// members. The text is stripped of anything shaped like an identity number.
pub fn problem(f: &Failure, tracking: Uuid) -> HttpResponse {
    let status = f.felkod.status();
    let clean = |s: &str| crate::model::ident::redact_digit_runs(s);
    let mut body = serde_json::json!({
        "type": format!("urn:se:brygga:fel:{}", f.felkod.as_str()),
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": clean(&f.message),
        "felkod": f.felkod.as_str(),
        "kanForsokasIgen": f.felkod.retry_can_help(),
        "trackingId": crate::store::audit::recorded_korrelationsid(&tracking),
    });
    if let (Some(field), Some(map)) = (&f.field, body.as_object_mut()) {
        map.insert("falt".into(), serde_json::Value::String(clean(field)));
    }
    let mut r = respond(status, "application/problem+json", body.to_string());
    if f.felkod == Felkod::MetodEjTillaten {
        r.headers_mut()
            .insert(header::ALLOW, http::HeaderValue::from_static("POST"));
    }
    if let Some(secs) = f.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from(secs));
    }
    r
}

/// A request the HTTP layer refused (a bad `Host`), as a problem naming the header.
pub fn refused_by_http(r: crate::gateway::server::Refusal) -> HttpResponse {
    problem(
        &Failure::new(Felkod::FelaktigHttp, r.message).field(r.field),
        Uuid::new_v4(),
    )
}
