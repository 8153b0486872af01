//! Durable audit appends: records per second at 1, 16 and 64 concurrent writers, each append
//! returning only once its record is fsync'd. Group commit is what lets many writers share
//! one fsync; the records-per-commit figure printed after each run shows how much it did.
//! `cargo bench --bench audit` runs them (on the disk that holds `target/`, not a tmpfs).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use brygga::store::audit::{Action, AuditLog, CheckpointPolicy, Entry};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn entry(i: u64) -> Entry {
    Entry {
        time: brygga::store::audit::now(),
        korrelationsid: uuid::Uuid::new_v4().to_string(),
        direction: "af-till-kommun".into(),
        operation: "HamtaArbetssokandeStatus".into(),
        action: Action::Disclose,
        organisation: "212000-0142".into(),
        handlaggare: Some("SE2120000142-HL01".into()),
        arende: Some(format!("EB-2026-{i:06}")),
        subject: Some("a1:iwKJo_Ja8C0fJvWvjcm_zg".into()),
        syfte: Some("EKB-BESLUT".into()),
        lagrum: Some("11 kap. 11 a § socialtjänstlagen".into()),
        kategorier: vec!["REGISTRERING".into(), "KONTOR".into()],
        outcome: "OK".into(),
        af_status: Some(200),
        duration_ms: 2,
        genesis: None,
        enhet: None,
        funktion: None,
        personuppgiftsbitrade: None,
        skyddad_identitet: false,
        pruned: None,
        sample: None,
        review: None,
    }
}

fn durable_appends(c: &mut Criterion) {
    let key = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-example/audit-signing.key"),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("audit append (durable)");
    for writers in [1u64, 16, 64] {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let log = Arc::new(
            AuditLog::start(
                &dir.path().join("audit.db"),
                Some(&key),
                CheckpointPolicy {
                    every_records: 1000,
                    every: Duration::from_secs(60),
                    witness: None,
                    retention: None,
                },
            )
            .unwrap(),
        );
        // One iteration is one record from each writer; the writers run freely, as
        // concurrent requests do, rather than in lock-step rounds.
        group.throughput(Throughput::Elements(writers));
        group.bench_function(format!("{writers} writer(s)"), |b| {
            b.iter_custom(|iters| {
                let log = log.clone();
                rt.block_on(async move {
                    let started = Instant::now();
                    let mut set = tokio::task::JoinSet::new();
                    for w in 0..writers {
                        let log = log.clone();
                        set.spawn(async move {
                            for i in 0..iters {
                                log.append(entry(w * iters + i)).await.unwrap();
                            }
                        });
                    }
                    set.join_all().await;
                    started.elapsed()
                })
            })
        });
        let records = log.stats.records.load(Ordering::Relaxed);
        let commits = log.stats.commits.load(Ordering::Relaxed).max(1);
        eprintln!(
            "{writers} writer(s): {records} records in {commits} commits, {:.1} records per commit",
            records as f64 / commits as f64
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = durable_appends
}
criterion_main!(benches);
