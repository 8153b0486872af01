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

use crate::devkit::bench::{self, Cleanup};
use crate::devkit::demo::DemoFiles;
use crate::devkit::load::{self, Bucket};
use crate::devkit::sim_af::SimStats;

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
const PHASES: usize = 7;
fn phases() -> [(Fault, f64); PHASES] {
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

/// The stretch (`window × PHASES + phase`) a request due `elapsed` into the soak falls in.
fn stretch_of(elapsed: Duration, window: Duration) -> usize {
    let w = window.as_secs_f64().max(1e-9);
    let at = elapsed.as_secs_f64() / w;
    let (index, within) = (at.floor(), at.fract());
    let mut end = 0.0;
    let phase = phases()
        .iter()
        .position(|(_, share)| {
            end += share;
            within < end
        })
        .unwrap_or(PHASES - 1);
    index as usize * PHASES + phase
}

/// Switches AF's faults on the soak's clock, stretch by stretch, for `windows` windows.
async fn switch_faults(stats: Arc<SimStats>, clock: Instant, window: Duration, windows: usize) {
    for i in 0..windows {
        let mut at = clock + window * u32::try_from(i).unwrap_or(u32::MAX);
        for (fault, share) in phases() {
            tokio::time::sleep_until(at.into()).await;
            set_fault(&stats, fault);
            at += window.mul_f64(share);
        }
    }
}

/// Tells the simulator to behave as `fault` says.
fn set_fault(stats: &SimStats, fault: Fault) {
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

/// One window's figures: answers, latency (all, and while AF behaved), errors by Felkod, and
/// the gateway's memory and descriptors at its end.
fn window_row(
    tally: &load::Tally,
    i: usize,
    window: Duration,
    (rss, fds): (u64, u64),
    empty: &hdrhistogram::Histogram<u64>,
) -> serde_json::Value {
    let (mut all, mut calm) = (Bucket::new(empty), Bucket::new(empty));
    for (p, (fault, _)) in phases().iter().enumerate() {
        if let Some(b) = tally.snapshot(i * PHASES + p) {
            all.add(&b);
            if *fault == Fault::None {
                calm.add(&b);
            }
        }
    }
    let answers = answered(all.hist.len(), &all.errors);
    let q = |h: &hdrhistogram::Histogram<u64>, x: f64| h.value_at_quantile(x) as f64 / 1000.0;
    json!({
        "window": i + 1,
        "answers": answers,
        "rps": answers as f64 / window.as_secs_f64().max(1e-9),
        "p50_ms": q(&all.hist, 0.5),
        "p99_ms": q(&all.hist, 0.99),
        "p99_calm_ms": q(&calm.hist, 0.99),
        "errors": all.errors,
        "rss_bytes": rss,
        "fds": fds,
    })
}

fn print_row(row: &serde_json::Value) {
    let f = |k: &str| row[k].as_f64().unwrap_or(0.0);
    let errors: Vec<String> = row["errors"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}: {v}")).collect())
        .unwrap_or_default();
    println!(
        "{:>6} {:>8} {:>8.0} {:>8.2} {:>8.2} {:>10.2} {:>9.1} {:>5}  {}",
        f("window"),
        f("answers"),
        f("rps"),
        f("p50_ms"),
        f("p99_ms"),
        f("p99_calm_ms"),
        f("rss_bytes") / 1_048_576.0,
        f("fds"),
        errors.join(", ")
    );
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
    let empty = load::histogram()?;
    let mut total_answered = 0;
    let mut unanswered: BTreeMap<String, u64> = BTreeMap::new();
    let mut tally = |b: &Bucket| {
        total_answered += answered(b.hist.len(), &b.errors);
        for (k, v) in b.errors.iter().filter(|(k, _)| !k.starts_with("http ")) {
            *unanswered.entry(k.clone()).or_insert(0) += v;
        }
    };
    let conns = opts.connections;
    tally(&load::run_segment(&target, conns, None, opts.warmup, &empty).await);
    let started = Instant::now();
    let measured = load::run_segment(&target, conns, None, opts.peak_duration, &empty).await;
    tally(&measured);
    let peak = measured.hist.len() as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let rate = opts.rate.unwrap_or(peak * LOAD_SHARE).max(1.0);
    if print_table {
        println!(
            "brygga bench --soak: peak {peak:.0} req/s ({conns} connections, closed loop); soaking at {rate:.0} req/s for {} s in windows of {} s",
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

    // The soak: one open-loop run over its whole length, on the same connections throughout;
    // each answer is counted in the stretch (window and fault) in which it was due.
    let windows = (opts.duration.as_secs_f64() / opts.window.as_secs_f64())
        .ceil()
        .max(1.0) as usize;
    let pace = load::Pace::new(Some(rate));
    let clock = pace.start().unwrap_or_else(Instant::now);
    let window = opts.window;
    let buckets = Arc::new(load::Tally::new(windows * PHASES, &empty, move |due| {
        stretch_of(due.saturating_duration_since(clock), window)
    }));
    let until = clock + window * u32::try_from(windows).unwrap_or(u32::MAX);
    let faults = tokio::spawn(switch_faults(sim.stats.clone(), clock, window, windows));
    let running = {
        let (target, buckets) = (target.clone(), buckets.clone());
        tokio::spawn(async move { load::run(&target, conns, until, pace, &buckets).await })
    };
    // At the end of each window: the gateway's memory and descriptors; the window before is
    // printed then, when its last answers are in.
    let mut samples = Vec::with_capacity(windows);
    for i in 0..windows {
        tokio::time::sleep_until((clock + window * (i as u32 + 1)).into()).await;
        samples.push(rss_and_fds(pid));
        if print_table && i > 0 {
            print_row(&window_row(&buckets, i - 1, window, samples[i - 1], &empty));
        }
    }
    let _ = running.await;
    let _ = faults.await;
    set_fault(&sim.stats, Fault::None);
    // The peak again, on the store the soak has grown: whether capacity falls as the audit
    // chain grows.
    let started = Instant::now();
    let measured = load::run_segment(&target, conns, None, opts.peak_duration, &empty).await;
    tally(&measured);
    let peak_after = measured.hist.len() as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let rows: Vec<serde_json::Value> = (0..windows)
        .map(|i| window_row(&buckets, i, window, samples[i], &empty))
        .collect();
    if print_table && let Some(last) = rows.last() {
        print_row(last);
    }
    let mut all = Bucket::new(&empty);
    for i in 0..buckets.buckets.len() {
        if let Some(b) = buckets.snapshot(i) {
            tally(&b);
            all.add(&b);
        }
    }
    let all_errors = all.errors.clone();

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
        "peak_after_rps": peak_after,
        "rate": rate,
        "windows": rows,
        "total": {
            "answers": answered(all.hist.len(), &all_errors),
            "p50_ms": all.hist.value_at_quantile(0.5) as f64 / 1000.0,
            "p99_ms": all.hist.value_at_quantile(0.99) as f64 / 1000.0,
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
            "peak before the soak {peak:.0} req/s, after it {peak_after:.0} req/s ({:+.1} %)",
            (peak_after / peak.max(1e-9) - 1.0) * 100.0
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_due_time_falls_in_the_stretch_of_its_window_and_fault() {
        let minute = Duration::from_secs(60);
        let at = |s: f64| stretch_of(Duration::from_secs_f64(s), minute);
        let fault = |s: f64| phases()[at(s) % PHASES].0;
        assert_eq!(at(0.0), 0);
        assert_eq!(fault(9.9), Fault::None);
        assert_eq!(fault(10.1), Fault::Errors);
        assert_eq!(fault(14.9), Fault::Errors);
        assert_eq!(fault(15.1), Fault::None);
        assert_eq!(fault(26.0), Fault::Slow);
        assert_eq!(fault(41.0), Fault::Down);
        assert_eq!(fault(44.0), Fault::None);
        assert_eq!(at(59.99), PHASES - 1);
        // The next minute starts over, one window further on.
        assert_eq!(at(60.0), PHASES);
        assert_eq!(at(60.0 * 29.0 + 41.0), 29 * PHASES + 5);
    }

    #[test]
    fn the_shares_of_a_window_add_up_to_the_whole() {
        let total: f64 = phases().iter().map(|(_, s)| s).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        assert!(phases().iter().all(|(_, s)| *s > 0.0));
    }
}
