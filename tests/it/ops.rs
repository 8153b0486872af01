//! What operators see on the admin listener: metrics that count what happened (and pass
//! promtool), readiness that names each check and spares AF, and no personal data anywhere.

use std::sync::atomic::Ordering;
use std::time::Duration;

use brygga::devkit::sim_af;

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
                    client.rate = brygga::access::limit::Configured {
                        rate: brygga::access::limit::Rate {
                            per_second: 1,
                            burst: 1,
                        },
                        quota: brygga::access::limit::Rate {
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
    fault(
        &s.ask_as_another_case_worker().await,
        403,
        "HANDLAGGARE_MATCHAR_EJ",
    );
    let broken = s
        .st_xml(sim_af::REGISTRERAD)
        .replace("<k:Fraga>", "<k:Fraga><k:Okand>x</k:Okand>");
    let a = s.st.post_raw(Some(&s.st_token()), broken).await.unwrap();
    assert_eq!(a.status, 400);
    // Göteborg over its rate: one through, the next refused.
    let gb_token = s
        .gb_idp
        .token(&s.gbg.handlaggare, "1480", "EKB-BESLUT")
        .unwrap();
    let gb_xml = brygga::contract::soap::encode_request(
        &brygga::model::KommunRequest::HamtaArbetssokandeStatus(
            brygga::devkit::client::example_fraga(
                &s.gbg.orgnr,
                "Göteborgs stad",
                &s.gbg.handlaggare,
                sim_af::REGISTRERAD,
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
            "OVANTAT_ELEMENT",
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
            "brygga_validation_failures_total{source=\"kommun\",message=\"HamtaArbetssokandeStatus\",felkod=\"OVANTAT_ELEMENT\"}"
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
        text.contains("brygga_jwks_keys{client=\"stockholm\",source=\"file\"} 1"),
        "{text}"
    );
    assert!(text.contains(&format!(
        "brygga_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    // Nothing personal: no number of ten digits or more, no identity of a case worker.
    assert_eq!(long_digit_runs(&text), Vec::<String>::new());
    assert_eq!(harness::personnummer_like(&text), Vec::<String>::new());
    assert!(!text.contains(sim_af::REGISTRERAD));
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
    let af = brygga::devkit::client::KommunClient::new(
        &s.inner.af_url(),
        &certs.join("af-ca.pem"),
        Some((&certs.join("af-client.pem"), &certs.join("af-client.key"))),
    )
    .unwrap();
    let today = time::OffsetDateTime::now_utc().date();
    let event = serde_json::json!({
        "handelseId": "00000000-0000-4000-8000-000000000001",
        "typ": "AVAKTUALISERAD",
        "personnummer": sim_af::REGISTRERAD,
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

/// Runs headless Chromium on `url` with a fresh profile: the DOM after `budget_ms` of virtual
/// time (scripts run), and a screenshot at `png`. Bounded: killed after 90 s.
fn chromium(url: &str, png: &std::path::Path, budget_ms: u32) -> String {
    let profile = tempfile::tempdir().unwrap();
    let run = |extra: &[String]| {
        let mut child = std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--window-size=1280,1600",
                &format!("--user-data-dir={}", profile.path().display()),
                &format!("--virtual-time-budget={budget_ms}"),
            ])
            .args(extra)
            .arg(url)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("chromium did not finish within 90 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut out = String::new();
        use std::io::Read;
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        out
    };
    run(&[format!("--screenshot={}", png.display())]);
    run(&["--dump-dom".to_owned()])
}

/// The text of the element with `id`, tags stripped.
fn element_text(dom: &str, id: &str) -> String {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let open_end = start + dom[start..].find('>').unwrap() + 1;
    let close = open_end + dom[open_end..].find("</").unwrap();
    dom[open_end..close].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_in_headless_chromium() {
    if !tool_from_package("chromium", &["--version"], "chromium") {
        return;
    }
    let s = harness::start_custom(|c, _| c.health.warn_certificate_days = 4000, true).await;
    for _ in 0..3 {
        status(&s.ask(Some(&s.st_token())).await);
    }
    assert_eq!(s.ask_as_another_case_worker().await.status, 403);
    let (_, content_type, html) = admin_get(&s, "/status").await;
    assert!(content_type.starts_with("text/html"));
    // No external asset: nothing is fetched from anywhere but the page itself.
    for external in ["src=\"http", "href=\"http", "@import", "url("] {
        assert!(!html.contains(external), "{external}");
    }
    let before: u64 = element_text(&html, "render").parse().unwrap();

    let png = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/status-page.png");
    let _ = std::fs::remove_file(&png);
    let url = format!("http://{}/status", s.inner.gateway.admin_addr);
    let dom = tokio::task::spawn_blocking(move || chromium(&url, &png, 12_000))
        .await
        .unwrap();
    // The browser's DOM: the page rendered, its script swapped in a newer view.
    assert!(dom.contains("<h1>brygga"), "{dom}");
    assert_eq!(element_text(&dom, "ready"), "ready");
    let after: u64 = element_text(&dom, "render").parse().unwrap();
    assert!(
        after >= before + 2,
        "the script did not refresh: view {before} then {after}"
    );
    // Traffic per operation and client: four requests, one refused (25 %).
    let traffic = &dom[dom.find("id=\"traffic\"").unwrap()..];
    let traffic = &traffic[..traffic.find("</table>").unwrap()];
    assert!(traffic.contains("HamtaArbetssokandeStatus"), "{traffic}");
    assert!(traffic.contains("stockholm"));
    assert!(traffic.contains("25.0 %"), "{traffic}");
    // Certificates soonest first, each a warning below 4000 days.
    let certs = &dom[dom.find("id=\"certificates\"").unwrap()..];
    let certs = &certs[..certs.find("</table>").unwrap()];
    let days: Vec<f64> = certs
        .split("<td class=\"n\">")
        .skip(1)
        .map(|t| t[..t.find('<').unwrap()].parse().unwrap())
        .collect();
    assert!(days.len() >= 8, "{certs}");
    assert!(days.windows(2).all(|w| w[0] <= w[1]), "{days:?}");
    assert_eq!(
        certs.matches("class=\"warn\"").count(),
        days.len(),
        "{certs}"
    );
    assert!(certs.contains("kommun.cert"));
    // Four requests, four records in the chain.
    assert_eq!(element_text(&dom, "audit-head"), "4");
    assert_eq!(harness::personnummer_like(&dom), Vec::<String>::new());
    assert!(!dom.contains("SE2120000142-HL01"));
    let png = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/status-page.png");
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "screenshot {} has {size} bytes",
        png.display()
    );
    s.stop().await;
}

fn deploy(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

/// Every `brygga_…` metric a file names.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("brygga_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Whether the exposition declares `name` (a histogram's series by their family).
fn declared(exposition: &str, name: &str) -> bool {
    let family = ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    exposition.lines().any(|l| {
        l.starts_with(&format!("# TYPE {name} ")) || l == format!("# TYPE {family} histogram")
    })
}

/// The alert rules and the dashboard name only metrics the gateway exposes, the rules pass
/// `promtool check rules` and their unit tests, and the dashboard is valid JSON.
#[tokio::test]
async fn the_alert_rules_and_the_dashboard_are_built_on_real_metrics() {
    let s = harness::start().await;
    let (_, _, exposition) = admin_get(&s, "/metrics").await;
    s.stop().await;
    let rules = std::fs::read_to_string(deploy("prometheus/brygga-alerts.yml")).unwrap();
    let dashboard = std::fs::read_to_string(deploy("grafana/brygga-dashboard.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let exprs: Vec<&str> = parsed["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .map(|e| &*Box::leak(e.into_boxed_str()))
        .collect();
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    for (file, text) in [("alerts", rules.clone()), ("dashboard", exprs.join("\n"))] {
        let names = metric_names(&text);
        assert!(names.len() >= 8, "{file}: {names:?}");
        for name in names {
            assert!(
                declared(&exposition, &name),
                "{file} names {name}, which /metrics does not have"
            );
        }
    }
    // Every alert the issue asks for is there.
    for alert in [
        "BryggaErrorRateHigh",
        "BryggaLatencyHigh",
        "BryggaAfBreakerOpen",
        "BryggaOutboxOld",
        "BryggaCertificateExpiresSoon",
        "BryggaAuditCommitFailures",
    ] {
        assert!(rules.contains(&format!("alert: {alert}")), "{alert}");
    }
    if !tool_from_package("promtool", &["--version"], "prometheus") {
        return;
    }
    for args in [
        vec!["check", "rules", "brygga-alerts.yml"],
        vec!["test", "rules", "brygga-alerts.test.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(&args)
            .current_dir(deploy("prometheus"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The systemd unit passes `systemd-analyze verify` (with ExecStart pointed at this build).
#[test]
fn the_systemd_unit_verifies() {
    if !tool_from_package("systemd-analyze", &["--version"], "systemd") {
        return;
    }
    let unit = std::fs::read_to_string(deploy("systemd/brygga.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/brygga serve --config"));
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("brygga.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/brygga", env!("CARGO_BIN_EXE_brygga")),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Outside a booted systemd (a container), verify may not reach the manager; the unit's
    // own problems are still printed against its name.
    let own: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("brygga.service") || l.contains("brygga.service:"))
        .collect();
    assert!(own.is_empty(), "{stderr}");
}

/// An OTLP/HTTP receiver on loopback: every body POSTed to it.
async fn otlp_receiver() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            if path == "/v1/traces" {
                                seen.lock()
                                    .unwrap()
                                    .push(String::from_utf8_lossy(&body).into_owned());
                            }
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"{}")),
                            ))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (port, bodies)
}

/// With `[telemetry] otlp_endpoint`, each exchange reaches the collector as OTLP/HTTP JSON: a
/// server span in the caller's trace and the AF call as its child (the span AF was told of);
/// a refusal is an error span with its Felkod; nothing personal is in them.
#[tokio::test]
async fn spans_are_exported_to_an_otlp_collector() {
    let (port, bodies) = otlp_receiver().await;
    let s = harness::start_custom(
        move |c, _| {
            c.telemetry = Some(brygga::ops::telemetry::TelemetrySettings {
                endpoint: format!("http://127.0.0.1:{port}/v1/traces"),
                service_name: "brygga-test".into(),
                ca: Vec::new(),
                timeout: Duration::from_secs(2),
            });
        },
        true,
    )
    .await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let a =
        s.st.post_with_headers(
            Some(&s.st_token()),
            s.st_xml(sim_af::REGISTRERAD),
            "text/xml; charset=utf-8",
            &[("traceparent", incoming)],
        )
        .await
        .unwrap();
    status(&a);
    let af_saw = brygga::ops::tracectx::TraceContext::parse(
        &s.inner
            .sim
            .stats
            .last_traceparent
            .lock()
            .unwrap()
            .clone()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(s.ask_as_another_case_worker().await.status, 403);
    // Exported within a second or two.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let spans: Vec<serde_json::Value> = loop {
        let spans: Vec<serde_json::Value> = bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| {
                let v: serde_json::Value = serde_json::from_str(b).unwrap();
                assert_eq!(
                    v["resourceSpans"][0]["resource"]["attributes"][0],
                    serde_json::json!({"key": "service.name", "value": {"stringValue": "brygga-test"}})
                );
                v["resourceSpans"][0]["scopeSpans"][0]["spans"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        if spans.len() >= 3 || std::time::Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(spans.len(), 3, "{spans:?}");
    let attr = |span: &serde_json::Value, key: &str| {
        span["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["value"]["stringValue"].as_str().unwrap().to_owned())
    };
    let server: Vec<_> = spans.iter().filter(|s| s["kind"] == 2).collect();
    let client: Vec<_> = spans.iter().filter(|s| s["kind"] == 3).collect();
    assert_eq!((server.len(), client.len()), (2, 1));
    let answered = server
        .iter()
        .find(|s| s["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736")
        .unwrap();
    assert_eq!(answered["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(answered["name"], "HamtaArbetssokandeStatus");
    // Unset status: it did not fail.
    assert!(answered.get("status").is_none(), "{answered}");
    assert_eq!(
        attr(answered, "brygga.client").as_deref(),
        Some("stockholm")
    );
    let code = answered["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "http.response.status_code")
        .unwrap();
    assert_eq!(code["value"]["intValue"], "200");
    let start: u128 = answered["startTimeUnixNano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: u128 = answered["endTimeUnixNano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(end > start);
    // The AF call: the span AF was told of, a child of brygga's server span.
    let af = client[0];
    assert_eq!(af["traceId"], answered["traceId"]);
    assert_eq!(
        Some(af["spanId"].as_str().unwrap()),
        af_saw.parent_id.as_deref()
    );
    assert_eq!(af["parentSpanId"], answered["spanId"]);
    assert_eq!(attr(af, "peer.service").as_deref(), Some("AF"));
    // The refusal: its own trace, its Felkod, no AF call; not an error of brygga's (the
    // caller must change the request), so its status is unset.
    let refusal = server
        .iter()
        .find(|s| s["traceId"] != "4bf92f3577b34da6a3ce929d0e0e4736")
        .unwrap();
    assert_eq!(
        attr(refusal, "brygga.outcome").as_deref(),
        Some("HANDLAGGARE_MATCHAR_EJ")
    );
    assert!(refusal.get("status").is_none(), "{refusal}");
    assert!(refusal.get("parentSpanId").is_none());
    let all = bodies.lock().unwrap().join("\n");
    assert_eq!(harness::personnummer_like(&all), Vec::<String>::new());
    assert!(!all.contains("SE2120000142"), "no case worker in a span");
    let (_, _, metrics) = admin_get(&s, "/metrics").await;
    assert_eq!(
        sample(&metrics, "brygga_telemetry_spans_exported_total"),
        Some(3.0)
    );
    assert_eq!(
        sample(&metrics, "brygga_telemetry_spans_dropped_total"),
        Some(0.0)
    );
    s.stop().await;
}

/// An identity-provider key published with its certificate (`x5c`) has its expiry shown like
/// every other certificate's, named by client and key.
#[tokio::test]
async fn a_jwks_key_with_a_certificate_has_its_expiry_shown() {
    use base64::Engine;
    let certs = harness::certs();
    let key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(certs.join("idp-0180.key")).unwrap())
            .unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["idp.stockholm.example".into()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(20);
    let cert = params.self_signed(&key).unwrap();
    let mut jwks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(certs.join("idp-0180.jwks.json")).unwrap())
            .unwrap();
    jwks["keys"][0]["x5c"] =
        serde_json::json!([base64::engine::general_purpose::STANDARD.encode(cert.der())]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks.to_string()).unwrap();
    let s = harness::start_custom(
        move |c, _| {
            for client in c.clients.iter_mut() {
                let client = std::sync::Arc::get_mut(client).unwrap();
                if client.name == "stockholm" {
                    client.idp =
                        brygga::access::identity::IdpKeys::load(&client.idp.issuer, "ES256", &path)
                            .unwrap();
                }
            }
        },
        true,
    )
    .await;
    // The key still verifies Stockholm's tokens.
    status(&s.ask(Some(&s.st_token())).await);
    let (_, _, text) = admin_get(&s, "/metrics").await;
    let days = sample(
        &text,
        "brygga_certificate_expiry_seconds{certificate=\"clients.stockholm.jwks[0]\",kind=\"certificate\"}",
    )
    .unwrap_or_else(|| panic!("{text}"))
        / 86_400.0;
    assert!((19.9..20.1).contains(&days), "{days}");
    // The status page lists it first, as a warning (below 30 days).
    let (_, _, page) = admin_get(&s, "/status").await;
    let certs_table = &page[page.find("id=\"certificates\"").unwrap()..];
    let first_row = &certs_table[certs_table.find("<tr class=").unwrap()..];
    assert!(
        first_row.starts_with("<tr class=\"warn\"><td>clients.stockholm.jwks[0]</td>"),
        "{first_row}"
    );
    s.stop().await;
}
