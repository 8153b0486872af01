//! What operators see on the admin listener: metrics that count what happened (and pass
//! promtool), readiness that names each check and spares AF, and no personal data anywhere.

use std::sync::atomic::Ordering;
use std::time::Duration;

use brygga::sim;

use crate::contracts::tool_from_package;
use crate::harness::{self, Stack, fault, status};

async fn admin_get(s: &Stack, path: &str) -> (u16, String, String) {
    let url = format!("http://{}{path}", s.inner.gateway.admin_addr);
    let resp = reqwest::get(&url).await.unwrap();
    let code = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (code, content_type, resp.text().await.unwrap())
}

/// The value of the sample `name{labels}` (labels as written, in order), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Runs promtool on `text` with the given check (`metrics` reads stdin).
fn promtool_metrics(text: &str) {
    use std::io::Write;
    if !tool_from_package("promtool", &["--version"], "prometheus") {
        return;
    }
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Any run of 10 or more digits, as a personnummer, samordningsnummer or orgnr would be
/// written; the fractional part of a number (after a '.') is not one.
fn long_digit_runs(text: &str) -> Vec<String> {
    let mut runs = Vec::new();
    let mut current = String::new();
    let mut fractional = false;
    let mut previous = ' ';
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() {
            if current.is_empty() {
                fractional = previous == '.';
            }
            current.push(c);
        } else {
            if current.len() >= 10 && !fractional {
                runs.push(current.clone());
            }
            current.clear();
        }
        previous = c;
    }
    runs
}

#[tokio::test]
async fn metrics_count_what_happened_by_bounded_labels_and_pass_promtool() {
    let s = harness::start_custom(
        |c, _| {
            for client in c.clients.iter_mut() {
                let client = std::sync::Arc::get_mut(client).unwrap();
                if client.name == "goteborg" {
                    client.rate = brygga::limit::Configured {
                        rate: brygga::limit::Rate {
                            per_second: 1,
                            burst: 1,
                        },
                        quota: brygga::limit::Rate {
                            per_second: 1,
                            burst: 1,
                        }
                        .quota()
                        .unwrap(),
                    };
                }
            }
        },
        true,
    )
    .await;
    // Two answered, one policy refusal, one broken request, for Stockholm.
    status(&s.ask(Some(&s.st_token())).await);
    status(&s.ask(Some(&s.st_token())).await);
    let other = s
        .st_idp
        .token("SE2120000142-HL02", "0180", "EKB-BESLUT")
        .unwrap();
    fault(
        &s.st
            .post_raw(Some(&other), s.st_xml(sim::REGISTRERAD))
            .await
            .unwrap(),
        403,
        "HANDLAGGARE_MATCHAR_EJ",
    );
    let broken = s
        .st_xml(sim::REGISTRERAD)
        .replace("<k:Fraga>", "<k:Fraga><k:Okand>x</k:Okand>");
    let a = s.st.post_raw(Some(&s.st_token()), broken).await.unwrap();
    assert_eq!(a.status, 400);
    // Göteborg over its rate: one through, the next refused.
    let gb_token = s
        .gb_idp
        .token(&s.gbg.handlaggare, "1480", "EKB-BESLUT")
        .unwrap();
    let gb_xml = brygga::codec::soap::encode_request(
        &brygga::model::KommunRequest::HamtaArbetssokandeStatus(
            brygga::client::example_fraga(
                &s.gbg.orgnr,
                "Göteborgs stad",
                &s.gbg.handlaggare,
                sim::REGISTRERAD,
                "EKB-BESLUT",
            )
            .unwrap(),
        ),
    );
    let first =
        s.gb.post_raw(Some(&gb_token), gb_xml.clone())
            .await
            .unwrap();
    status(&first);
    fault(
        &s.gb.post_raw(Some(&gb_token), gb_xml).await.unwrap(),
        429,
        "FOR_MANGA_FORFRAGNINGAR",
    );

    let (code, content_type, text) = admin_get(&s, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let requests = |op: &str, client: &str, outcome: &str, class: &str| {
        sample(
            &text,
            &format!(
                "brygga_requests_total{{listener=\"kommun\",operation=\"{op}\",client=\"{client}\",outcome=\"{outcome}\",class=\"{class}\"}}"
            ),
        )
    };
    assert_eq!(
        requests("HamtaArbetssokandeStatus", "stockholm", "OK", "ok"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        requests(
            "HamtaArbetssokandeStatus",
            "stockholm",
            "HANDLAGGARE_MATCHAR_EJ",
            "klient"
        ),
        Some(1.0)
    );
    assert_eq!(
        requests(
            "HamtaArbetssokandeStatus",
            "stockholm",
            "FALT_SAKNAS",
            "klient"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        requests("-", "goteborg", "FOR_MANGA_FORFRAGNINGAR", "klient"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "brygga_refusals_total{listener=\"kommun\",client=\"stockholm\",reason=\"policy\",felkod=\"HANDLAGGARE_MATCHAR_EJ\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "brygga_refusals_total{listener=\"kommun\",client=\"goteborg\",reason=\"limit\",felkod=\"FOR_MANGA_FORFRAGNINGAR\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "brygga_validation_failures_total{source=\"kommun\",message=\"HamtaArbetssokandeStatus\",felkod=\"FALT_SAKNAS\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "brygga_af_calls_total{operation=\"HamtaArbetssokandeStatus\",outcome=\"OK\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            "brygga_af_call_duration_seconds_count{operation=\"HamtaArbetssokandeStatus\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            "brygga_request_duration_seconds_count{listener=\"kommun\",operation=\"HamtaArbetssokandeStatus\"}"
        ),
        Some(5.0)
    );
    // Six requests, six records, all durable before their answers.
    assert_eq!(sample(&text, "brygga_audit_records_total"), Some(6.0));
    assert_eq!(sample(&text, "brygga_audit_head_sequence"), Some(6.0));
    assert!(sample(&text, "brygga_audit_commit_duration_seconds_count").unwrap() >= 1.0);
    assert_eq!(sample(&text, "brygga_af_breaker_open"), Some(0.0));
    assert_eq!(sample(&text, "brygga_outbox_pending"), Some(0.0));
    // This scrape's own connection.
    assert_eq!(
        sample(&text, "brygga_open_connections{listener=\"admin\"}"),
        Some(1.0)
    );
    let days = sample(
        &text,
        "brygga_certificate_expiry_seconds{certificate=\"kommun.cert\",kind=\"certificate\"}",
    )
    .unwrap()
        / 86_400.0;
    assert!(days > 30.0, "{days}");
    assert!(
        text.contains(
            "brygga_certificate_expiry_seconds{certificate=\"af.ca\",kind=\"certificate\"}"
        )
    );
    assert!(
        text.contains("brygga_jwks_keys{client=\"stockholm\"} 1"),
        "{text}"
    );
    assert!(text.contains(&format!(
        "brygga_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    // Nothing personal: no number of ten digits or more, no identity of a case worker.
    assert_eq!(long_digit_runs(&text), Vec::<String>::new());
    assert_eq!(harness::personnummer_like(&text), Vec::<String>::new());
    assert!(!text.contains(sim::REGISTRERAD));
    assert!(!text.contains("SE2120000142"));
    promtool_metrics(&text);
    s.stop().await;
}

#[tokio::test]
async fn readiness_names_each_check_and_is_cached_so_probes_spare_af() {
    let s = harness::start_custom(|c, _| c.health.cache = Duration::from_millis(400), true).await;
    let (code, _, body) = admin_get(&s, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ready");
    for check in ["store", "af", "certificates", "jwks"] {
        assert_eq!(v["checks"][check]["status"], "ok", "{check}: {v}");
    }
    // Fifty probes inside the cache time ask AF nothing more.
    let health = || s.inner.sim.stats.health_requests.load(Ordering::SeqCst);
    let before = health();
    let mut probes = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let url = format!("http://{}/readyz", s.inner.gateway.admin_addr);
        probes.spawn(async move { reqwest::get(url).await.unwrap().status().as_u16() });
    }
    while let Some(code) = probes.join_next().await {
        assert_eq!(code.unwrap(), 200);
    }
    assert!(
        health() - before <= 1,
        "{} health checks",
        health() - before
    );
    // AF goes down: after the cache time, not ready, and the check says why.
    s.inner.sim.stats.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(450)).await;
    let (code, _, body) = admin_get(&s, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "not ready");
    assert_eq!(v["checks"]["af"]["status"], "fail");
    assert_eq!(v["checks"]["store"]["status"], "ok");
    s.inner.sim.stats.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(admin_get(&s, "/readyz").await.0, 200);
    // Liveness asks nothing of AF.
    let before = health();
    let (code, _, body) = admin_get(&s, "/healthz").await;
    assert_eq!((code, body.as_str()), (200, r#"{"status":"ok"}"#));
    assert_eq!(health(), before);
    s.stop().await;
}

#[tokio::test]
async fn a_certificate_closer_to_expiry_than_allowed_makes_the_gateway_not_ready() {
    // The example certificates run ten years: demand more.
    let s = harness::start_custom(|c, _| c.health.min_certificate_days = 4000, true).await;
    let (code, _, body) = admin_get(&s, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["checks"]["certificates"]["status"], "fail");
    assert!(
        v["checks"]["certificates"]["detail"]
            .as_str()
            .unwrap()
            .contains("fewer than 4000"),
        "{v}"
    );
    assert_eq!(v["checks"]["af"]["status"], "ok");
    s.stop().await;
}

#[tokio::test]
async fn events_and_deliveries_are_counted() {
    let s = harness::start().await;
    let certs = harness::certs();
    let af = brygga::client::KommunClient::new(
        &s.inner.af_url(),
        &certs.join("af-ca.pem"),
        Some((&certs.join("af-client.pem"), &certs.join("af-client.key"))),
    )
    .unwrap();
    let today = time::OffsetDateTime::now_utc().date();
    let event = serde_json::json!({
        "handelseId": "00000000-0000-4000-8000-000000000001",
        "typ": "AVAKTUALISERAD",
        "personnummer": sim::REGISTRERAD,
        "tidpunkt": format!("{today}T11:20:09Z"),
        "avaktualisering": {"datum": today.to_string(), "orsakKod": "ARB", "orsakText": "Fått arbete"}
    });
    let body = serde_json::json!({ "handelser": [event.clone(), event] });
    let a = af
        .post_with_type(None, body.to_string(), "application/json")
        .await
        .unwrap();
    assert_eq!(a.status, 202, "{}", String::from_utf8_lossy(&a.body));
    let bad = af
        .post_with_type(None, r#"{"handelser":[]}"#, "application/json")
        .await
        .unwrap();
    assert_eq!(bad.status, 400);
    let (_, _, text) = admin_get(&s, "/metrics").await;
    assert_eq!(
        sample(&text, "brygga_events_received_total{outcome=\"OK\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "brygga_events_received_total{outcome=\"DUBBLETT\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "brygga_events_received_total{outcome=\"OGILTIGT_FALT\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "brygga_requests_total{listener=\"af\",operation=\"ArbetssokandeHandelse\",client=\"af\",outcome=\"OK\",class=\"ok\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "brygga_validation_failures_total{source=\"af\",message=\"ArbetssokandeHandelse\",felkod=\"OGILTIGT_FALT\"}"
        ),
        Some(1.0)
    );
    assert_eq!(long_digit_runs(&text), Vec::<String>::new());
    s.stop().await;
}
