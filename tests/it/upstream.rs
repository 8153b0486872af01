//! A failing AF gives the right Fault, with Kalla AF where AF is the cause, within the deadline.

use std::time::{Duration, Instant};

use brygga::model::Kalla;
use brygga::sim;

use crate::harness::{self, fault};

#[tokio::test]
async fn af_down_gives_503_with_kalla_af() {
    // Point the gateway at a port where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let s = harness::start_custom(
        |c, _| {
            c.af.base_url = format!("https://localhost:{port}");
            c.af.token_url = format!("https://localhost:{port}/oauth2/token");
        },
        false,
    )
    .await;
    let a =
        s.st.post_raw(Some(&s.st_token()), s.st_xml(sim::REGISTRERAD))
            .await
            .unwrap();
    let f = fault(&a, 503, "AF_EJ_NABAR");
    assert_eq!(f.kalla, Kalla::Af);
    assert!(f.kan_forsokas_igen);
    s.stop().await;
}

#[tokio::test]
async fn af_slow_gives_504_at_the_deadline() {
    let deadline = Duration::from_millis(400);
    let s = harness::start_custom(
        |c, sim| {
            c.af.timeout = deadline;
            sim.faults.latency = Duration::from_secs(30);
        },
        true,
    )
    .await;
    let started = Instant::now();
    let a =
        s.st.post_raw(Some(&s.st_token()), s.st_xml(sim::REGISTRERAD))
            .await
            .unwrap();
    let took = started.elapsed();
    let f = fault(&a, 504, "AF_TIDSGRANS");
    assert_eq!(f.kalla, Kalla::Af);
    assert!(f.kan_forsokas_igen);
    // Functional bound, not a speed claim: the answer comes at the deadline, not after AF's 30 s.
    assert!(
        took >= deadline && took < Duration::from_secs(10),
        "took {took:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn af_errors_and_broken_answers_give_502() {
    let s = harness::start_custom(
        |_, sim| {
            sim.faults.fail_every = 1;
            sim.faults.fail_status = 503;
        },
        true,
    )
    .await;
    let f = fault(
        &s.st
            .post_raw(Some(&s.st_token()), s.st_xml(sim::REGISTRERAD))
            .await
            .unwrap(),
        502,
        "AF_FEL",
    );
    assert_eq!(f.kalla, Kalla::Af);
    assert!(
        !f.meddelande.contains("simulator"),
        "upstream detail never reaches the caller"
    );
    s.stop().await;

    let s = harness::start_custom(|_, sim| sim.faults.invalid_answers = true, true).await;
    let f = fault(
        &s.st
            .post_raw(Some(&s.st_token()), s.st_xml(sim::REGISTRERAD))
            .await
            .unwrap(),
        502,
        "AF_OGILTIGT_SVAR",
    );
    assert_eq!(f.kalla, Kalla::Af);
    assert!(!f.kan_forsokas_igen);
    s.stop().await;
}

#[tokio::test]
async fn af_refusing_the_gateways_credentials_is_not_retryable() {
    let s =
        harness::start_custom(|_, sim| sim.client_ids = vec!["someone-else".into()], true).await;
    let f = fault(
        &s.st
            .post_raw(Some(&s.st_token()), s.st_xml(sim::REGISTRERAD))
            .await
            .unwrap(),
        502,
        "AF_AVVISADE",
    );
    assert_eq!(
        f.kalla,
        Kalla::Gateway,
        "a credentials problem is the gateway's to fix"
    );
    assert!(!f.kan_forsokas_igen);
    assert_eq!(s.af_data_requests(), 0);
    s.stop().await;
}

#[tokio::test]
async fn af_refuses_a_gateway_without_its_client_certificate() {
    // The simulator requires the gateway's certificate from AF's CA; one from the kommun CA fails.
    let s = harness::start_custom(
        |c, _| {
            let dir = harness::certs();
            c.af.identity.chain = brygga::tls::load_certs(&dir.join("klient-0180.pem")).unwrap();
            c.af.identity.key = brygga::tls::load_key(&dir.join("klient-0180.key")).unwrap();
        },
        true,
    )
    .await;
    fault(
        &s.st
            .post_raw(Some(&s.st_token()), s.st_xml(sim::REGISTRERAD))
            .await
            .unwrap(),
        503,
        "AF_EJ_NABAR",
    );
    assert_eq!(
        s.inner
            .sim
            .stats
            .token_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    s.stop().await;
}

#[tokio::test]
async fn af_refusing_the_question_is_not_retryable_and_af_overload_says_when_to_retry() {
    let s = harness::start_custom(
        |_, sim| {
            sim.faults.fail_every = 1;
            sim.faults.fail_status = 422;
        },
        true,
    )
    .await;
    let f = fault(
        &s.st
            .post_raw(Some(&s.st_token()), s.st_xml(sim::REGISTRERAD))
            .await
            .unwrap(),
        502,
        "AF_AVVISADE_FRAGAN",
    );
    assert_eq!(f.kalla, Kalla::Af);
    assert!(
        !f.kan_forsokas_igen,
        "the same question would be refused again"
    );
    s.stop().await;

    let s = harness::start_custom(
        |_, sim| {
            sim.faults.fail_every = 1;
            sim.faults.fail_status = 429;
        },
        true,
    )
    .await;
    let a =
        s.st.post_raw(Some(&s.st_token()), s.st_xml(sim::REGISTRERAD))
            .await
            .unwrap();
    let f = fault(&a, 503, "AF_OVERBELASTAD");
    assert!(f.kan_forsokas_igen);
    assert_eq!(
        a.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("7"),
        "AF's Retry-After is passed on"
    );
    s.stop().await;
}
