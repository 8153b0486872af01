//! `brygga bench --soak DURATION`: the gateway held at 80 % of its measured peak for a long
//! time while AF fails now and then, watched window by window (a minute by default): latency,
//! errors by Felkod, the gateway's resident memory and open file descriptors. At the end the
//! audit chain is verified and its records counted against the answers the load received, so
//! a leak, a slow drift or a lost record shows as a figure.
//!
//! The gateway runs as a child process (its memory and descriptors are read from `/proc`);
//! the AF simulator runs in this process, so its faults can be switched while it runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::devkit::bench::{self, BenchOptions, Cleanup};
use crate::devkit::demo::DemoFiles;

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// The soak itself, after the peak is measured.
    pub duration: Duration,
    /// One line of figures per window.
    pub window: Duration,
    pub connections: usize,
    /// Unmeasured load first, then the closed-loop measurement of the peak.
    pub warmup: Duration,
    pub peak_duration: Duration,
    /// A fixed rate instead of 80 % of the measured peak.
    pub rate: Option<f64>,
    pub files: DemoFiles,
}

/// The share of the measured peak the soak runs at.
pub const LOAD_SHARE: f64 = 0.8;

/// The pass marks the README states for a soak.
const P99_SPREAD: f64 = 0.20;
const RSS_GROWTH: f64 = 0.05;

/// When in each window AF misbehaves, as fractions of the window (10–15 s, 25–30 s and
/// 40–43 s of a minute): every window meets the same faults, so windows stay comparable.
const ERRORS: (f64, f64) = (1.0 / 6.0, 1.0 / 4.0);
const SLOW: (f64, f64) = (5.0 / 12.0, 1.0 / 2.0);
const OUTAGE: (f64, f64) = (2.0 / 3.0, 0.72);

/// What AF does during one stretch of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// AF answers as it should.
    None,
    /// Every 5th answer is a 503.
    Errors,
    /// Every 50th answer is 50 ms late.
    Slow,
    /// AF is down: every request and health check gets 503.
    Down,
}

/// A window's stretches in order, each with its share of the window.
fn phases() -> [(Fault, f64); 7] {
    [
        (Fault::None, ERRORS.0),
        (Fault::Errors, ERRORS.1 - ERRORS.0),
        (Fault::None, SLOW.0 - ERRORS.1),
        (Fault::Slow, SLOW.1 - SLOW.0),
        (Fault::None, OUTAGE.0 - SLOW.1),
        (Fault::Down, OUTAGE.1 - OUTAGE.0),
        (Fault::None, 1.0 - OUTAGE.1),
    ]
}

/// Tells the simulator to behave as `fault` says.
fn set_fault(stats: &crate::devkit::sim_af::SimStats, fault: Fault) {
    stats.fail_every.store(
        if fault == Fault::Errors { 5 } else { 0 },
        Ordering::Relaxed,
    );
    stats.slow_ms.store(50, Ordering::Relaxed);
    stats
        .slow_every
        .store(if fault == Fault::Slow { 50 } else { 0 }, Ordering::Relaxed);
    stats.down.store(fault == Fault::Down, Ordering::SeqCst);
}

/// Resident memory (bytes) and open file descriptors of a process, from `/proc`.
fn rss_and_fds(pid: u32) -> (u64, u64) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    (rss, fds)
}

/// The median of a figure over the windows, and how far (as a share of the median) the
/// furthest window is from it.
fn median_and_spread(rows: &[serde_json::Value], figure: &str) -> (f64, f64) {
    let values: Vec<f64> = rows.iter().filter_map(|r| r[figure].as_f64()).collect();
    let median = {
        let mut s = values.clone();
        s.sort_by(f64::total_cmp);
        s.get(s.len() / 2).copied().unwrap_or(0.0)
    };
    let spread = values
        .iter()
        .map(|p| (p - median).abs() / median.max(1e-9))
        .fold(0.0, f64::max);
    (median, spread)
}

/// Requests that got an answer (any status): each must have its audit record.
fn answered(hist_len: u64, errors: &BTreeMap<String, u64>) -> u64 {
    hist_len
        + errors
            .iter()
            .filter(|(k, _)| k.starts_with("http "))
            .map(|(_, v)| v)
            .sum::<u64>()
}

/// What the chain holds after the run: verified, and its exchange records counted.
fn check_chain(store: &Path, certs: &Path) -> Result<(bool, String, u64), String> {
    let conn =
        crate::store::audit::open_existing(&store.to_string_lossy()).map_err(|e| e.to_string())?;
    let key = std::fs::read(certs.join("audit-signing.pub.pem")).map_err(|e| e.to_string())?;
    let verdict =
        crate::store::audit::verify(&conn, &[&key], &mut |_, _| {}).map_err(|e| e.to_string())?;
    let (ok, detail) = match verdict {
        Ok(v) => (
            true,
            format!(
                "{} records, {} checkpoints, signed through {}",
                v.records, v.checkpoints, v.signed_through
            ),
        ),
        Err(t) => (false, t.to_string()),
    };
    let records: i64 = conn
        .query_row(
            "SELECT count(*) FROM records \
             WHERE json_extract(body, '$.entry.operation') = 'HamtaArbetssokandeStatus'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| e.to_string())?;
    Ok((ok, detail, u64::try_from(records).unwrap_or(0)))
}

/// Runs the soak; returns every figure as JSON (and prints a line per window when asked).
pub async fn run(opts: &SoakOptions, print_table: bool) -> Result<serde_json::Value, String> {
    let certs = std::fs::canonicalize(&opts.files.certs)
        .map_err(|e| format!("{}: {e}", opts.files.certs.display()))?;
    let dir = std::env::temp_dir().join(format!("brygga-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let _cleanup = Cleanup(dir.clone());

    let sim_toml = bench::write_sim_config(&opts.files, &certs, &dir)?;
    let sim =
        crate::devkit::sim_af::start(crate::devkit::sim_af::SimSettings::load(&sim_toml)?).await?;
    let config =
        bench::write_gateway_config(&opts.files, &certs, &dir, "soak", sim.addr.port(), true)?;
    let (gateway, port) = bench::start_gateway(&config, &dir.join("soak.log"))?;
    let pid = gateway.0.id();
    let target = Arc::new(bench::gateway_target(
        &certs,
        &bench::persons(512),
        port,
        pid,
    )?);

    // The peak, closed loop, after a warm-up; every answer counts towards the audit check.
    let empty = bench::histogram()?;
    let mut load = BenchOptions {
        connections: opts.connections,
        duration: opts.peak_duration,
        rounds: 1,
        warmup: opts.warmup,
        rate: None,
        nginx: false,
        files: opts.files.clone(),
    };
    let mut total_answered = 0;
    let mut unanswered: BTreeMap<String, u64> = BTreeMap::new();
    let mut tally = |hist_len: u64, errors: &BTreeMap<String, u64>| {
        total_answered += answered(hist_len, errors);
        for (k, v) in errors.iter().filter(|(k, _)| !k.starts_with("http ")) {
            *unanswered.entry(k.clone()).or_insert(0) += v;
        }
    };
    let (h, e) = bench::run_segment(&target, &load, opts.warmup, &empty).await;
    tally(h.len(), &e);
    let started = Instant::now();
    let (h, e) = bench::run_segment(&target, &load, opts.peak_duration, &empty).await;
    tally(h.len(), &e);
    let peak = h.len() as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let rate = opts.rate.unwrap_or(peak * LOAD_SHARE).max(1.0);
    load.rate = Some(rate);
    if print_table {
        println!(
            "brygga bench --soak: peak {peak:.0} req/s ({} connections, closed loop); soaking at {rate:.0} req/s for {} s in windows of {} s",
            opts.connections,
            opts.duration.as_secs(),
            opts.window.as_secs_f64()
        );
        println!(
            "AF's faults in every window: 503 on every 5th answer at {:.0}-{:.0} %, every 50th answer 50 ms late at {:.0}-{:.0} %, down at {:.0}-{:.0} %",
            ERRORS.0 * 100.0,
            ERRORS.1 * 100.0,
            SLOW.0 * 100.0,
            SLOW.1 * 100.0,
            OUTAGE.0 * 100.0,
            OUTAGE.1 * 100.0
        );
        println!(
            "{:>6} {:>8} {:>8} {:>8} {:>8} {:>10} {:>9} {:>5}  errors by Felkod",
            "window", "answers", "req/s", "p50 ms", "p99 ms", "p99 calm", "RSS MiB", "fds"
        );
    }

    // The soak, window by window.
    let windows = (opts.duration.as_secs_f64() / opts.window.as_secs_f64())
        .ceil()
        .max(1.0) as usize;
    let mut rows = Vec::with_capacity(windows);
    let mut all = empty.clone();
    let mut all_errors: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..windows {
        // The window stretch by stretch, so the latency while AF behaves (calm) is seen
        // apart from the latency its faults cause.
        let started = Instant::now();
        let (mut h, mut calm) = (empty.clone(), empty.clone());
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for (fault, share) in phases() {
            set_fault(&sim.stats, fault);
            let (ph, pe) =
                bench::run_segment(&target, &load, opts.window.mul_f64(share), &empty).await;
            let _ = h.add(&ph);
            if fault == Fault::None {
                let _ = calm.add(&ph);
            }
            for (k, v) in pe {
                *errors.entry(k).or_insert(0) += v;
            }
        }
        set_fault(&sim.stats, Fault::None);
        let seconds = started.elapsed().as_secs_f64();
        let (rss, fds) = rss_and_fds(pid);
        tally(h.len(), &errors);
        let answers = answered(h.len(), &errors);
        let q = |x: f64| h.value_at_quantile(x) as f64 / 1000.0;
        let row = json!({
            "window": i + 1,
            "answers": answers,
            "rps": answers as f64 / seconds.max(1e-9),
            "p50_ms": q(0.5),
            "p99_ms": q(0.99),
            "p99_calm_ms": calm.value_at_quantile(0.99) as f64 / 1000.0,
            "errors": errors,
            "rss_bytes": rss,
            "fds": fds,
        });
        if print_table {
            let errs: Vec<String> = errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            println!(
                "{:>6} {:>8} {:>8.0} {:>8.2} {:>8.2} {:>10.2} {:>9.1} {:>5}  {}",
                i + 1,
                answers,
                row["rps"].as_f64().unwrap_or(0.0),
                q(0.5),
                q(0.99),
                row["p99_calm_ms"].as_f64().unwrap_or(0.0),
                rss as f64 / 1_048_576.0,
                fds,
                errs.join(", ")
            );
        }
        let _ = all.add(&h);
        for (k, v) in errors {
            *all_errors.entry(k).or_insert(0) += v;
        }
        rows.push(row);
    }

    // The gateway stops as an operator stops it (SIGTERM: it drains and writes its last
    // records), then its chain is read.
    drop(target);
    drop(gateway);
    sim.shutdown().await;
    let (chain_ok, chain_detail, records) = check_chain(&dir.join("soak.db"), &certs)?;

    let (median, spread) = median_and_spread(&rows, "p99_ms");
    let (calm_median, calm_spread) = median_and_spread(&rows, "p99_calm_ms");
    let rss_first = rows
        .first()
        .and_then(|r| r["rss_bytes"].as_u64())
        .unwrap_or(0);
    let rss_last = rows
        .last()
        .and_then(|r| r["rss_bytes"].as_u64())
        .unwrap_or(0);
    let growth = (rss_last as f64 - rss_first as f64) / (rss_first as f64).max(1.0);
    let lost = total_answered.saturating_sub(records);
    let result = json!({
        "options": {
            "duration_s": opts.duration.as_secs_f64(),
            "window_s": opts.window.as_secs_f64(),
            "connections": opts.connections,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        },
        "peak_rps": peak,
        "rate": rate,
        "windows": rows,
        "total": {
            "answers": answered(all.len(), &all_errors),
            "p50_ms": all.value_at_quantile(0.5) as f64 / 1000.0,
            "p99_ms": all.value_at_quantile(0.99) as f64 / 1000.0,
            "errors": all_errors,
        },
        "p99_median_ms": median,
        "p99_max_deviation": spread,
        "p99_calm_median_ms": calm_median,
        "p99_calm_max_deviation": calm_spread,
        "rss_growth": growth,
        "audit": {
            "verified": chain_ok,
            "detail": chain_detail,
            "records": records,
            "answered": total_answered,
            "lost": lost,
            "unanswered": unanswered,
        },
        "pass": {
            "p99_within_20_percent": spread <= P99_SPREAD,
            "rss_growth_under_5_percent": growth < RSS_GROWTH,
            "no_lost_record": chain_ok && lost == 0,
        },
    });
    if print_table {
        println!(
            "p99 per window: median {median:.2} ms, furthest {:.1} % from it (pass mark 20 %); while AF behaved: median {calm_median:.2} ms, furthest {:.1} %; RSS {:.1} -> {:.1} MiB ({:+.1} %, pass mark 5 %)",
            spread * 100.0,
            calm_spread * 100.0,
            rss_first as f64 / 1_048_576.0,
            rss_last as f64 / 1_048_576.0,
            growth * 100.0
        );
        println!(
            "audit chain: {} ({chain_detail}); {records} exchange records for {total_answered} answers: {lost} lost",
            if chain_ok { "verified" } else { "TAMPERED" }
        );
    }
    if !chain_ok || lost > 0 {
        return Err(format!(
            "the soak lost audit records or broke the chain: {result}"
        ));
    }
    Ok(result)
}
