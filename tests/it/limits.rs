//! Limits as a case system meets them: one municipality's flood is held back with 429 and a
//! Retry-After while the other's requests all go through; the quota towards AF holds under
//! two flooding municipalities; requests under way are capped per client.

use std::sync::Arc;
use std::time::Duration;

use brygga::access::limit::{Configured, Rate};
use brygga::devkit::sim_af;
use brygga::store::audit::{Action, Record};

use crate::harness::{self, Stack, fault, status};

fn rate(per_second: u32, burst: u32) -> Configured {
    let rate = Rate { per_second, burst };
    Configured {
        rate,
        quota: rate.quota().unwrap(),
    }
}

/// A stack with Stockholm held to `st` and `st_concurrent`, and the quota towards AF.
async fn stack(
    st: Configured,
    st_concurrent: usize,
    af: Option<Configured>,
    latency: Duration,
) -> Stack {
    harness::start_custom(
        move |c, sim| {
            for client in c.clients.iter_mut() {
                let client = Arc::get_mut(client).unwrap();
                if client.name == "stockholm" {
                    client.rate = st;
                    client.max_concurrent = st_concurrent;
                }
            }
            c.af_rate = af;
            sim.faults.latency = latency;
        },
        true,
    )
    .await
}

fn records(store: &std::path::Path) -> Vec<Record> {
    harness::audit_records(store)
}

#[tokio::test]
async fn a_flooding_municipality_is_held_back_while_the_other_is_served() {
    let s = Arc::new(stack(rate(2, 5), 10_000, None, Duration::ZERO).await);
    let gb_token = s.gb_token();
    let gb_xml = s.gb_xml("197010632391");
    let started = std::time::Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let s = s.clone();
        flood.spawn(async move { s.ask(Some(&s.st_token())).await });
    }
    let mut steady = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (s, token, xml) = (s.clone(), gb_token.clone(), gb_xml.clone());
        steady.spawn(async move { s.gb.post_raw(Some(&token), xml).await.unwrap() });
    }
    let (mut ok, mut held) = (0, 0);
    while let Some(a) = flood.join_next().await {
        let a = a.unwrap();
        if a.status == 200 {
            ok += 1;
            continue;
        }
        held += 1;
        let fel = fault(&a, 429, "FOR_MANGA_FORFRAGNINGAR");
        assert!(fel.kan_forsokas_igen);
        let after: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=1).contains(&after), "Retry-After {after}");
    }
    // The burst of 5, and 2 a second for as long as they took to arrive.
    let allowed = 5 + (started.elapsed().as_secs_f64() * 2.0).ceil() as usize;
    assert!(
        (5..=allowed).contains(&ok),
        "{ok} went through, {allowed} allowed"
    );
    assert_eq!(ok + held, 30);
    while let Some(a) = steady.join_next().await {
        status(&a.unwrap());
    }
    let store = s.audit_store();
    let s = Arc::into_inner(s).unwrap();
    let _data = s.stop().await;
    // Each refusal is in the audit chain.
    let denied = records(&store)
        .into_iter()
        .filter(|r| r.entry.action == Action::Deny && r.entry.outcome == "FOR_MANGA_FORFRAGNINGAR")
        .count();
    assert_eq!(denied, held);
}

#[tokio::test]
async fn the_quota_towards_af_holds_under_two_flooding_municipalities() {
    let unlimited = harness::unlimited();
    let s = Arc::new(stack(unlimited, 10_000, Some(rate(5, 5)), Duration::ZERO).await);
    let before = s.af_data_requests();
    let started = std::time::Instant::now();
    let gb_token = s
        .gb_idp
        .token(&s.gbg.handlaggare, "1480", "EKB-BESLUT")
        .unwrap();
    let mut all = tokio::task::JoinSet::new();
    for i in 0..40 {
        let (s, gb_token) = (s.clone(), gb_token.clone());
        all.spawn(async move {
            if i % 2 == 0 {
                s.ask(Some(&s.st_token())).await
            } else {
                let f = brygga::devkit::client::example_fraga(
                    &s.gbg.orgnr,
                    &s.gbg.namn,
                    &s.gbg.handlaggare,
                    sim_af::REGISTRERAD,
                    "EKB-BESLUT",
                )
                .unwrap();
                s.gb.call(
                    &gb_token,
                    &brygga::model::KommunRequest::HamtaArbetssokandeStatus(f),
                )
                .await
                .unwrap()
            }
        });
    }
    let mut held = 0;
    while let Some(a) = all.join_next().await {
        let a = a.unwrap();
        if a.status != 200 {
            fault(&a, 429, "AF_KVOT_SLUT");
            held += 1;
        }
    }
    let reached = s.af_data_requests() - before;
    let elapsed = started.elapsed().as_secs_f64();
    // The burst, and 5 a second for as long as it took.
    let allowed = 5 + (elapsed * 5.0).ceil() as u64;
    assert!(reached <= allowed, "{reached} reached AF in {elapsed:.2} s");
    assert_eq!(reached + held, 40);
    let s = Arc::into_inner(s).unwrap();
    s.stop().await;
}

#[tokio::test]
async fn requests_under_way_are_capped_per_client() {
    // AF takes a while, so the first requests are still under way when the others come.
    let s = Arc::new(stack(harness::unlimited(), 2, None, Duration::from_secs(1)).await);
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let s = s.clone();
        all.spawn(async move { s.ask(Some(&s.st_token())).await });
    }
    let mut statuses = Vec::new();
    while let Some(a) = all.join_next().await {
        let a = a.unwrap();
        if a.status != 200 {
            fault(&a, 429, "FOR_MANGA_SAMTIDIGA");
        }
        statuses.push(a.status.as_u16());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!((2..6).contains(&ok), "{statuses:?}");
    // Once they are answered, there is room again.
    status(&s.ask(Some(&s.st_token())).await);
    let s = Arc::into_inner(s).unwrap();
    s.stop().await;
}
