//! The admin listener for operations: liveness, readiness with named checks, Prometheus
//! metrics and the status page. Nothing here carries personal data: the figures are counts,
//! and the labels are configured names, operations and codes.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use hyper::Request;
use hyper::body::Incoming;
use serde_json::json;

use crate::gateway::server::{HttpResponse, respond};
use crate::gateway::state::Gateway;
use crate::model::TjanstStatus;
use crate::ops::metrics::Expiry;

/// Serves `/healthz`, `/readyz`, `/metrics` and `/status`.
pub async fn serve_admin(gw: Arc<Gateway>, req: Request<Incoming>) -> HttpResponse {
    let path = req.uri().path();
    if !matches!(path, "/healthz" | "/readyz" | "/metrics" | "/status") {
        return respond(StatusCode::NOT_FOUND, "text/plain", "not found\n");
    }
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut r = respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use GET\n");
        r.headers_mut().insert(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, HEAD"),
        );
        return r;
    }
    let r = match path {
        "/healthz" => respond(StatusCode::OK, "application/json", r#"{"status":"ok"}"#),
        "/readyz" => {
            let r = readiness(&gw).await;
            respond(r.status, "application/json", r.body.to_string())
        }
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            scrape(&gw).await,
        ),
        _ => {
            let snapshot = snapshot(&gw).await;
            respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                status_page(&snapshot),
            )
        }
    };
    if head {
        crate::gateway::server::head_only(r)
    } else {
        r
    }
}

/// A readiness answer, reused for `health.cache`.
#[derive(Clone)]
pub struct Readiness {
    pub status: StatusCode,
    pub body: serde_json::Value,
    at: Instant,
}

/// The last readiness answer. A tokio mutex: probes that arrive together wait for one check
/// instead of each asking AF.
#[derive(Default)]
pub struct ReadinessCache(tokio::sync::Mutex<Option<Readiness>>);

/// The store takes writes, AF answers (and its breaker is closed), every certificate has more
/// than `health.min_certificate_days` left, every remote JWKS is fresh.
pub async fn readiness(gw: &Gateway) -> Readiness {
    let mut cached = gw.readiness.0.lock().await;
    if let Some(r) = cached
        .as_ref()
        .filter(|r| r.at.elapsed() < gw.config.health.cache)
    {
        return r.clone();
    }
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    let mut check = |name: &str, ok: bool, detail: String| {
        ready &= ok;
        checks.insert(
            name.to_owned(),
            json!({ "status": if ok { "ok" } else { "fail" }, "detail": detail }),
        );
    };

    let outbox = gw.outbox.clone();
    let store = tokio::task::spawn_blocking(move || outbox.probe_writable()).await;
    let audit_failing = gw
        .audit
        .stats
        .failing
        .load(std::sync::atomic::Ordering::Relaxed);
    match store {
        Ok(Ok(())) if audit_failing => check(
            "store",
            false,
            "the latest audit commit failed; answers are withheld until one succeeds".into(),
        ),
        Ok(Ok(())) => check("store", true, "takes writes".into()),
        Ok(Err(e)) => check("store", false, format!("does not take writes: {e}")),
        Err(_) => check("store", false, "the check failed".into()),
    }

    // Checkpoints that do not leave the host are evidence an attacker on it could replace.
    if let Some(w) = &gw.config.audit.policy.witness {
        let failing = gw
            .audit
            .stats
            .witness_failing
            .load(std::sync::atomic::Ordering::Relaxed);
        check(
            "witness",
            !failing,
            if failing {
                format!(
                    "the latest signed checkpoint could not be written to {}; it is retried with the next",
                    w.display()
                )
            } else {
                format!("checkpoints go to {}", w.display())
            },
        );
    }

    let (af, ms) = gw.af.health().await;
    let breaker_open = gw.af.breaker.is_open();
    let af_ok = af == TjanstStatus::Ok && !breaker_open;
    check(
        "af",
        af_ok,
        if breaker_open {
            "the circuit breaker is open: AF failed repeatedly".into()
        } else {
            format!("{} in {ms} ms", af.code())
        },
    );

    let min_days = f64::from(gw.config.health.min_certificate_days);
    // The optional collector's CA does not make the gateway unready (the status page and
    // the alert still show it).
    let expiries: Vec<Expiry> = gw
        .expiries()
        .into_iter()
        .filter(|e| !e.name.starts_with("telemetry."))
        .collect();
    match expiries.first() {
        Some(soonest) if soonest.days_left() < min_days => check(
            "certificates",
            false,
            format!(
                "{} ({}) has {:.1} days left, fewer than {min_days}",
                soonest.name,
                soonest.kind,
                soonest.days_left()
            ),
        ),
        Some(soonest) => check(
            "certificates",
            true,
            format!(
                "{} checked; soonest {} in {:.0} days",
                expiries.len(),
                soonest.name,
                soonest.days_left()
            ),
        ),
        None => check("certificates", true, "none configured".into()),
    }

    let max_age = gw.config.health.jwks_max_age;
    let stale: Vec<String> = gw
        .config
        .clients
        .iter()
        .filter_map(|c| match c.idp.freshness() {
            (_, 0) => Some(format!("{}: no keys", c.name)),
            (None, _) => Some(format!("{}: never fetched", c.name)),
            (Some(age), _) if c.idp.is_remote() && age > max_age => {
                Some(format!("{}: fetched {} s ago", c.name, age.as_secs()))
            }
            _ => None,
        })
        .collect();
    check(
        "jwks",
        stale.is_empty(),
        if stale.is_empty() {
            format!("{} client(s) have keys", gw.config.clients.len())
        } else {
            stale.join("; ")
        },
    );

    // A source learned from a peer's certificate concerns that peer's CA alone (its
    // certificates are refused until its CRL is here): it is named, but does not make the
    // gateway unready.
    let sources = gw.crls.status();
    let (learned, own): (Vec<_>, Vec<_>) = sources.iter().partition(|s| s.learned);
    let crl_problems: Vec<String> = own.iter().filter_map(|s| s.problem()).collect();
    let learned_problems: Vec<String> = learned.iter().filter_map(|s| s.problem()).collect();
    let mut detail = if crl_problems.is_empty() {
        format!(
            "{} configured source(s) current, {} learned",
            own.len(),
            learned.len()
        )
    } else {
        crl_problems.join("; ")
    };
    if !learned_problems.is_empty() {
        detail.push_str(&format!(
            "; learned from certificates (not counted): {}",
            learned_problems.join("; ")
        ));
    }
    check("crls", crl_problems.is_empty(), detail);

    let r = Readiness {
        status: if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        body: json!({
            "status": if ready { "ready" } else { "not ready" },
            "checks": checks,
        }),
        at: Instant::now(),
    };
    *cached = Some(r.clone());
    r
}

/// Sets the values read from their owners, then encodes, under one lock.
async fn scrape(gw: &Gateway) -> String {
    let m = &gw.metrics;
    // The store first: the one wait, before the scrape lock is taken.
    let outbox = gw.outbox.clone();
    let depth = tokio::task::spawn_blocking(move || outbox.depth())
        .await
        .ok()
        .and_then(Result::ok);
    let expiries = gw.expiries();
    // Two scrapes at once must not both add a mirrored counter's difference.
    let _scrape = m.scrape.lock().unwrap_or_else(|p| p.into_inner());
    m.af_breaker_open.set(i64::from(gw.af.breaker.is_open()));
    m.af_calls_in_flight
        .set(i64::try_from(gw.af.calls_in_flight()).unwrap_or(i64::MAX));
    m.af_retries(gw.af.retry_count.load(std::sync::atomic::Ordering::Relaxed));
    m.crl_sources(&gw.crls.status());
    m.audit_totals(&gw.audit.stats);
    if let Some(t) = &gw.telemetry {
        m.telemetry_totals(&t.stats);
    }
    if let Some(depth) = depth {
        m.outbox_pending
            .set(i64::try_from(depth.pending).unwrap_or(i64::MAX));
        m.outbox_dead
            .set(i64::try_from(depth.dead).unwrap_or(i64::MAX));
        let age = depth
            .oldest_pending
            .map(|t| {
                (time::OffsetDateTime::now_utc() - t)
                    .as_seconds_f64()
                    .max(0.0)
            })
            .unwrap_or(0.0);
        m.outbox_oldest_seconds.set(age);
    }
    // Rebuilt whole: a certificate gone with a reload leaves no stale series behind.
    m.expiry_seconds.clear();
    for e in expiries {
        m.expiry_seconds
            .get_or_create(&crate::ops::metrics::CertificateLabels {
                certificate: e.name,
                kind: e.kind,
            })
            .set(e.seconds_left);
    }
    for c in &gw.config.clients {
        let (age, keys) = c.idp.freshness();
        let labels = crate::ops::metrics::JwksLabels {
            client: c.name.clone(),
            source: if c.idp.is_remote() { "url" } else { "file" },
        };
        m.jwks_keys
            .get_or_create(&labels)
            .set(i64::try_from(keys).unwrap_or(i64::MAX));
        // Never fetched: as old as can be, so the alert fires.
        m.jwks_age_seconds
            .get_or_create(&labels)
            .set(age.map(|a| a.as_secs_f64()).unwrap_or(f64::MAX));
    }
    m.encode()
}

/// What the status page shows.
struct Snapshot {
    version: &'static str,
    render: u64,
    rows: Vec<crate::ops::metrics::RecentRow>,
    ready: Readiness,
    breaker_open: bool,
    af_in_flight: usize,
    outbox: Option<crate::store::outbox::Depth>,
    audit_head: u64,
    audit_checkpoint: u64,
    audit_failures: u64,
    connections: Vec<(&'static str, i64)>,
    expiries: Vec<Expiry>,
    warn_days: f64,
    min_days: f64,
}

async fn snapshot(gw: &Gateway) -> Snapshot {
    use std::sync::atomic::Ordering::Relaxed;
    let outbox = gw.outbox.clone();
    let depth = tokio::task::spawn_blocking(move || outbox.depth())
        .await
        .ok()
        .and_then(Result::ok);
    let stats = &gw.audit.stats;
    Snapshot {
        version: env!("CARGO_PKG_VERSION"),
        render: gw
            .metrics
            .status_renders
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1,
        rows: gw.metrics.recent.rows(),
        ready: readiness(gw).await,
        breaker_open: gw.af.breaker.is_open(),
        af_in_flight: gw.af.calls_in_flight(),
        outbox: depth,
        audit_head: stats.head.load(Relaxed),
        audit_checkpoint: stats.checkpoint.load(Relaxed),
        audit_failures: stats.failures.load(Relaxed),
        connections: ["kommun", "af", "admin"]
            .into_iter()
            .map(|listener| {
                let open = gw
                    .metrics
                    .open_connections
                    .get_or_create(&crate::ops::metrics::ListenerLabels { listener })
                    .get();
                (listener, open)
            })
            .collect(),
        expiries: gw.expiries(),
        warn_days: f64::from(gw.config.health.warn_certificate_days),
        min_days: f64::from(gw.config.health.min_certificate_days),
    }
}

/// Text for HTML: every character that could open markup is escaped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        _ => format!("{:.1} h", s as f64 / 3600.0),
    }
}

/// The page: server-rendered, no external assets; a small script fetches it again every
/// five seconds and swaps the content.
fn status_page(s: &Snapshot) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let ready = s.ready.status == StatusCode::OK;
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="sv"><head><meta charset="utf-8"><title>brygga status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}}
h1{{font-size:1.4em;margin:0 0 .3em}} h2{{font-size:1.1em;margin:1.4em 0 .4em}}
table{{border-collapse:collapse;min-width:40em}} th,td{{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:left}}
td.n{{text-align:right;font-variant-numeric:tabular-nums}}
.ok{{color:#176b2c}} .warn{{color:#8a5a00;background:#fff4d6}} .bad{{color:#a01818;background:#fde2e2}}
.badge{{display:inline-block;padding:.1em .6em;border-radius:.8em;font-weight:600}}
small{{color:#666}}
</style></head><body><main id="status">
<h1>brygga <small>{version}</small> <span id="ready" class="badge {ready_class}">{ready_text}</span></h1>
<p><small>Updated <span id="updated">{updated}</span> (view <span id="render">{render}</span>); the last five minutes; refreshes every 5 s.</small></p>
"#,
        render = s.render,
        version = esc(s.version),
        ready_class = if ready { "ok" } else { "bad" },
        ready_text = if ready { "ready" } else { "not ready" },
        updated = crate::store::audit::format_time(time::OffsetDateTime::now_utc()),
    );

    // Readiness, check by check.
    h.push_str("<h2>Readiness</h2><table id=\"checks\"><tr><th>check</th><th>status</th><th>detail</th></tr>");
    if let Some(checks) = s.ready.body["checks"].as_object() {
        for (name, c) in checks {
            let ok = c["status"] == "ok";
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
                esc(name),
                if ok { "ok" } else { "bad" },
                if ok { "ok" } else { "fail" },
                esc(c["detail"].as_str().unwrap_or(""))
            );
        }
    }
    h.push_str("</table>");

    // AF, the outbox, the audit chain, connections.
    h.push_str("<h2>AF, outbox, audit</h2><table id=\"summary\">");
    let _ = write!(
        h,
        "<tr><td>AF circuit breaker</td><td class=\"{}\">{}</td></tr>\
         <tr><td>calls to AF under way</td><td class=\"n\">{}</td></tr>",
        if s.breaker_open { "bad" } else { "ok" },
        if s.breaker_open { "open" } else { "closed" },
        s.af_in_flight
    );
    match &s.outbox {
        Some(d) => {
            let oldest = d
                .oldest_pending
                .map(|t| {
                    let secs = (time::OffsetDateTime::now_utc() - t)
                        .as_seconds_f64()
                        .max(0.0);
                    age(Duration::from_secs_f64(secs))
                })
                .unwrap_or_else(|| "-".into());
            let _ = write!(
                h,
                "<tr><td>outbox pending</td><td class=\"n\" id=\"outbox-pending\">{}</td></tr>\
                 <tr><td>oldest pending</td><td class=\"n\">{oldest}</td></tr>\
                 <tr><td>given up (dead letters)</td><td class=\"n {}\">{}</td></tr>",
                d.pending,
                if d.dead > 0 { "warn" } else { "" },
                d.dead
            );
        }
        None => h.push_str("<tr><td>outbox</td><td class=\"bad\">unreadable</td></tr>"),
    }
    let _ = write!(
        h,
        "<tr><td>audit chain head</td><td class=\"n\" id=\"audit-head\">{}</td></tr>\
         <tr><td>last signed checkpoint</td><td class=\"n\">{}</td></tr>\
         <tr><td>audit write failures</td><td class=\"n {}\">{}</td></tr>",
        s.audit_head,
        s.audit_checkpoint,
        if s.audit_failures > 0 { "bad" } else { "" },
        s.audit_failures
    );
    for (listener, open) in &s.connections {
        let _ = write!(
            h,
            "<tr><td>open connections, {listener}</td><td class=\"n\">{open}</td></tr>"
        );
    }
    h.push_str("</table>");

    // Traffic per operation and client.
    h.push_str(
        "<h2>Requests, last 5 minutes</h2><table id=\"traffic\"><tr><th>operation</th>\
         <th>client</th><th>requests</th><th>per second</th><th>errors</th><th>p99</th></tr>",
    );
    if s.rows.is_empty() {
        h.push_str("<tr><td colspan=\"6\"><small>no requests yet</small></td></tr>");
    }
    for r in &s.rows {
        let class = if r.error_rate > 0.05 {
            "bad"
        } else if r.error_rate > 0.0 {
            "warn"
        } else {
            ""
        };
        let p99 = if r.p99_ms.is_finite() {
            format!("≤ {} ms", r.p99_ms)
        } else {
            "> 30 s".into()
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.2}</td>\
             <td class=\"n {class}\">{:.1} %</td><td class=\"n\">{p99}</td></tr>",
            esc(r.operation),
            esc(&r.client),
            r.requests,
            r.per_second,
            r.error_rate * 100.0
        );
    }
    h.push_str("</table>");

    // Certificates, soonest first.
    let _ = write!(
        h,
        "<h2>Certificates</h2><p><small>Warning below {} days; not ready below {}.</small></p>\
         <table id=\"certificates\"><tr><th>configured as</th><th>kind</th><th>subject</th>\
         <th>days left</th></tr>",
        s.warn_days, s.min_days
    );
    for e in &s.expiries {
        let days = e.days_left();
        let class = if days < s.min_days {
            "bad"
        } else if days < s.warn_days {
            "warn"
        } else {
            ""
        };
        let _ = write!(
            h,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{days:.0}</td></tr>",
            esc(&e.name),
            e.kind,
            esc(&e.subject)
        );
    }
    h.push_str("</table>");
    h.push_str(
        r#"</main>
<script>
// Fetch the page again and swap its content; a failed fetch leaves the last one standing.
setInterval(async () => {
  try {
    const r = await fetch(location.pathname, {cache: "no-store"});
    if (!r.ok) return;
    const doc = new DOMParser().parseFromString(await r.text(), "text/html");
    const next = doc.getElementById("status");
    if (next) document.getElementById("status").replaceWith(next);
  } catch (e) {}
}, 5000);
</script>
</body></html>
"#,
    );
    h
}
