//! A failing AF gives the right Fault, with Kalla AF where AF is the cause, within the deadline.

use std::time::{Duration, Instant};

use brygga::devkit::sim_af;
use brygga::model::{Kalla, KommunAnswer, KommunRequest, TjanstStatus};

use crate::harness::{self, fault, status};

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
        s.st.post_raw(Some(&s.st_token()), s.st_xml(sim_af::REGISTRERAD))
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
        s.st.post_raw(Some(&s.st_token()), s.st_xml(sim_af::REGISTRERAD))
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
            .post_raw(Some(&s.st_token()), s.st_xml(sim_af::REGISTRERAD))
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
            .post_raw(Some(&s.st_token()), s.st_xml(sim_af::REGISTRERAD))
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
            .post_raw(Some(&s.st_token()), s.st_xml(sim_af::REGISTRERAD))
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
            c.af.tls.identity.chain =
                brygga::access::tls::load_certs(&dir.join("klient-0180.pem")).unwrap();
            c.af.tls.identity.key =
                brygga::access::tls::load_key(&dir.join("klient-0180.key")).unwrap();
        },
        true,
    )
    .await;
    fault(
        &s.st
            .post_raw(Some(&s.st_token()), s.st_xml(sim_af::REGISTRERAD))
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

/// A server that is not AF: the simulator with the kommun CA's server certificate (a real
/// certificate, for localhost, from a CA brygga trusts on another edge). brygga refuses it at
/// the handshake, before its client credentials or any question leave.
#[tokio::test]
async fn a_server_posing_as_af_with_another_cas_certificate_gets_nothing() {
    let s = harness::start_custom(
        |_, sim| {
            let dir = harness::certs();
            sim.tls.chain = brygga::access::tls::load_certs(&dir.join("kommun-sim.pem")).unwrap();
            sim.tls.key = brygga::access::tls::load_key(&dir.join("kommun-sim.key")).unwrap();
        },
        true,
    )
    .await;
    let f = fault(
        &s.st
            .post_raw(Some(&s.st_token()), s.st_xml(sim_af::REGISTRERAD))
            .await
            .unwrap(),
        503,
        "AF_EJ_NABAR",
    );
    assert_eq!(f.kalla, Kalla::Af);
    let stats = &s.inner.sim.stats;
    assert_eq!(
        stats
            .token_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no client credentials were offered to the impostor"
    );
    assert_eq!(s.af_data_requests(), 0, "no question reached it");
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
            .post_raw(Some(&s.st_token()), s.st_xml(sim_af::REGISTRERAD))
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
        s.st.post_raw(Some(&s.st_token()), s.st_xml(sim_af::REGISTRERAD))
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

/// AF failing: after five failures in a row the breaker opens and requests fail at once
/// without reaching AF; readiness and Ping say so; within a second of AF coming back,
/// requests are answered again.
#[tokio::test]
async fn a_failing_af_opens_the_breaker_and_it_closes_when_af_returns() {
    // Readiness is not reused here: the test reads it right as the breaker changes.
    let s = harness::start_custom(|c, _| c.health.cache = Duration::ZERO, true).await;
    let down = |d: bool| {
        s.inner
            .sim
            .stats
            .down
            .store(d, std::sync::atomic::Ordering::SeqCst)
    };
    down(true);
    for _ in 0..5 {
        fault(&s.ask(Some(&s.st_token())).await, 502, "AF_FEL");
    }
    let reached = s.af_data_requests();
    let fast = s.ask(Some(&s.st_token())).await;
    let fel = fault(&fast, 503, "AF_EJ_NABAR");
    assert!(fel.kan_forsokas_igen);
    assert_eq!(fast.headers["retry-after"], "1");
    assert_eq!(
        s.af_data_requests(),
        reached,
        "the open breaker sent nothing to AF"
    );
    let admin = format!("http://{}/readyz", s.inner.gateway.admin_addr);
    let ready = reqwest::get(&admin).await.unwrap();
    assert_eq!(ready.status(), 503);
    let ping =
        s.st.call(&s.st_token(), &KommunRequest::Ping(uuid::Uuid::new_v4()))
            .await
            .unwrap();
    match harness::answer(&ping) {
        KommunAnswer::Ping(p) => assert_eq!(p.tjanster[0].status, TjanstStatus::EjNabar),
        other => panic!("{other:?}"),
    }
    // AF is back.
    down(false);
    let back = Instant::now();
    loop {
        let a = s.ask(Some(&s.st_token())).await;
        if a.status == 200 {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(3), "still failing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = back.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "answered again after {took:?}"
    );
    assert_eq!(reqwest::get(&admin).await.unwrap().status(), 200);
    s.stop().await;
}

/// AF failing every other call with 503: a read is tried once more and answered; a reported
/// plan is not retried (it could be reported twice); past the retry budget, reads fail.
#[tokio::test]
async fn reads_are_retried_once_within_the_budget_and_plans_never() {
    let s = harness::start_custom(
        |c, sim| {
            sim.faults.fail_every = 2;
            sim.faults.fail_status = 503;
            c.af.retry_budget = Some({
                let rate = brygga::access::limit::Rate {
                    per_second: 1,
                    burst: 3,
                };
                brygga::access::limit::Configured {
                    rate,
                    quota: rate.quota().unwrap(),
                }
            });
            // The breaker is not what this test is about.
            c.af.breaker_failures = 1000;
        },
        true,
    )
    .await;
    let retries = || {
        s.inner
            .gateway
            .af_retries
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    // Every second AF call fails: each read that meets a failure is retried, and answered.
    for _ in 0..4 {
        harness::status(&s.ask(Some(&s.st_token())).await);
    }
    assert!((1..=3).contains(&retries()), "{} retries", retries());
    let before = s.af_data_requests();
    // A plan is never retried: one AF call, whatever it answers.
    let plan = KommunRequest::AnmalAktivitetsplan(
        brygga::devkit::client::example_fraga(
            &s.sthlm.orgnr,
            &s.sthlm.namn,
            &s.sthlm.handlaggare,
            sim_af::REGISTRERAD,
            "AKT-PLANERING",
        )
        .unwrap(),
        brygga::devkit::client::example_plan().unwrap(),
    );
    let token = s
        .st_idp
        .token(&s.sthlm.handlaggare, "0180", "AKT-PLANERING")
        .unwrap();
    let _ = s.st.call(&token, &plan).await.unwrap();
    assert_eq!(s.af_data_requests(), before + 1);
    // The budget (burst 3) runs out: failures come through.
    let mut failed = 0;
    for _ in 0..12 {
        if s.ask(Some(&s.st_token())).await.status != 200 {
            failed += 1;
        }
    }
    assert!(failed > 0, "past the budget, some reads fail");
    assert!(
        retries() <= 3 + 2,
        "{} retries: the budget holds",
        retries()
    );
    s.stop().await;
}

/// One deadline over the whole exchange: a request that takes too long, whichever step is
/// slow, is answered 504 TIDSGRANS at that deadline, and its record is written.
#[tokio::test]
async fn the_whole_exchange_has_a_deadline() {
    let s = harness::start_custom(
        |c, sim| {
            c.limits.operation_deadline = Duration::from_millis(300);
            sim.faults.latency = Duration::from_secs(2);
        },
        true,
    )
    .await;
    let started = Instant::now();
    let a = s.ask(Some(&s.st_token())).await;
    let took = started.elapsed();
    let fel = fault(&a, 504, "TIDSGRANS");
    assert!(fel.kan_forsokas_igen);
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let store = s.audit_store();
    let _data = s.stop().await;
    let records = harness::audit_records(&store);
    assert_eq!(records.last().unwrap().entry.outcome, "TIDSGRANS");
}

/// hyper's pool has no total cap: `af.max_connections` bounds the calls, so the connections,
/// towards AF. Eight requests at once against a cap of two: AF never sees more than two, and
/// all eight are answered as the two free up.
#[tokio::test]
async fn calls_to_af_are_capped() {
    let s = std::sync::Arc::new(
        harness::start_custom(
            |c, sim| {
                c.af.max_connections = 2;
                sim.faults.latency = Duration::from_millis(200);
            },
            true,
        )
        .await,
    );
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let s = s.clone();
        all.spawn(async move { s.ask(Some(&s.st_token())).await });
    }
    while let Some(a) = all.join_next().await {
        status(&a.unwrap());
    }
    let peak = s
        .inner
        .sim
        .stats
        .peak_in_flight
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(peak, 2, "AF saw {peak} calls at once");
    assert_eq!(s.af_data_requests(), 8);
    let s = std::sync::Arc::into_inner(s).unwrap();
    s.stop().await;
}

/// A wait for a free connection counts against the AF deadline: 504, not a hang.
#[tokio::test]
async fn a_wait_for_a_connection_to_af_ends_at_the_deadline() {
    let s = std::sync::Arc::new(
        harness::start_custom(
            |c, sim| {
                c.af.max_connections = 1;
                // Room for two answers of 300 ms (and a loaded machine's handshake), not three.
                c.af.timeout = Duration::from_millis(800);
                sim.faults.latency = Duration::from_millis(300);
            },
            true,
        )
        .await,
    );
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let s = s.clone();
        all.spawn(async move { s.ask(Some(&s.st_token())).await });
    }
    let (mut ok, mut af_timeouts, mut saturated) = (0, 0, 0);
    while let Some(a) = all.join_next().await {
        let a = a.unwrap();
        if a.status == 200 {
            ok += 1;
        } else {
            // The one that got the connection late ran out of time at AF; the rest never
            // got one.
            let body = String::from_utf8_lossy(&a.body).into_owned();
            if body.contains("<k:Felkod>AF_TIDSGRANS<") {
                af_timeouts += 1;
            } else {
                let f = fault(&a, 504, "TIDSGRANS");
                assert_eq!(f.kalla, brygga::model::Kalla::Gateway);
                saturated += 1;
            }
        }
    }
    assert!(
        af_timeouts <= 2 && saturated >= 4,
        "{af_timeouts} {saturated}"
    );
    assert!((1..8).contains(&ok), "{ok} answered");
    // Six or so waits ran out; none counted as AF failing, so the breaker is closed.
    let metrics = crate::harness::admin_text(s.inner.gateway.admin_addr, "/metrics").await;
    assert!(
        metrics.contains("\nbrygga_af_breaker_open 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("outcome=\"TIDSGRANS\",class=\"brygga\"}"),
        "{metrics}"
    );
    let s = std::sync::Arc::into_inner(s).unwrap();
    s.stop().await;
}

/// An AF that accepts the connection and never completes TLS: the call ends at `af.timeout`
/// with 504, and the connection attempt does not hang the exchange.
#[tokio::test]
async fn af_that_never_finishes_the_handshake_gives_504_at_the_deadline() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    // Accept and hold every connection, saying nothing.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            held.push(c);
        }
    });
    let s = harness::start_custom(
        move |c, _| {
            c.af.base_url = format!("https://localhost:{port}");
            c.af.token_url = format!("https://localhost:{port}/oauth2/token");
            c.af.timeout = Duration::from_millis(400);
        },
        false,
    )
    .await;
    let started = Instant::now();
    let a = s.ask(Some(&s.st_token())).await;
    let took = started.elapsed();
    fault(&a, 504, "AF_TIDSGRANS");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    s.stop().await;
    holder.abort();
}
