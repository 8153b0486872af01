//! What the admin listener shows, apart from where it comes from: the readiness answer and
//! its cache, and the status page rendered from a snapshot of figures (server-rendered HTML,
//! no external assets). `gateway::admin` gathers the figures from the running gateway.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::ops::metrics::Expiry;

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

impl ReadinessCache {
    /// The last answer, held while a new one is made.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, Option<Readiness>> {
        self.0.lock().await
    }
}

impl Readiness {
    pub fn new(status: StatusCode, body: serde_json::Value) -> Self {
        Readiness {
            status,
            body,
            at: Instant::now(),
        }
    }

    /// Whether this answer may still be given for a probe.
    pub fn younger_than(&self, max_age: Duration) -> bool {
        self.at.elapsed() < max_age
    }
}

/// What the status page shows.
pub struct Snapshot {
    pub version: &'static str,
    pub render: u64,
    pub rows: Vec<crate::ops::metrics::RecentRow>,
    pub ready: Readiness,
    pub breaker_open: bool,
    pub af_in_flight: usize,
    pub outbox: Option<crate::store::outbox::Depth>,
    pub audit_head: u64,
    pub audit_checkpoint: u64,
    pub audit_failures: u64,
    pub connections: Vec<(&'static str, i64)>,
    pub expiries: Vec<Expiry>,
    pub warn_days: f64,
    pub min_days: f64,
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
pub fn status_page(s: &Snapshot) -> String {
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
