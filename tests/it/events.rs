//! AF pushing its events to the `af` listener, as AF would: over mutual TLS with AF's
//! certificate, a JSON batch; stored once per subscriber, durably, before `202`.

use brygga::devkit::client::{KommunClient, RawAnswer};
use brygga::devkit::sim_af;
use brygga::gateway::events::Receipt;
use brygga::model::*;
use brygga::store::audit::{Action, Record};
use serde_json::{Value, json};

use crate::harness::{self, Stack, answer};

/// AF's side of the `af` listener: its client certificate, trusting AF's CA.
fn af_sender(s: &Stack) -> KommunClient {
    let certs = harness::certs();
    KommunClient::new(
        &s.inner.af_url(),
        &certs.join("af-ca.pem"),
        Some((&certs.join("af-client.pem"), &certs.join("af-client.key"))),
    )
    .unwrap()
}

async fn post(client: &KommunClient, body: &Value) -> RawAnswer {
    client
        .post_with_type(None, body.to_string(), "application/json")
        .await
        .unwrap()
}

fn receipt(a: &RawAnswer) -> Receipt {
    assert_eq!(
        a.status.as_u16(),
        202,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    serde_json::from_slice(&a.body).unwrap()
}

/// An RFC 9457 problem: its status, Felkod and field.
fn problem(a: &RawAnswer, status: u16, felkod: &str) -> Value {
    let body = String::from_utf8_lossy(&a.body);
    assert_eq!(a.status.as_u16(), status, "{body}");
    assert_eq!(
        a.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let p: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(p["felkod"], felkod, "{body}");
    assert_eq!(p["status"], status);
    p
}

fn deregistered(id: &str, pnr: &str) -> Value {
    let today = time::OffsetDateTime::now_utc().date();
    json!({
        "handelseId": id,
        "typ": "AVAKTUALISERAD",
        "personnummer": pnr,
        "tidpunkt": format!("{today}T11:20:09Z"),
        "avaktualisering": {"datum": today.to_string(), "orsakKod": "ARB", "orsakText": "Fått arbete"}
    })
}

async fn subscribe(s: &Stack, pnr: &str, arende: &str) {
    let today = time::OffsetDateTime::now_utc().date();
    let f = Fraga {
        arendeidentitet: arende.into(),
        tidsperiod: Tidsperiod::new(today, today + time::Duration::days(30)).unwrap(),
        ..s.st_fraga(pnr)
    };
    answer(
        &s.st
            .call(&s.st_token(), &KommunRequest::RegistreraPrenumeration(f))
            .await
            .unwrap(),
    );
}

/// The outbox's deliveries: (event id, client, case, state).
fn deliveries(store: &std::path::Path) -> Vec<(String, String, String, String)> {
    let conn = rusqlite::Connection::open(store).unwrap();
    conn.prepare("SELECT event_id, client, arende, state FROM outbox ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn records(store: &std::path::Path) -> Vec<Record> {
    harness::audit_records(store)
}

const E1: &str = "0701d5c8-464f-4b64-b37c-fbe36ac4f6cf";
const E2: &str = "5311c8c0-1323-4dac-9e1d-7369312db5c8";

#[tokio::test]
async fn an_event_is_stored_for_its_subscribers_only_and_once() {
    let s = harness::start().await;
    subscribe(&s, sim_af::REGISTRERAD, "EB-1").await;
    let af = af_sender(&s);
    // One about the followed person, one about a person nobody follows.
    let batch = json!({"handelser": [deregistered(E1, sim_af::REGISTRERAD), deregistered(E2, sim_af::AVAKTUALISERAD)]});
    let r = receipt(&post(&af, &batch).await);
    assert_eq!(
        r,
        Receipt {
            mottagna: 2,
            nya: 2,
            dubbletter: 0,
            leveranser: 1
        }
    );
    // The same batch again (AF retries): acknowledged, nothing stored twice.
    let again = receipt(&post(&af, &batch).await);
    assert_eq!((again.nya, again.dubbletter, again.leveranser), (0, 2, 0));

    let store = s.audit_store();
    let _data = s.stop().await;
    assert_eq!(
        deliveries(&store),
        [(
            E1.into(),
            "stockholm".into(),
            "EB-1".into(),
            "pending".into()
        )]
    );
    // Each arrival is a `receive` record naming the person by pseudonym; the unfollowed
    // person's event is recorded and stored nowhere else.
    let received: Vec<_> = records(&store)
        .into_iter()
        .filter(|r| r.entry.action == Action::Receive)
        .collect();
    assert_eq!(received.len(), 4);
    let first = &received[0].entry;
    assert_eq!(first.operation, format!("ArbetssokandeHandelse {E1}"));
    assert_eq!(
        (first.direction.as_str(), first.organisation.as_str()),
        ("af-till-brygga", "202100-2114")
    );
    assert!(
        first
            .subject
            .as_deref()
            .is_some_and(|p| p.starts_with("a1:"))
    );
    assert_eq!(first.kategorier, ["REGISTRERING"]);
    assert_eq!(received[1].entry.outcome, "OK");
    assert_eq!(received[2].entry.outcome, "DUBBLETT");
}

#[tokio::test]
async fn an_ended_subscription_gets_nothing() {
    let s = harness::start().await;
    subscribe(&s, sim_af::REGISTRERAD, "EB-1").await;
    let today = time::OffsetDateTime::now_utc().date();
    let end = Fraga {
        arendeidentitet: "EB-1".into(),
        tidsperiod: Tidsperiod::new(today, today).unwrap(),
        ..s.st_fraga(sim_af::REGISTRERAD)
    };
    answer(
        &s.st
            .call(&s.st_token(), &KommunRequest::AvslutaPrenumeration(end))
            .await
            .unwrap(),
    );
    let r = receipt(
        &post(
            &af_sender(&s),
            &json!({"handelser": [deregistered(E1, sim_af::REGISTRERAD)]}),
        )
        .await,
    );
    assert_eq!((r.nya, r.leveranser), (1, 0));
    let store = s.audit_store();
    let _data = s.stop().await;
    assert!(deliveries(&store).is_empty());
}

#[tokio::test]
async fn bad_batches_are_refused_with_a_problem_naming_the_field() {
    let s = harness::start().await;
    let af = af_sender(&s);
    let mut wrong_type = deregistered(E1, sim_af::REGISTRERAD);
    wrong_type["typ"] = json!("FLYTTAD");
    let p = problem(
        &post(
            &af,
            &json!({"handelser": [deregistered(E2, sim_af::REGISTRERAD), wrong_type]}),
        )
        .await,
        400,
        "OGILTIGT_FALT",
    );
    assert_eq!(p["falt"], "handelser[1].typ", "{p}");
    // A bad check digit: named, and the number not echoed.
    let p = problem(
        &post(
            &af,
            &json!({"handelser": [deregistered(E1, "198507099806")]}),
        )
        .await,
        400,
        "OGILTIGT_FALT",
    );
    assert!(
        p["falt"]
            .as_str()
            .unwrap()
            .starts_with("handelser[0].personnummer"),
        "{p}"
    );
    assert!(!p.to_string().contains("9806"), "{p}");
    problem(
        &post(&af, &json!({"handelser": []})).await,
        400,
        "OGILTIGT_FALT",
    );
    let p = problem(
        &post(&af, &json!({"events": []})).await,
        400,
        "OGILTIGT_FALT",
    );
    assert!(p["detail"].as_str().unwrap().contains("handelser"), "{p}");
    let not_json = af
        .post_with_type(None, "{\"handelser\": [", "application/json")
        .await
        .unwrap();
    problem(&not_json, 400, "OGILTIGT_FALT");
    let xml = af
        .post_with_type(None, "<handelser/>", "text/xml")
        .await
        .unwrap();
    problem(&xml, 415, "FEL_MEDIATYP");
    // Nothing of a refused batch was stored: the first, valid event is not a repeat later.
    let r = receipt(
        &post(
            &af,
            &json!({"handelser": [deregistered(E2, sim_af::REGISTRERAD)]}),
        )
        .await,
    );
    assert_eq!(r.nya, 1);
    s.stop().await;
}

#[tokio::test]
async fn only_afs_certificate_may_send_events() {
    let s = harness::start().await;
    let certs = harness::certs();
    // The gateway's own certificate towards AF comes from AF's CA too, but is not AF.
    let impostor = KommunClient::new(
        &s.inner.af_url(),
        &certs.join("af-ca.pem"),
        Some((
            &certs.join("gateway-to-af.pem"),
            &certs.join("gateway-to-af.key"),
        )),
    )
    .unwrap();
    let batch = json!({"handelser": [deregistered(E1, sim_af::REGISTRERAD)]});
    problem(&post(&impostor, &batch).await, 403, "KLIENT_OKAND");
    // A municipality's certificate is not even let through the handshake.
    let kommun = KommunClient::new(
        &s.inner.af_url(),
        &certs.join("af-ca.pem"),
        Some((&s.sthlm.cert, &s.sthlm.key)),
    )
    .unwrap();
    assert!(
        kommun
            .post_with_type(None, batch.to_string(), "application/json")
            .await
            .is_err()
    );
    s.stop().await;
}

#[tokio::test]
async fn a_batch_larger_than_the_contract_allows_is_refused_and_recorded() {
    let s = harness::start().await;
    let af = af_sender(&s);
    let many: Vec<Value> = (0..101)
        .map(|i| {
            deregistered(
                &format!("00000000-0000-4000-8000-{i:012}"),
                sim_af::REGISTRERAD,
            )
        })
        .collect();
    let p = problem(
        &post(&af, &json!({ "handelser": many })).await,
        400,
        "OGILTIGT_FALT",
    );
    assert_eq!(p["falt"], "handelser");
    assert!(p["detail"].as_str().unwrap().contains("1 to 100"), "{p}");
    // The same id twice in one batch: the second is a repeat.
    let r = receipt(&post(&af, &json!({"handelser": [deregistered(E1, sim_af::REGISTRERAD), deregistered(E1, sim_af::REGISTRERAD)]})).await);
    assert_eq!((r.mottagna, r.nya, r.dubbletter), (2, 1, 1));
    let store = s.audit_store();
    let _data = s.stop().await;
    let r = records(&store);
    let denied: Vec<_> = r
        .iter()
        .filter(|r| r.entry.action == Action::Deny)
        .collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(
        (
            denied[0].entry.outcome.as_str(),
            denied[0].entry.organisation.as_str()
        ),
        ("OGILTIGT_FALT", "202100-2114")
    );
    let outcomes: Vec<&str> = r
        .iter()
        .filter(|r| r.entry.action == Action::Receive)
        .map(|r| r.entry.outcome.as_str())
        .collect();
    assert_eq!(outcomes, ["OK", "DUBBLETT"]);
}

/// A batch body over `events.max_body_bytes` is refused with 413 before it is parsed.
#[tokio::test]
async fn a_body_over_the_limit_gets_413() {
    let s = harness::start_custom(|c, _| c.events.max_body_bytes = 4096, true).await;
    let af = af_sender(&s);
    let mut event = deregistered(E1, sim_af::REGISTRERAD);
    event["padding"] = json!("x".repeat(5000));
    let p = problem(
        &post(&af, &json!({ "handelser": [event] })).await,
        413,
        "FOR_STOR_BEGARAN",
    );
    assert!(p["detail"].as_str().unwrap().contains("4096"), "{p}");
    // Nothing was stored or received.
    let store = s.audit_store();
    let _data = s.stop().await;
    assert!(deliveries(&store).is_empty());
    assert!(
        records(&store)
            .iter()
            .all(|r| r.entry.action != Action::Receive)
    );
}

#[tokio::test]
async fn ending_a_subscription_drops_what_was_not_yet_delivered() {
    let s = harness::start().await;
    // The harness's endpoints lead nowhere: the delivery stays pending.
    subscribe(&s, sim_af::REGISTRERAD, "EB-1").await;
    receipt(
        &post(
            &af_sender(&s),
            &json!({"handelser": [deregistered(E1, sim_af::REGISTRERAD)]}),
        )
        .await,
    );
    let store = s.audit_store();
    let pending = |store: &std::path::Path| -> Vec<(String, bool)> {
        let conn = rusqlite::Connection::open(store).unwrap();
        conn.prepare("SELECT state, payload IS NOT NULL FROM outbox")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(pending(&store), [("pending".to_owned(), true)]);
    let today = time::OffsetDateTime::now_utc().date();
    let end = Fraga {
        arendeidentitet: "EB-1".into(),
        tidsperiod: Tidsperiod::new(today, today).unwrap(),
        ..s.st_fraga(sim_af::REGISTRERAD)
    };
    answer(
        &s.st
            .call(&s.st_token(), &KommunRequest::AvslutaPrenumeration(end))
            .await
            .unwrap(),
    );
    assert_eq!(pending(&store), [("dropped".to_owned(), false)]);
    s.stop().await;
}

#[tokio::test]
async fn one_gateway_per_store() {
    let s = harness::start().await;
    let mut second = s.inner.config.clone();
    let any = "127.0.0.1:0".parse().unwrap();
    (second.kommun_bind, second.admin_bind, second.events.bind) = (any, any, any);
    let refused = brygga::gateway::start::start(second).await.err().unwrap();
    assert!(
        refused.contains("another brygga gateway is using this store"),
        "{refused}"
    );
    s.stop().await;
}

/// A body is one JSON value: a second batch, or anything after the first, would be
/// acknowledged without being stored. The whole body is refused and nothing of it kept.
#[tokio::test]
async fn content_after_the_batch_is_refused_and_nothing_is_stored() {
    let s = harness::start().await;
    subscribe(&s, sim_af::REGISTRERAD, "EB-1").await;
    let af = af_sender(&s);
    let first = json!({"handelser": [deregistered(E1, sim_af::REGISTRERAD)]}).to_string();
    let second = json!({"handelser": [deregistered(E2, sim_af::REGISTRERAD)]}).to_string();
    for body in [
        format!("{first}{second}"),
        format!("{first}\n{second}"),
        format!("{first} garbage"),
        format!("{first}]"),
        format!("{first}\u{0}"),
    ] {
        let a = af
            .post_with_type(None, body.clone(), "application/json")
            .await
            .unwrap();
        let p = problem(&a, 400, "OGILTIGT_FALT");
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("after the JSON value"),
            "{body:?}: {p}"
        );
    }
    // Whitespace after the value is not content.
    receipt(
        &af.post_with_type(None, format!("{first} \r\n\t"), "application/json")
            .await
            .unwrap(),
    );
    // Only that last batch was stored, and only its event was received in the chain.
    let store = s.audit_store();
    let stored: Vec<_> = deliveries(&store).into_iter().map(|d| d.0).collect();
    assert_eq!(stored, vec![E1.to_owned()]);
    let received: Vec<_> = records(&store)
        .into_iter()
        .filter(|r| r.entry.action == Action::Receive)
        .map(|r| r.entry.operation)
        .collect();
    assert_eq!(received, vec![format!("ArbetssokandeHandelse {E1}")]);
    s.stop().await;
}

/// Batches whose bodies arrive slowly hold the listener's memory while they are read: at most
/// `events.max_batches_in_flight` are read at once; the rest are refused at once (429 with
/// `Retry-After`) before their bodies are read, whatever the number of streams. Before, 300
/// streams of 1 MiB bodies grew the gateway by 396 MiB.
#[tokio::test]
async fn batches_read_at_once_are_bounded_and_the_rest_told_to_come_back() {
    let s = harness::start().await;
    let max = s.inner.config.events.max_batches_in_flight;
    let certs = harness::certs();
    let tls = harness::raw_tls(
        s.inner.gateway.af_addr,
        &certs.join("af-ca.pem"),
        (&certs.join("af-client.pem"), &certs.join("af-client.key")),
        b"h2",
    )
    .await;
    let (send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake::<_, Held>(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    // 40 batches, each sending a first kilobyte of its body and then holding the rest.
    let mut holds = Vec::new();
    let mut answers = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(1);
        tx.send(bytes::Bytes::from(vec![b' '; 1024])).await.unwrap();
        holds.push(tx);
        let req = http::Request::post("https://localhost/af/v1/handelser")
            .header("content-type", "application/json")
            .body(Held(rx))
            .unwrap();
        let mut send = send.clone();
        answers.spawn(async move {
            send.ready().await.unwrap();
            let r = send.send_request(req).await.unwrap();
            (
                r.status().as_u16(),
                r.headers().get("retry-after").is_some(),
            )
        });
    }
    // The refused ones answer at once; the ones being read wait for their bodies.
    let mut refused = 0;
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while refused < 40 - max {
        let next = tokio::time::timeout_at(until, answers.join_next()).await;
        let (status, retry_after) = next.expect("the refusals come at once").unwrap().unwrap();
        assert_eq!((status, retry_after), (429, true));
        refused += 1;
    }
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), answers.join_next())
            .await
            .is_err(),
        "only the {max} being read are left waiting"
    );
    assert_eq!(answers.len(), max);
    // Their bodies end (not JSON): each is answered, and the places are free again.
    drop(holds);
    while let Some(a) = answers.join_next().await {
        assert_eq!(a.unwrap().0, 400);
    }
    let a = post(&af_sender(&s), &json!({"handelser": []})).await;
    problem(&a, 400, "OGILTIGT_FALT");
    s.stop().await;
}

/// A request body that sends what its channel gives, and ends when the channel closes.
struct Held(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl hyper::body::Body for Held {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}
