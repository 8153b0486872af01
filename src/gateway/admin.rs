//! The admin listener of the running gateway: liveness, readiness with named checks,
//! Prometheus metrics and the status page, each gathered here from the gateway's parts and
//! shown by `ops`. Nothing here carries personal data: the figures are counts, and the
//! labels are configured names, operations and codes.

use std::sync::Arc;

use http::{Method, StatusCode};
use hyper::Request;
use hyper::body::Incoming;
use serde_json::json;

use crate::gateway::server::{HttpResponse, respond};
use crate::gateway::state::Gateway;
use crate::model::TjanstStatus;
use crate::ops::metrics::Expiry;
use crate::ops::status_page::{Readiness, Snapshot, status_page};

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

/// The store takes writes, AF answers (and its breaker is closed), every certificate has more
/// than `health.min_certificate_days` left, every remote JWKS is fresh.
pub async fn readiness(gw: &Gateway) -> Readiness {
    let mut cached = gw.readiness.lock().await;
    if let Some(r) = cached
        .as_ref()
        .filter(|r| r.younger_than(gw.config.health.cache))
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

    let r = Readiness::new(
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        json!({
            "status": if ready { "ready" } else { "not ready" },
            "checks": checks,
        }),
    );
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
