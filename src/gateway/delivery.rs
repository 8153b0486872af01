//! Delivery of AF's events to the case systems that subscribed: each pending delivery in the
//! outbox is posted as SOAP `ArbetssokandeHandelse` over mutual TLS to the client's endpoint,
//! which answers with `ArbetssokandeHandelseKvittens`. One person's events reach a case
//! system in order (the outbox hands out only the oldest pending one per client and person);
//! a failure waits `first_retry`, doubling with jitter up to `max_retry`; an event not
//! delivered `max_age` after it arrived is given up. Every attempt is a `disclose` record in
//! the audit chain (outcome `SKICKAS`) made durable before the event leaves — no record, no
//! delivery — and every give-up is one too (`GAV_UPP`).

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

use crate::config::Client;
use crate::contract::soap;
use crate::contract::translate;
use crate::contract::xml::XmlLimits;
use crate::gateway::state::Gateway;
use crate::model::{AfHandelse, ArbetssokandeHandelse};
use crate::store::audit::{Action, Entry};
use crate::store::outbox::Due;

pub use crate::gateway::state::DeliveryStats;

fn count(c: &std::sync::atomic::AtomicU64) {
    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// How often the outbox is looked at when nothing wakes the worker.
const POLL: Duration = Duration::from_millis(250);

/// At most this many deliveries are under way at once.
const BATCH: usize = 64;

/// Runs until `stop` turns true; then drains: every pending delivery gets one more attempt,
/// its wait cut short, for at most `delivery.drain` (the rest wait in the store for the next
/// start).
pub async fn run(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            break;
        }
        let (count, store_ok) = pass(&gw, OffsetDateTime::now_utc(), &mut Vec::new()).await;
        erase_from_files(&gw).await;
        if count == BATCH && store_ok {
            continue;
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = gw.delivery_wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    let drained = tokio::time::timeout(gw.config.delivery.drain, async {
        let mut tried = Vec::new();
        loop {
            // Due by now or later: a stop does not wait out a backoff.
            let horizon = OffsetDateTime::now_utc() + time::Duration::days(3650);
            let (count, store_ok) = pass(&gw, horizon, &mut tried).await;
            if count == 0 || !store_ok {
                return;
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "the outbox was not drained within delivery.drain; the rest waits in the store"
        );
    }
    erase_from_files(&gw).await;
}

/// When payloads were erased since the last time, empties the store's write-ahead log so they
/// are gone from the files too; tried again after the next pass when a reader was in the way.
async fn erase_from_files(gw: &Arc<Gateway>) {
    use std::sync::atomic::Ordering;
    if !gw.erasures_due.swap(false, Ordering::AcqRel) {
        return;
    }
    let outbox = gw.outbox.clone();
    let done = tokio::task::spawn_blocking(move || outbox.erase_from_files()).await;
    match done {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => gw.erasures_due.store(true, Ordering::Release),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the store's write-ahead log could not be emptied; tried again");
            gw.erasures_due.store(true, Ordering::Release);
        }
        Err(e) => {
            tracing::warn!(error = %e, "the store's write-ahead log could not be emptied; tried again");
            gw.erasures_due.store(true, Ordering::Release);
        }
    }
}

/// One pass over what is due at `at`, skipping deliveries already in `tried` (which grows):
/// how many were tried, and whether the store took every update.
async fn pass(gw: &Arc<Gateway>, at: OffsetDateTime, tried: &mut Vec<i64>) -> (usize, bool) {
    // The clients of the moment: a reload (a new certificate, a CRL) reaches the next pass.
    let clients = gw.delivery_clients();
    let outbox = gw.outbox.clone();
    let due = match tokio::task::spawn_blocking(move || outbox.due(at, BATCH)).await {
        Ok(Ok(due)) => due,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the outbox cannot be read");
            return (0, false);
        }
        Err(e) => {
            tracing::error!(error = %e, "the outbox reader failed");
            return (0, false);
        }
    };
    let fresh: Vec<Due> = due
        .into_iter()
        .filter(|d| !tried.contains(&d.seq))
        .collect();
    let mut under_way = tokio::task::JoinSet::new();
    for item in fresh {
        tried.push(item.seq);
        under_way.spawn(deliver(gw.clone(), clients.clone(), item));
    }
    let count = under_way.len();
    let mut store_ok = true;
    while let Some(done) = under_way.join_next().await {
        store_ok &= done.unwrap_or(false);
    }
    (count, store_ok)
}

/// How one attempt went.
enum Attempt {
    /// Receipted.
    Delivered,
    /// The case system answered, but not with the receipt: it has seen the event.
    Refused(String),
    /// It was not reached: nothing left the gateway.
    NotReached(String),
    /// Its record could not be written, so it was not sent.
    NotRecorded,
}

/// Delivers one; false when the outbox could not be updated (the caller then pauses, so a
/// broken store is not hammered).
async fn deliver(
    gw: Arc<Gateway>,
    clients: Arc<crate::gateway::tls::DeliveryClients>,
    item: Due,
) -> bool {
    let now = OffsetDateTime::now_utc();
    let client = gw.config.clients.iter().find(|c| c.name == item.client);
    let event = item
        .payload
        .as_deref()
        .ok_or_else(|| "the stored event is missing".to_owned())
        .and_then(|p| {
            serde_json::from_str(p)
                .map_err(|e| e.to_string())
                .and_then(|j| translate::handelse_from_af(&j).map_err(|e| e.to_string()))
        });
    let event = match event {
        Ok(e) => e,
        // Cannot happen for what the af listener stored; never retried forever either.
        Err(why) => return give_up(&gw, &item, client, None, &why).await,
    };
    // The purpose binds what leaves: the subscription's purpose as it is now (it may have
    // been registered again, or the purpose narrowed since the event arrived).
    let kategori = crate::access::policy::event_category(event.handelse.typ());
    let may_see = item
        .syfte
        .as_ref()
        .and_then(|s| gw.config.syften.get(s))
        .is_some_and(|s| s.kategorier.contains(&kategori));
    if !may_see {
        return withhold(&gw, &item).await;
    }
    let attempt = match (
        client,
        clients.clients.get(&item.client),
        gw.config.endpoints.get(&item.client),
    ) {
        // No record, no delivery: the disclosure is durable in the chain before it leaves.
        (Some(_), Some(http), Some(endpoint)) => {
            if record(&gw, &item, client, Some(&event), "SKICKAS").await {
                attempt(http, &endpoint.url, &item, &event).await
            } else {
                Attempt::NotRecorded
            }
        }
        (None, _, _) => Attempt::NotReached("the client is no longer configured".into()),
        _ => Attempt::NotReached("the client has no delivery endpoint".into()),
    };
    let outcome = match &attempt {
        Attempt::Delivered => "OK",
        Attempt::Refused(_) => "MOTTAGARE_FEL",
        Attempt::NotReached(_) | Attempt::NotRecorded => "EJ_NADD",
    };
    match &attempt {
        Attempt::Delivered => count(&gw.delivery_stats.delivered),
        _ => count(&gw.delivery_stats.failed),
    }
    gw.metrics.delivery(&item.client, outcome);
    let retry_at = |attempts| {
        now.checked_add(
            time::Duration::try_from(backoff(&gw, attempts)).unwrap_or(time::Duration::HOUR),
        )
        .unwrap_or(now)
    };
    let outbox = gw.outbox.clone();
    let seq = item.seq;
    let update = match attempt {
        Attempt::Delivered => {
            let erased = tokio::task::spawn_blocking(move || outbox.delivered(seq, now)).await;
            if matches!(erased, Ok(Ok(true))) {
                gw.erasures_due
                    .store(true, std::sync::atomic::Ordering::Release);
            }
            erased
        }
        Attempt::NotRecorded => {
            // Not sent: the chain did not take its record.
            let next = retry_at(item.attempts);
            tokio::task::spawn_blocking(move || {
                outbox.retry(
                    seq,
                    next,
                    "the delivery could not be recorded; it was not sent",
                )
            })
            .await
        }
        Attempt::Refused(why) | Attempt::NotReached(why) => {
            if now - item.since >= gw.config.delivery.max_age {
                return give_up(&gw, &item, client, Some(&event), &why).await;
            }
            tracing::info!(client = %item.client, event = %crate::model::ident::mask_identity_numbers(&item.event_id), attempts = item.attempts + 1, error = %why, "delivery failed; it is retried");
            let next = retry_at(item.attempts);
            tokio::task::spawn_blocking(move || outbox.retry(seq, next, &why)).await
        }
    };
    updated(update, &item)
}

/// Whether the outbox took the change; an operator's change meanwhile wins and is said.
fn updated(
    update: Result<Result<bool, crate::store::schema::StoreError>, tokio::task::JoinError>,
    item: &Due,
) -> bool {
    match update {
        Ok(Ok(true)) => true,
        Ok(Ok(false)) => {
            tracing::info!(event = %crate::model::ident::mask_identity_numbers(&item.event_id), client = %item.client, "the delivery was changed by an operator meanwhile; their change stands");
            true
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the outbox could not be updated; the delivery is tried again");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "the outbox could not be updated; the delivery is tried again");
            false
        }
    }
}

/// The most of a case system's answer that is read: a receipt is a few hundred bytes.
const MAX_ANSWER: usize = 64 * 1024;

async fn attempt(http: &reqwest::Client, url: &str, item: &Due, event: &AfHandelse) -> Attempt {
    let body = soap::encode_handelse(&ArbetssokandeHandelse {
        af: event.clone(),
        arendeidentitet: item.arende.clone(),
    });
    // The case system's words are hostile input: what is kept of them names no number.
    let clean = |s: String| crate::model::ident::redact_digit_runs(&s);
    let sent = http
        .post(url)
        .header("content-type", "text/xml; charset=utf-8")
        .header(
            "SOAPAction",
            "\"urn:se:brygga:kommun:v1#ArbetssokandeHandelse\"",
        )
        .body(body)
        .send()
        .await;
    let mut response = match sent {
        Ok(r) => r,
        // No connection: nothing left the gateway.
        Err(e) if e.is_connect() => {
            return Attempt::NotReached(clean(format!("cannot connect to the endpoint: {e}")));
        }
        // Connected: the request may have been read, even without an answer.
        Err(e) if e.is_timeout() => return Attempt::Refused("no answer within the timeout".into()),
        Err(e) => return Attempt::Refused(clean(format!("the exchange broke off: {e}"))),
    };
    let status = response.status();
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if bytes.len() + chunk.len() <= MAX_ANSWER => {
                bytes.extend_from_slice(&chunk)
            }
            Ok(Some(_)) => {
                return Attempt::Refused(format!("the answer is longer than {MAX_ANSWER} bytes"));
            }
            Ok(None) => break,
            Err(e) => return Attempt::Refused(clean(format!("the answer broke off: {e}"))),
        }
    }
    if status != http::StatusCode::OK {
        return Attempt::Refused(format!("HTTP {}", status.as_u16()));
    }
    match soap::decode_handelse_kvittens(&bytes, &XmlLimits::default()) {
        Ok(k) if k.handelse_id == event.handelse_id => Attempt::Delivered,
        Ok(_) => Attempt::Refused("the receipt names another event".into()),
        Err(e) => Attempt::Refused(clean(format!("not a receipt: {e}"))),
    }
}

/// The wait before the next attempt: `first_retry` doubling per attempt, capped at
/// `max_retry`, and a random half of it taken off so case systems coming back are not hit all
/// at once.
fn backoff(gw: &Gateway, attempts: u32) -> Duration {
    let d = &gw.config.delivery;
    let full = d
        .first_retry
        .saturating_mul(1u32 << attempts.min(20))
        .min(d.max_retry);
    let r = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
    full.mul_f64(0.5 + f64::from(r) / 2000.0)
}

async fn give_up(
    gw: &Gateway,
    item: &Due,
    client: Option<&Arc<Client>>,
    event: Option<&AfHandelse>,
    why: &str,
) -> bool {
    tracing::warn!(client = %item.client, event = %crate::model::ident::mask_identity_numbers(&item.event_id), error = %why, "delivery given up");
    count(&gw.delivery_stats.given_up);
    gw.metrics.delivery(&item.client, "GAV_UPP");
    let _ = record(gw, item, client, event, "GAV_UPP").await;
    let (outbox, seq, why) = (gw.outbox.clone(), item.seq, why.to_owned());
    let now = OffsetDateTime::now_utc();
    updated(
        tokio::task::spawn_blocking(move || outbox.dead(seq, now, &why)).await,
        item,
    )
}

/// A delivery its subscription's purpose may not see: dropped, its payload erased; nothing
/// was disclosed, so there is nothing to record.
async fn withhold(gw: &Arc<Gateway>, item: &Due) -> bool {
    tracing::info!(client = %item.client, event = %crate::model::ident::mask_identity_numbers(&item.event_id), "the subscription's purpose may not see this event; it is not delivered");
    let (outbox, seq) = (gw.outbox.clone(), item.seq);
    let now = OffsetDateTime::now_utc();
    let dropped =
        tokio::task::spawn_blocking(move || outbox.drop_delivery(seq, now).map(|d| d.is_some()))
            .await;
    if matches!(dropped, Ok(Ok(true))) {
        gw.erasures_due
            .store(true, std::sync::atomic::Ordering::Release);
    }
    updated(dropped, item)
}

/// A `disclose` record of an attempt or a give-up; false when it could not be written.
async fn record(
    gw: &Gateway,
    item: &Due,
    client: Option<&Arc<Client>>,
    event: Option<&AfHandelse>,
    outcome: &str,
) -> bool {
    let syfte = item.syfte.as_ref().and_then(|s| gw.config.syften.get(s));
    let entry = Entry {
        time: crate::store::audit::now(),
        korrelationsid: crate::model::ident::mask_identity_numbers(&item.event_id),
        direction: "af-till-kommun".into(),
        operation: crate::gateway::events::operation_name(&item.event_id),
        action: Action::Disclose,
        organisation: client
            .map(|c| c.orgnr.to_string())
            .unwrap_or_else(|| item.client.clone()),
        handlaggare: None,
        arende: Some(item.arende.clone()),
        subject: event.and_then(|e| gw.pseudonyms().pseudonym("audit", &e.personidentitet)),
        syfte: item.syfte.clone(),
        lagrum: syfte.map(|s| s.lagrum.clone()),
        kategorier: event
            .map(|e| {
                vec![
                    crate::access::policy::event_category(e.handelse.typ())
                        .code()
                        .to_owned(),
                ]
            })
            .unwrap_or_default(),
        outcome: outcome.into(),
        af_status: None,
        duration_ms: 0,
        genesis: None,
        enhet: None,
        funktion: None,
        personuppgiftsbitrade: None,
        skyddad_identitet: false,
        pruned: None,
        sample: None,
        review: None,
    };
    match gw.audit.append(entry).await {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(error = %e, "the audit record of a delivery could not be written");
            false
        }
    }
}
