//! AF's events reaching the case systems: delivered to the subscriber only, in order, after the
//! receiver comes back, once after the gateway is killed, and given up after the maximum age.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brygga::devkit::client::KommunClient;
use brygga::devkit::sim_af;
use brygga::devkit::sim_kommun::{self, KommunSimSettings, Lage, RunningKommunSim, SimState};
use brygga::model::*;
use brygga::store::audit::{Action, Record};
use serde_json::{Value, json};

use crate::audit::{ServeSetup, config_with_store, spawn_gateway};
use crate::harness::{self, Stack, answer};

fn sim_settings(port: u16) -> KommunSimSettings {
    let mut s = KommunSimSettings::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kommun-sim.example.toml"),
    )
    .unwrap();
    s.bind = ([127, 0, 0, 1], port).into();
    s
}

async fn kommun_sim(port: u16, state: Option<Arc<SimState>>) -> RunningKommunSim {
    sim_kommun::start(&sim_settings(port), state).await.unwrap()
}

/// A stack whose Stockholm and Göteborg deliver to `st` and `gb`, retrying fast.
async fn stack(st: &RunningKommunSim, gb: &RunningKommunSim, max_age: Duration) -> Stack {
    let (st_url, gb_url) = (st.url(), gb.url());
    harness::start_custom(
        move |c, _| {
            c.endpoints.get_mut("stockholm").unwrap().url = st_url;
            c.endpoints.get_mut("goteborg").unwrap().url = gb_url;
            c.delivery.first_retry = Duration::from_millis(50);
            c.delivery.max_retry = Duration::from_millis(200);
            c.delivery.max_age = max_age;
        },
        true,
    )
    .await
}

pub fn event(id: &str, pnr: &str, minute: u32) -> Value {
    let today = time::OffsetDateTime::now_utc().date();
    json!({
        "handelseId": id,
        "typ": "UTEBLIVEN_AKTIVITET",
        "personnummer": pnr,
        "tidpunkt": format!("{today}T10:{minute:02}:00Z"),
        "uteblivenAktivitet": {"datum": today.to_string(), "aktivitet": "Rusta och matcha", "meddelande": "Deltog inte."}
    })
}

fn following(f: Fraga, arende: &str) -> KommunRequest {
    let today = time::OffsetDateTime::now_utc().date();
    KommunRequest::RegistreraPrenumeration(Fraga {
        arendeidentitet: arende.into(),
        tidsperiod: Tidsperiod::new(today, today + time::Duration::days(30)).unwrap(),
        ..f
    })
}

/// Stockholm subscribes to the registered person in case EB-1.
pub async fn stockholm_follows(s: &Stack) {
    answer(
        &s.st
            .call(
                &s.st_token(),
                &following(s.st_fraga(sim_af::REGISTRERAD), "EB-1"),
            )
            .await
            .unwrap(),
    );
}

fn af_sender(url: &str) -> KommunClient {
    let certs = harness::certs();
    KommunClient::new(
        url,
        &certs.join("af-ca.pem"),
        Some((&certs.join("af-client.pem"), &certs.join("af-client.key"))),
    )
    .unwrap()
}

pub async fn push(url: &str, events: Vec<Value>) {
    let a = af_sender(url)
        .post_with_type(
            None,
            json!({ "handelser": events }).to_string(),
            "application/json",
        )
        .await
        .unwrap();
    assert_eq!(
        a.status.as_u16(),
        202,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
}

/// Waits (bounded) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn outbox_states(store: &Path) -> Vec<(String, Option<String>)> {
    let conn = rusqlite::Connection::open(store).unwrap();
    conn.prepare("SELECT state, payload FROM outbox ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn disclosures(store: &Path) -> Vec<Record> {
    let conn = rusqlite::Connection::open(store).unwrap();
    conn.prepare("SELECT body FROM records ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|b| serde_json::from_str::<Record>(&b.unwrap()).unwrap())
        .filter(|r| r.entry.action == Action::Disclose && r.entry.direction == "af-till-kommun")
        .collect()
}

const E1: &str = "11111111-aaaa-4bbb-8ccc-000000000001";
const E2: &str = "11111111-aaaa-4bbb-8ccc-000000000002";
const E3: &str = "11111111-aaaa-4bbb-8ccc-000000000003";

#[tokio::test]
async fn the_subscriber_gets_the_event_and_the_other_municipality_does_not() {
    let (st_sim, gb_sim) = (kommun_sim(0, None).await, kommun_sim(0, None).await);
    let s = stack(&st_sim, &gb_sim, Duration::from_secs(3600)).await;
    stockholm_follows(&s).await;
    // Göteborg follows someone else.
    let gb_token = s
        .gb_idp
        .token(&s.gbg.handlaggare, "1480", "EKB-BESLUT")
        .unwrap();
    let gb_fraga = brygga::devkit::client::example_fraga(
        &s.gbg.orgnr,
        &s.gbg.namn,
        &s.gbg.handlaggare,
        sim_af::AVAKTUALISERAD,
        "EKB-BESLUT",
    )
    .unwrap();
    answer(
        &s.gb
            .call(&gb_token, &following(gb_fraga, "GB-7"))
            .await
            .unwrap(),
    );
    push(&s.inner.af_url(), vec![event(E1, sim_af::REGISTRERAD, 1)]).await;
    let store = s.audit_store();
    until("the outbox has delivered it", || {
        outbox_states(&store)
            .first()
            .is_some_and(|(st, _)| st == "delivered")
    })
    .await;
    let got = st_sim.state.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (
            got[0].handelse_id.to_string().as_str(),
            got[0].arendeidentitet.as_str()
        ),
        (E1, "EB-1")
    );
    assert_eq!(got[0].typ, "UTEBLIVEN_AKTIVITET");
    assert!(
        gb_sim.state.received().is_empty(),
        "Göteborg follows someone else"
    );
    // Delivered: the payload with the number is gone; the disclosure is recorded.
    assert_eq!(outbox_states(&store), [("delivered".into(), None)]);
    let stats = &s.inner.gateway.delivery_stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!((load(&stats.delivered), load(&stats.failed)), (1, 0));
    let depth = s.inner.gateway_depth().unwrap();
    assert_eq!(
        (depth.pending, depth.dead, depth.oldest_pending),
        (0, 0, None)
    );
    // What operators see of it.
    let metrics = crate::harness::admin_text(s.inner.gateway.admin_addr, "/metrics").await;
    for line in [
        "brygga_deliveries_total{client=\"stockholm\",outcome=\"OK\"} 1",
        "brygga_events_received_total{outcome=\"OK\"} 1",
        "brygga_outbox_pending 0",
        "brygga_outbox_oldest_pending_seconds 0.0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    let _data = s.stop().await;
    let d = disclosures(&store);
    assert_eq!(d.len(), 1);
    let e = &d[0].entry;
    assert_eq!(e.operation, format!("ArbetssokandeHandelse {E1}"));
    assert_eq!(
        (e.organisation.as_str(), e.arende.as_deref()),
        ("212000-0142", Some("EB-1"))
    );
    // Recorded before it left.
    assert_eq!(
        (e.outcome.as_str(), e.syfte.as_deref()),
        ("SKICKAS", Some("EKB-BESLUT"))
    );
    assert_eq!(e.kategorier, ["AKTIVITETSRAPPORT"]);
    assert!(e.subject.as_deref().is_some_and(|p| p.starts_with("a1:")));
    st_sim.shutdown().await;
    gb_sim.shutdown().await;
}

#[tokio::test]
async fn a_receiver_that_was_away_gets_everything_in_order_when_it_returns() {
    let (st_sim, gb_sim) = (kommun_sim(0, None).await, kommun_sim(0, None).await);
    let s = stack(&st_sim, &gb_sim, Duration::from_secs(3600)).await;
    stockholm_follows(&s).await;
    // The case system goes away.
    let (port, remembered) = (st_sim.addr.port(), st_sim.state.clone());
    st_sim.shutdown().await;
    push(&s.inner.af_url(), vec![event(E1, sim_af::REGISTRERAD, 1)]).await;
    push(
        &s.inner.af_url(),
        vec![
            event(E2, sim_af::REGISTRERAD, 2),
            event(E3, sim_af::REGISTRERAD, 3),
        ],
    )
    .await;
    let store = s.audit_store();
    // A few attempts fail while it is away; the later events wait behind the first.
    let conn = rusqlite::Connection::open(&store).unwrap();
    until("a few attempts have failed", || {
        conn.query_row(
            "SELECT attempts FROM outbox ORDER BY seq LIMIT 1",
            [],
            |r| r.get::<_, i64>(0),
        )
        .is_ok_and(|n| n >= 2)
    })
    .await;
    let later: i64 = conn
        .query_row(
            "SELECT max(attempts) FROM outbox WHERE event_id <> ?1",
            [E1],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(later, 0, "the later events were not tried before the first");
    // It comes back on the same address.
    let back = kommun_sim(port, Some(remembered)).await;
    until("all three are delivered", || {
        back.state.received().len() == 3
    })
    .await;
    let got: Vec<String> = back
        .state
        .received()
        .iter()
        .map(|m| m.handelse_id.to_string())
        .collect();
    assert_eq!(got, [E1, E2, E3]);
    assert!(back.state.received().iter().all(|m| m.dubbletter == 0));
    let _data = s.stop().await;
    back.shutdown().await;
    gb_sim.shutdown().await;
}

#[tokio::test]
async fn a_delivery_is_given_up_after_its_maximum_age() {
    let (st_sim, gb_sim) = (kommun_sim(0, None).await, kommun_sim(0, None).await);
    st_sim.state.set(Lage::Fel);
    let s = stack(&st_sim, &gb_sim, Duration::from_millis(400)).await;
    stockholm_follows(&s).await;
    push(&s.inner.af_url(), vec![event(E1, sim_af::REGISTRERAD, 1)]).await;
    let store = s.audit_store();
    until("it is given up", || {
        outbox_states(&store)
            .first()
            .is_some_and(|(st, _)| st == "dead")
    })
    .await;
    // A dead letter keeps its event until an operator retries or drops it.
    let states = outbox_states(&store);
    assert_eq!(states.len(), 1);
    assert!(states[0].1.is_some());

    // The operator looks, and retries it once the case system is back.
    let brygga = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_brygga"))
            .args(args)
            .arg("--store")
            .arg(&store)
            .args(["--operator", "drift-olle"])
            .output()
            .unwrap()
    };
    let listed = brygga(&["outbox", "list", "--json"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!((rows.len(), rows[0]["state"].as_str()), (1, Some("dead")));
    assert_eq!(rows[0]["event_id"].as_str(), Some(E1));
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&sim_af::REGISTRERAD[2..]));
    let seq = rows[0]["seq"].as_i64().unwrap().to_string();
    st_sim.state.set(Lage::Ok);
    let retried = brygga(&["outbox", "retry", &seq]);
    assert!(
        retried.status.success(),
        "{}",
        String::from_utf8_lossy(&retried.stderr)
    );
    until("the retried one is delivered", || {
        st_sim.state.received().len() == 1
    })
    .await;
    until("and marked so", || {
        outbox_states(&store)
            .first()
            .is_some_and(|(st, p)| st == "delivered" && p.is_none())
    })
    .await;
    // A delivered one cannot be dropped; a missing one is named.
    let refused = brygga(&["outbox", "drop", &seq]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is delivered"));
    let missing = brygga(&["outbox", "retry", "999"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no delivery 999"));

    let _data = s.stop().await;
    let d = disclosures(&store);
    // Each attempt, recorded before it left (the case system answered 503), the give-up,
    // and the attempt that was delivered.
    assert!(d.len() >= 3, "{d:#?}");
    assert!(
        d[..d.len() - 2]
            .iter()
            .all(|r| r.entry.outcome == "SKICKAS")
    );
    assert_eq!(d[d.len() - 2].entry.outcome, "GAV_UPP");
    assert_eq!(d[d.len() - 1].entry.outcome, "SKICKAS");
    // The operator's commands are in the chain too.
    let conn = rusqlite::Connection::open(&store).unwrap();
    let ops: Vec<(String, String, String)> = conn
        .prepare("SELECT body FROM records ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|b| serde_json::from_str::<Record>(&b.unwrap()).unwrap())
        .filter(|r| r.entry.direction == "drift")
        .map(|r| {
            (
                r.entry.operation,
                r.entry.outcome,
                r.entry.handlaggare.unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("outbox list".into(), "OK".into(), "drift-olle".into()),
            (
                format!("outbox retry {seq}"),
                "OK".into(),
                "drift-olle".into()
            ),
            (
                format!("outbox drop {seq}"),
                "EJ_MOJLIG".into(),
                "drift-olle".into()
            ),
        ]
    );
    st_sim.shutdown().await;
    gb_sim.shutdown().await;
}

/// The config of `audit::config_with_store`, with Stockholm's endpoint at `port`.
fn config_delivering_to(store: &Path, af_port: u16, port: u16) -> tempfile::NamedTempFile {
    let file = config_with_store(store, Some(af_port));
    let text = std::fs::read_to_string(file.path())
        .unwrap()
        .replace("localhost:9445", &format!("localhost:{port}"))
        .replace("first_retry = \"1s\"", "first_retry = \"50ms\"")
        .replace("max_retry = \"5m\"", "max_retry = \"200ms\"");
    std::fs::write(file.path(), text).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_accepted_before_a_sigkill_is_delivered_once_after_the_restart() {
    let st_sim = kommun_sim(0, None).await;
    // Refuses for now, so the event is still in the outbox when the gateway dies.
    st_sim.state.set(Lage::Fel);
    let port = st_sim.addr.port();
    let setup = ServeSetup::start(Duration::ZERO, |store, af_port| {
        config_delivering_to(store, af_port, port)
    })
    .await;
    let (store, config_file) = (&setup.store, &setup.config_file);

    let mut gw = spawn_gateway(config_file.path());
    let s = &setup.sthlm;
    let f = brygga::devkit::client::example_fraga(
        &s.orgnr,
        &s.namn,
        &s.handlaggare,
        sim_af::REGISTRERAD,
        "EKB-BESLUT",
    )
    .unwrap();
    answer(
        &setup
            .case_system(&gw.url)
            .call(&setup.token, &following(f, "EB-1"))
            .await
            .unwrap(),
    );
    push(&gw.af_url, vec![event(E1, sim_af::REGISTRERAD, 1)]).await;
    gw.child.kill().unwrap(); // SIGKILL, right after the 202
    gw.child.wait().unwrap();
    assert!(st_sim.state.received().is_empty());

    st_sim.state.set(Lage::Ok);
    let mut again = spawn_gateway(config_file.path());
    until("it is delivered after the restart", || {
        st_sim.state.received().len() == 1
    })
    .await;
    until("the outbox has it delivered", || {
        outbox_states(store)
            .first()
            .is_some_and(|(st, _)| st == "delivered")
    })
    .await;
    // Once: no second delivery follows.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = st_sim.state.received();
    assert_eq!((got.len(), got[0].dubbletter), (1, 0));
    again.child.kill().unwrap();
    again.child.wait().unwrap();
    st_sim.shutdown().await;
    setup.af.shutdown().await;
}

/// A stop drains the outbox: a delivery waiting out a long backoff gets one more attempt
/// before the gateway exits, and the case system has it.
#[tokio::test]
async fn a_stop_drains_the_outbox() {
    let (st_sim, gb_sim) = (kommun_sim(0, None).await, kommun_sim(0, None).await);
    st_sim.state.set(Lage::Fel);
    let (st_url, gb_url) = (st_sim.url(), gb_sim.url());
    let s = harness::start_custom(
        move |c, _| {
            c.endpoints.get_mut("stockholm").unwrap().url = st_url;
            c.endpoints.get_mut("goteborg").unwrap().url = gb_url;
            // After the first failure it would wait an hour.
            c.delivery.first_retry = Duration::from_secs(3600);
            c.delivery.max_retry = Duration::from_secs(3600);
        },
        true,
    )
    .await;
    stockholm_follows(&s).await;
    push(&s.inner.af_url(), vec![event(E1, sim_af::REGISTRERAD, 1)]).await;
    let store = s.audit_store();
    let conn = rusqlite::Connection::open(&store).unwrap();
    until("the first attempt has failed", || {
        conn.query_row("SELECT attempts FROM outbox", [], |r| r.get::<_, i64>(0))
            .is_ok_and(|n| n >= 1)
    })
    .await;
    st_sim.state.set(Lage::Ok);
    let _data = s.stop().await;
    assert_eq!(st_sim.state.received().len(), 1, "delivered while stopping");
    assert_eq!(outbox_states(&store), [("delivered".into(), None)]);
    st_sim.shutdown().await;
    gb_sim.shutdown().await;
}

/// Where the store keeps bytes: the database, its write-ahead log and its index of it.
fn store_files(store: &Path) -> Vec<std::path::PathBuf> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut name = store.as_os_str().to_owned();
            name.push(suffix);
            std::path::PathBuf::from(name)
        })
        .collect()
}

/// Which of the store's files hold `needle` now.
fn files_holding(store: &Path, needle: &str) -> Vec<String> {
    store_files(store)
        .into_iter()
        .filter(|f| {
            std::fs::read(f)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .map(|f| f.display().to_string())
        .collect()
}

/// An erased payload is erased from the files too: once an event is delivered, its person's
/// number is found neither in the database nor in its write-ahead log (within the worker's
/// next pass) — and the same after a subscription ends with an event undelivered.
#[tokio::test]
async fn an_erased_payload_is_gone_from_the_store_and_its_log() {
    let (st_sim, gb_sim) = (kommun_sim(0, None).await, kommun_sim(0, None).await);
    let s = stack(&st_sim, &gb_sim, Duration::from_secs(3600)).await;
    stockholm_follows(&s).await;
    let store = s.audit_store();
    push(&s.inner.af_url(), vec![event(E1, sim_af::REGISTRERAD, 1)]).await;
    until("the outbox has delivered it", || {
        outbox_states(&store)
            .first()
            .is_some_and(|(st, _)| st == "delivered")
    })
    .await;
    assert_eq!(st_sim.state.received().len(), 1);
    until("the number is gone from every file of the store", || {
        files_holding(&store, sim_af::REGISTRERAD).is_empty()
    })
    .await;

    // Undelivered, then the subscription ends: dropped, and erased from the files too.
    st_sim.state.set(Lage::Fel);
    push(&s.inner.af_url(), vec![event(E2, sim_af::REGISTRERAD, 2)]).await;
    until("the event is stored, waiting", || {
        outbox_states(&store)
            .iter()
            .any(|(st, p)| st == "pending" && p.is_some())
    })
    .await;
    assert!(!files_holding(&store, sim_af::REGISTRERAD).is_empty());
    let today = time::OffsetDateTime::now_utc().date();
    answer(
        &s.st
            .call(
                &s.st_token(),
                &KommunRequest::AvslutaPrenumeration(Fraga {
                    arendeidentitet: "EB-1".into(),
                    tidsperiod: Tidsperiod::new(today, today).unwrap(),
                    ..s.st_fraga(sim_af::REGISTRERAD)
                }),
            )
            .await
            .unwrap(),
    );
    until("the dropped payload is gone from every file", || {
        files_holding(&store, sim_af::REGISTRERAD).is_empty()
    })
    .await;
    s.stop().await;
}

/// No record, no delivery: an event's disclosure is made durable in the chain before it
/// leaves. While the chain takes no record, nothing is sent; once it does again, the event
/// is delivered, its record first.
#[tokio::test]
async fn a_delivery_leaves_only_after_its_record() {
    let (st_sim, gb_sim) = (kommun_sim(0, None).await, kommun_sim(0, None).await);
    let s = stack(&st_sim, &gb_sim, Duration::from_secs(3600)).await;
    stockholm_follows(&s).await;
    let store = s.audit_store();
    st_sim.state.set(Lage::Fel);
    push(&s.inner.af_url(), vec![event(E1, sim_af::REGISTRERAD, 1)]).await;
    until("a first attempt failed", || st_sim.state.attempts() >= 1).await;
    rusqlite::Connection::open(&store)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON records BEGIN SELECT RAISE(FAIL, 'no space left (test)'); END;",
        )
        .unwrap();
    st_sim.state.set(Lage::Ok);
    let attempts = st_sim.state.attempts();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(st_sim.state.attempts(), attempts, "nothing left unrecorded");
    assert!(st_sim.state.received().is_empty());
    rusqlite::Connection::open(&store)
        .unwrap()
        .execute_batch("DROP TRIGGER refuse;")
        .unwrap();
    until("delivered once recorded", || {
        st_sim.state.received().len() == 1
    })
    .await;
    let _data = s.stop().await;
    let d = disclosures(&store);
    assert!(d.iter().all(|r| r.entry.outcome == "SKICKAS"), "{d:#?}");
    // One record per attempt that left: the failed one and the delivered one.
    assert_eq!(d.len(), attempts + 1);
    st_sim.shutdown().await;
    gb_sim.shutdown().await;
}

fn category_changed(id: &str, pnr: &str) -> Value {
    let today = time::OffsetDateTime::now_utc().date();
    json!({
        "handelseId": id,
        "typ": "SOKANDEKATEGORI_ANDRAD",
        "personnummer": pnr,
        "tidpunkt": format!("{today}T08:00:03Z"),
        "sokandekategori": {"kod": "21", "benamning": "Deltidsarbetslös", "fromDatum": today.to_string()}
    })
}

/// Stockholm follows the person for `syfte`, in case EB-1.
async fn stockholm_follows_for(s: &Stack, syfte: &str) -> brygga::devkit::client::RawAnswer {
    let token = s.st_idp.token(&s.sthlm.handlaggare, "0180", syfte).unwrap();
    let mut f = s.st_fraga(sim_af::REGISTRERAD);
    f.syfte = syfte.into();
    f.lagrum = brygga::devkit::client::example_lagrum(syfte).into();
    s.st.call(&token, &following(f, "EB-1")).await.unwrap()
}

/// The purpose binds what leaves: a follow-up subscription (AKT-UPPFOLJNING) receives a
/// missed activity but not a change of sökandekategori, which its purpose may not see, and
/// nothing of the latter is recorded as disclosed; a subscription registered again under a
/// narrower purpose gets nothing more of what it may no longer see; a purpose that may see
/// none of what events carry cannot subscribe.
#[tokio::test]
async fn an_event_follows_the_purpose_of_its_subscription() {
    let (st_sim, gb_sim) = (kommun_sim(0, None).await, kommun_sim(0, None).await);
    let (st_url, gb_url) = (st_sim.url(), gb_sim.url());
    let s = harness::start_custom(
        move |c, _| {
            c.endpoints.get_mut("stockholm").unwrap().url = st_url;
            c.endpoints.get_mut("goteborg").unwrap().url = gb_url;
            c.delivery.first_retry = Duration::from_millis(50);
            c.delivery.max_retry = Duration::from_millis(100);
            // A purpose that sees benefit decisions only.
            let mut bidrag = c.syften["EKB-BESLUT"].clone();
            bidrag.kod = "EKB-ERSATTNING".into();
            bidrag.kategorier = [Datakategori::Ersattningar].into_iter().collect();
            c.syften.insert(bidrag.kod.clone(), bidrag);
            if let Some(st) = Arc::get_mut(&mut c.clients[0]) {
                st.syften.insert("EKB-ERSATTNING".into());
            }
        },
        true,
    )
    .await;
    let refused = stockholm_follows_for(&s, "EKB-ERSATTNING").await;
    let fel = harness::fault(&refused, 403, "SYFTE_UTAN_HANDELSER");
    assert_eq!(fel.falt.as_deref(), Some("Fraga/Syfte"));

    answer(&stockholm_follows_for(&s, "AKT-UPPFOLJNING").await);
    push(
        &s.inner.af_url(),
        vec![
            category_changed(E1, sim_af::REGISTRERAD),
            event(E2, sim_af::REGISTRERAD, 2),
        ],
    )
    .await;
    until("the missed activity is delivered", || {
        st_sim.state.received().len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got: Vec<String> = st_sim
        .state
        .received()
        .iter()
        .map(|m| m.handelse_id.to_string())
        .collect();
    assert_eq!(got, vec![E2.to_owned()]);

    // Registered under EKB-BESLUT while the case system is away: the category change waits.
    // Registered again under AKT-UPPFOLJNING before it is delivered: it is withheld.
    answer(&stockholm_follows_for(&s, "EKB-BESLUT").await);
    st_sim.state.set(Lage::Fel);
    push(
        &s.inner.af_url(),
        vec![category_changed(E3, sim_af::REGISTRERAD)],
    )
    .await;
    until("an attempt was made", || st_sim.state.attempts() >= 2).await;
    answer(&stockholm_follows_for(&s, "AKT-UPPFOLJNING").await);
    st_sim.state.set(Lage::Ok);
    let store = s.audit_store();
    until("it is withheld, its payload erased", || {
        outbox_states(&store)
            .iter()
            .any(|(st, p)| st == "dropped" && p.is_none())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(st_sim.state.received().len(), 1);
    let _data = s.stop().await;
    let disclosed: Vec<String> = disclosures(&store)
        .iter()
        .map(|r| r.entry.operation.clone())
        .collect();
    assert!(disclosed.iter().all(|o| !o.contains(E1)), "{disclosed:?}");
    st_sim.shutdown().await;
    gb_sim.shutdown().await;
}
