//! The command line as an operator or integrator uses it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use brygga::devkit::demo::{self, DemoFiles};

use crate::harness::personnummer_like;

fn brygga() -> Command {
    Command::new(env!("CARGO_BIN_EXE_brygga"))
}

#[test]
fn the_scanner_finds_numbers_in_every_shape() {
    assert_eq!(personnummer_like("x 198507099805 y"), vec!["198507099805"]);
    assert_eq!(personnummer_like("pnr=850709-9805,"), vec!["850709-9805"]);
    assert_eq!(personnummer_like("\"8507099805\""), vec!["8507099805"]);
    assert!(personnummer_like("window 2147483647 hex ab198507099805").is_empty());
    assert!(
        personnummer_like("NewSessionTicketPayloadTls13 { age_add: 1807093537, nonce").is_empty()
    );
}

#[test]
fn the_demo_passes_and_logs_no_personnummer_even_at_trace() {
    let data = tempfile::tempdir().unwrap();
    let out = brygga()
        .arg("demo")
        .arg("--data-dir")
        .arg(data.path())
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}");
    assert!(stdout.contains("0 failed"), "{stdout}");
    assert!(stderr.lines().count() > 100, "trace logging was on");
    // The audit store it kept: every text it holds, and its files' raw bytes.
    let store = data.path().join("audit.db");
    let conn = rusqlite::Connection::open(&store).unwrap();
    let mut texts: Vec<String> = conn
        .prepare(
            "SELECT body || ' ' || hash || ' ' || ifnull(subject, '') || ' ' || ifnull(arende, '') FROM records \
             UNION ALL SELECT jws FROM checkpoints",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(texts.len() >= 17, "one record per demo request");
    drop(conn);
    for entry in std::fs::read_dir(data.path()).unwrap() {
        texts.push(
            String::from_utf8_lossy(&std::fs::read(entry.unwrap().path()).unwrap()).into_owned(),
        );
    }
    let store_text = texts.join("\n");
    // The numbers the demo sends, in any form and anywhere in a line.
    let sent: Vec<&str> = brygga::devkit::sim_af::FIXED_PERSONS
        .iter()
        .map(|p| p.personnummer)
        .chain(["197010632391", "198507099806"])
        .collect();
    for pnr in sent {
        for form in [
            pnr.to_owned(),
            pnr[2..].to_owned(),
            format!("{}-{}", &pnr[2..8], &pnr[8..]),
        ] {
            assert!(
                !stdout.contains(&form) && !stderr.contains(&form),
                "{form} appears in the demo's output"
            );
            assert!(
                !store_text.contains(&form),
                "{form} appears in the audit store"
            );
        }
    }
    let hits: Vec<String> = personnummer_like(&stdout)
        .into_iter()
        .chain(personnummer_like(&stderr))
        .collect();
    assert!(
        hits.is_empty(),
        "personnummer-shaped values in the demo's output: {hits:?}"
    );
    let hits = personnummer_like(&store_text);
    assert!(
        hits.is_empty(),
        "personnummer-shaped values in the audit store: {hits:?}"
    );

    let json = brygga()
        .args(["--log-format", "json", "demo"])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&json.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("kommun request"))
        .collect();
    assert!(
        lines.len() >= 13,
        "one JSON log line per request:\n{stderr}"
    );
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(
            v["korrelationsid"].is_string()
                && v["outcome"].is_string()
                && v["duration_ms"].is_number(),
            "{l}"
        );
    }
    assert!(personnummer_like(&stderr).is_empty());
}

#[test]
fn check_config_reports_every_problem_with_its_key() {
    let example = std::fs::read_to_string(DemoFiles::default().config).unwrap();
    let broken = example
        .replace("orgnr = \"212000-0142\"", "orgnr = \"212000-0143\"")
        .replace("kommunkod = \"1480\"", "kommunkod = \"2680\"")
        .replace(
            "operations = [\"HamtaArbetssokandeStatus\", \"HamtaErsattningsbeslut\", \"Ping\",\n              \"RegistreraPrenumeration\", \"AvslutaPrenumeration\", \"ListaPrenumerationer\"]\nsyften = [\"EKB-BESLUT\"]",
            "operations = [\"HamtaAllt\"]\nsyften = [\"OKANT\"]",
        )
        .replace(
            "url = \"https://localhost:9445/handelser\"",
            "url = \"http://localhost:9445/handelser\"",
        )
        .replace("max_retry = \"5m\"", "max_retry = \"100ms\"")
        .replace("environment = \"U1\"", "environment = \"X9\"")
        .replace("gateway-kommun.key", "no-such-file.key")
        .replace(
            "base_url = \"https://localhost:9443\"",
            "base_url = \"http://localhost:9443\"",
        )
        .replace("max_connections = 100", "max_connections = 0")
        .replace("warn_certificate_days = 30", "warn_certificate_days = 3")
        .replace("level = \"info\"", "level = \"info,[[[\"")
        .replace(
            "# otlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"",
            "otlp_endpoint = \"https://collector.example:4318/v1/traces\"",
        )
        // "2s" for "2y" would erase the evidence; a witness in the store is no witness.
        .replace(
            "checkpoint_every = \"60s\"",
            "checkpoint_every = \"60s\"\nretention = \"2s\"\nwitness = \"../data/audit.db-wal\"",
        );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile_in(&dir)
        .unwrap();
    std::fs::write(file.path(), broken).unwrap();
    let out = brygga()
        .args(["check-config", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    for key in [
        "gateway.environment",
        "kommun.key",
        "af.base_url",
        "clients[0].orgnr",
        "clients[1].kommunkod",
        "clients[1].operations[0]",
        "clients[1].syften[0]",
        "clients[0].delivery.url",
        "delivery.first_retry",
        "af.max_connections",
        "health.warn_certificate_days",
        "log.level",
        "telemetry.ca",
        "audit.retention",
        "audit.witness",
    ] {
        assert!(
            text.contains(&format!("  {key}: ")),
            "{key} missing in:\n{text}"
        );
    }
    assert!(text.contains("15 problem(s)"), "{text}");

    let unknown = std::fs::read_to_string(DemoFiles::default().config)
        .unwrap()
        .replace("[admin]", "[admin]\nport = 1");
    std::fs::write(file.path(), unknown).unwrap();
    let out = brygga()
        .args(["check-config", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("unknown field `port`"),
        "{text}"
    );

    let ok = brygga()
        .args(["check-config", "--config"])
        .arg(DemoFiles::default().config)
        .output()
        .unwrap();
    assert!(ok.status.success());
}

#[test]
fn token_prints_a_jwt_the_gateway_accepts() {
    let out = brygga()
        .args([
            "token",
            "--kommun",
            "0180",
            "--sub",
            "SE2120000142-HL01",
            "--syfte",
            "EKB-BESLUT",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let config = brygga::config::Config::load(&DemoFiles::default().config).unwrap();
    let client = &config.clients[0];
    let worker =
        brygga::access::identity::verify_token(&client.idp, &config.token_rules, &token).unwrap();
    assert_eq!(worker.hsa_id.as_str(), "SE2120000142-HL01");
    assert_eq!(worker.syfte, "EKB-BESLUT");

    let bad = brygga()
        .args(["token", "--kommun", "9999", "--sub", "x", "--syfte", "Y"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no client with kommunkod 9999"));
}

#[tokio::test]
async fn a_freshly_generated_pki_runs_the_whole_demo() {
    let root = tempfile::tempdir().unwrap();
    let certs = root.path().join("certs-example");
    let files = brygga::devkit::certs::generate(&certs, 30).unwrap();
    assert!(
        files.contains(&"klient-0180.pem".to_owned()) && files.contains(&"README.md".to_owned())
    );
    let config_dir = root.path().join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    let defaults = DemoFiles::default();
    std::fs::copy(&defaults.config, config_dir.join("example.toml")).unwrap();
    std::fs::copy(&defaults.sim_config, config_dir.join("af-sim.example.toml")).unwrap();
    let files = DemoFiles {
        config: config_dir.join("example.toml"),
        sim_config: config_dir.join("af-sim.example.toml"),
        certs,
    };
    assert!(
        demo::run(&files, None).await.unwrap(),
        "every demo step passes with the new PKI"
    );
}

/// The acceptance check, as an integrator would do it: `demo --serve`, then curl with
/// the example client certificate and a `brygga token` JWT; SIGTERM stops it cleanly.
#[test]
fn curl_gets_an_answer_from_demo_serve() {
    use std::io::{BufRead, BufReader};
    if !crate::contracts::tool_available("curl", &["--version"]) {
        return;
    }
    let defaults = DemoFiles::default();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let any = |text: String| {
        text.replace("0.0.0.0:8443", "127.0.0.1:0")
            .replace("127.0.0.1:9090", "127.0.0.1:0")
            .replace("0.0.0.0:8444", "127.0.0.1:0")
            .replace("127.0.0.1:9443", "127.0.0.1:0")
            .replace("localhost:9445", "localhost:0")
            .replace("localhost:9446", "localhost:0")
    };
    let config = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile_in(&dir)
        .unwrap();
    std::fs::write(
        config.path(),
        any(std::fs::read_to_string(&defaults.config).unwrap()),
    )
    .unwrap();
    let sim = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile_in(&dir)
        .unwrap();
    std::fs::write(
        sim.path(),
        any(std::fs::read_to_string(&defaults.sim_config).unwrap()),
    )
    .unwrap();

    let mut child = brygga()
        .args(["demo", "--serve", "--traffic", "40", "--config"])
        .arg(config.path())
        .arg("--sim-config")
        .arg(sim.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let client = &info["clients"][0];
    // What AF's side and a case system's side need, too.
    for key in ["af_url", "kommun_sim_url"] {
        assert!(
            info[key]
                .as_str()
                .is_some_and(|u| u.starts_with("https://localhost:")),
            "{key} in {line}"
        );
    }
    for key in ["ca", "cert", "key"] {
        assert!(
            info["af_client"][key]
                .as_str()
                .is_some_and(|p| Path::new(p).is_file()),
            "af_client.{key} in {line}"
        );
    }
    assert!(client["kommun_sim_url"].as_str().is_some(), "{line}");
    let token = brygga()
        .args([
            "token",
            "--kommun",
            "0180",
            "--sub",
            client["handlaggare"].as_str().unwrap(),
            "--syfte",
            "EKB-BESLUT",
        ])
        .output()
        .unwrap();
    let token = String::from_utf8(token.stdout).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/kommun/v1/examples/HamtaArbetssokandeStatus.request.xml");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(["--cacert", info["ca"].as_str().unwrap()])
        .args([
            "--cert",
            client["cert"].as_str().unwrap(),
            "--key",
            client["key"].as_str().unwrap(),
        ])
        .args(["-H", &format!("Authorization: Bearer {}", token.trim())])
        .args(["-H", "Content-Type: text/xml; charset=utf-8"])
        .arg("--data-binary")
        .arg(format!("@{}", example.display()))
        .arg(info["kommun_url"].as_str().unwrap())
        .output()
        .unwrap();
    // While the demo's case systems send (--traffic), /metrics and /status show them live.
    let admin = info["admin_url"].as_str().unwrap();
    let get = |path: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .arg(format!("{admin}{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ok_requests = |metrics: &str, client: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("brygga_requests_total{")
                    && l.contains(&format!("client=\"{client}\""))
                    && l.contains("outcome=\"OK\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let first = get("/metrics");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (metrics, page) = loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let (metrics, page) = (get("/metrics"), get("/status"));
        let live = ["stockholm", "goteborg"]
            .iter()
            .all(|c| ok_requests(&metrics, c) > ok_requests(&first, c) + 5.0);
        if (live && page.contains("<td>goteborg</td>")) || std::time::Instant::now() > deadline {
            break (metrics, page);
        }
    };
    for c in ["stockholm", "goteborg"] {
        assert!(
            ok_requests(&metrics, c) > ok_requests(&first, c) + 5.0,
            "{c} is not live on /metrics: {metrics}"
        );
        assert!(
            page.contains(&format!("<td>{c}</td>")),
            "{c} on /status: {page}"
        );
    }
    assert!(
        metrics.contains("outcome=\"HANDLAGGARE_MATCHAR_EJ\""),
        "the demo's refusals: {metrics}"
    );
    assert_eq!(personnummer_like(&metrics), Vec::<String>::new());
    assert_eq!(personnummer_like(&page), Vec::<String>::new());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.ends_with("\n200"),
        "curl: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = text.trim_end_matches("\n200");
    match brygga::contract::soap::decode_response(body.as_bytes(), &Default::default()).unwrap() {
        brygga::contract::soap::KommunResponse::Answer(brygga::model::KommunAnswer::Status(s)) => {
            assert!(s.status.inskriven)
        }
        other => panic!("{other:?}"),
    }
    assert!(
        exit.is_some_and(|s| s.success()),
        "demo --serve exits 0 on SIGTERM: {exit:?}"
    );
}

/// Every file the README links to exists, so its operation table cannot drift from the repo.
#[test]
fn readme_links_point_at_real_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut checked = 0;
    for part in readme.split("](").skip(1) {
        let target = part.split(')').next().unwrap_or("");
        if target.starts_with("http") || target.starts_with('#') {
            continue;
        }
        assert!(
            root.join(target).exists(),
            "README links to a missing file: {target}"
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} links checked");
}

#[test]
fn validate_accepts_every_example_and_names_each_problem() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut examples: Vec<std::path::PathBuf> = Vec::new();
    for dir in ["schemas/kommun/v1/examples", "schemas/af/v1/examples"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            examples.push(e.unwrap().path());
        }
    }
    let out = brygga().arg("validate").args(&examples).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains(": valid ")).count(),
        examples.len()
    );

    let dir = tempfile::tempdir().unwrap();
    let xml = std::fs::read_to_string(
        root.join("schemas/kommun/v1/examples/HamtaArbetssokandeStatus.request.xml"),
    )
    .unwrap();
    let bad_xml = dir.path().join("bad.xml");
    std::fs::write(&bad_xml, xml.replace("198507099805", "198507099806")).unwrap();
    let json =
        std::fs::read_to_string(root.join("schemas/af/v1/examples/handlingsplan.response.json"))
            .unwrap();
    let bad_json = dir.path().join("bad.json");
    std::fs::write(&bad_json, json.replacen("\"AKTIV\"", "\"PAUSAD\"", 1)).unwrap();
    let out = brygga()
        .arg("validate")
        .arg(&bad_xml)
        .arg(&bad_json)
        .arg(&examples[0])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("bad.xml: HamtaArbetssokandeStatus Fraga/Personidentitet: the check digit does not match"), "{text}");
    assert!(text.contains("bad.json: handlingsplan-response handlingsplan.status: must be one of UNDER_UPPRATTANDE, AKTIV, AVSLUTAD"), "{text}");
    assert!(
        !text.contains("198507099806"),
        "no personnummer in the output"
    );
}

/// `brygga bench` runs every scenario in one invocation and ends with the JSON line. A short,
/// bounded run on loopback: this checks that the bench works, not how fast anything is.
#[test]
fn bench_runs_every_scenario_and_prints_the_json_line() {
    let nginx = crate::contracts::tool_from_package("nginx", &["-v"], "nginx");
    for extra in [vec![], vec!["--rate", "200"]] {
        let out = brygga()
            .args([
                "bench",
                "--duration",
                "400ms",
                "--rounds",
                "2",
                "--warmup",
                "100ms",
                "--connections",
                "4",
                "--json",
            ])
            .args(&extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = stdout.lines().last().unwrap_or_default();
        let v: serde_json::Value =
            serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
        let mut expected = vec!["direct", "gateway", "gateway_no_limits"];
        if nginx {
            expected.push("nginx");
        }
        for s in expected {
            let f = &v["scenarios"][s];
            assert!(f["requests"].as_u64().unwrap_or(0) > 0, "{s}: {f}");
            assert_eq!(f["errors"], serde_json::json!({}), "{s}: no errors");
            for k in [
                "rps",
                "p50_ms",
                "p90_ms",
                "p99_ms",
                "p999_ms",
                "server_cpu_s_per_1000",
            ] {
                assert!(f[k].as_f64().is_some_and(|x| x >= 0.0), "{s}.{k}: {f}");
            }
        }
        assert!(v["ratios"]["gateway_over_direct_rps"].as_f64().is_some());
        assert!(v["ratios"]["limits_on_over_off_rps"].as_f64().is_some());
        assert_eq!(v["ratios"]["gateway_over_nginx_rps"].is_number(), nginx);
        if !extra.is_empty() {
            assert_eq!(v["options"]["rate"].as_f64(), Some(200.0));
        }
    }
}

/// `brygga bench --soak`: a short soak on loopback shows the mechanics, not the figures: a
/// window of figures each, AF's injected faults answered as Faults with their Felkod, the
/// gateway's memory and descriptors read, and every answer's audit record found in a chain
/// that verifies.
#[test]
fn a_soak_reports_each_window_and_finds_a_record_for_every_answer() {
    let out = brygga()
        .args([
            "bench",
            "--soak",
            "6s",
            "--window",
            "3s",
            "--duration",
            "500ms",
            "--warmup",
            "100ms",
            "--connections",
            "4",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
    let windows = v["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 2, "{v}");
    for w in windows {
        assert!(w["answers"].as_u64().unwrap() > 0, "{w}");
        assert!(w["rss_bytes"].as_u64().unwrap() > 1_000_000, "{w}");
        assert!(w["fds"].as_u64().unwrap() > 3, "{w}");
        assert!(
            w["p99_ms"].as_f64().unwrap() >= w["p50_ms"].as_f64().unwrap(),
            "{w}"
        );
        // The stretches where AF behaves have their own p99.
        let calm = w["p99_calm_ms"].as_f64().unwrap();
        assert!(calm > 0.0, "{w}");
    }
    // The outage in each window is answered as a Fault naming AF.
    let errors = v["total"]["errors"].as_object().unwrap();
    assert!(
        errors
            .keys()
            .any(|k| k.starts_with("http 50") && k.contains(" AF_")),
        "AF's faults show by Felkod: {errors:?}"
    );
    let audit = &v["audit"];
    assert_eq!(audit["verified"], true, "{audit}");
    assert_eq!(audit["lost"], 0, "{audit}");
    assert!(
        audit["records"].as_u64().unwrap() >= audit["answered"].as_u64().unwrap(),
        "{audit}"
    );
    assert!(v["rate"].as_f64().unwrap() > 0.0);
}

/// The child processes of a process, from `/proc`.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                s.rfind(')')
                    .and_then(|i| s[i + 2..].split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// A soak or bench stopped with Ctrl-C or SIGTERM takes its gateway and simulator with it:
/// none is left running (and holding its port and store) after the command has gone.
#[test]
fn an_interrupted_soak_or_bench_leaves_no_process_behind() {
    for args in [
        &[
            "bench",
            "--soak",
            "10m",
            "--duration",
            "1s",
            "--warmup",
            "100ms",
        ][..],
        &[
            "bench",
            "--duration",
            "10m",
            "--rounds",
            "1",
            "--warmup",
            "100ms",
            "--no-nginx",
        ][..],
    ] {
        let mut run = brygga()
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = run.id();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut children = Vec::new();
        while std::time::Instant::now() < deadline {
            children = children_of(pid);
            if !children.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!children.is_empty(), "{args:?} started no gateway");
        // Under load, past start-up.
        std::thread::sleep(Duration::from_secs(2));
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let status = run.wait().unwrap();
        assert!(
            !status.success(),
            "{args:?}: an interrupted run is no success"
        );
        let gone_by = std::time::Instant::now() + Duration::from_secs(10);
        while children
            .iter()
            .any(|c| std::path::Path::new(&format!("/proc/{c}")).exists())
            && std::time::Instant::now() < gone_by
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let left: Vec<_> = children
            .iter()
            .filter(|c| {
                // A zombie waiting for its reaper has stopped too.
                std::fs::read_to_string(format!("/proc/{c}/stat"))
                    .is_ok_and(|s| !s.contains(") Z "))
            })
            .collect();
        assert!(left.is_empty(), "{args:?} left {left:?} running");
    }
}

/// `brygga pseudonymise` with `args`, the number given on standard input.
fn pseudonymise(args: &[&str], number: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = brygga()
        .arg("pseudonymise")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{number}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn pseudonymise_prints_the_keyed_pseudonym_and_never_the_number() {
    let config = DemoFiles::default().config;
    let config = config.to_str().unwrap();
    let out = pseudonymise(&["--config", config, "--domain", "audit"], "198507099805");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audit = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(audit.starts_with("a1:") && audit.len() == 25, "{audit}");
    let again = pseudonymise(&["--config", config], "19850709-9805");
    assert_eq!(
        String::from_utf8(again.stdout).unwrap().trim(),
        audit,
        "the same person, the same pseudonym"
    );
    let subs = pseudonymise(
        &["--config", config, "--domain", "subscriptions"],
        "198507099805",
    );
    let subs = String::from_utf8(subs.stdout).unwrap();
    assert!(subs.starts_with("s1:") && subs.trim()[3..] != audit[3..]);
    let bad = pseudonymise(&["--config", config], "198507099806");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("check digit") && !err.contains("198507099806"),
        "{err}"
    );
    let unknown = pseudonymise(&["--config", config, "--domain", "nobody"], "198507099805");
    assert!(!unknown.status.success());
    // The number is never taken from the command line, and a configuration is needed.
    let argv = brygga()
        .args(["pseudonymise", "--config", config, "198507099805"])
        .output()
        .unwrap();
    assert!(!argv.status.success());
    assert!(!String::from_utf8_lossy(&argv.stderr).contains("198507099805"));
    let no_config = brygga()
        .args(["pseudonymise"])
        .env_remove("BRYGGA_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!no_config.status.success());
    assert!(String::from_utf8_lossy(&no_config.stderr).contains("--config"));
}

/// The example keys are public: `serve` and `check-config` refuse them outside a test
/// environment, naming each, unless `--allow-example-keys` says so.
#[test]
fn the_public_example_keys_cannot_reach_production() {
    let example = std::fs::read_to_string(DemoFiles::default().config).unwrap();
    let prod = example.replace("environment = \"U1\"", "environment = \"PROD\"");
    assert_ne!(prod, example);
    let dir = DemoFiles::default().config.parent().unwrap().to_owned();
    let file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile_in(&dir)
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let store = data.path().join("audit.db");
    std::fs::write(
        file.path(),
        brygga::devkit::demo::on_free_ports_unlimited(&prod).replace(
            "\"../data/audit.db\"",
            &format!("{:?}", store.display().to_string()),
        ),
    )
    .unwrap();
    let checked = brygga()
        .args(["check-config", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(!checked.status.success());
    let said = String::from_utf8_lossy(&checked.stdout);
    for key in [
        "kommun.key",
        "af.client_key",
        "audit.signing_key",
        "pseudonyms",
        "jwks_file",
    ] {
        assert!(said.contains(key), "{key}: {said}");
    }
    let served = brygga()
        .args(["serve", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(!served.status.success());
    assert!(String::from_utf8_lossy(&served.stderr).contains("certs-example"));
    // Told so, it starts (and is stopped at once).
    let mut child = brygga()
        .args(["serve", "--allow-example-keys", "--config"])
        .arg(file.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("kommun_url"), "{line}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn missing_or_short_pseudonym_keys_stop_start_up() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let example = std::fs::read_to_string(DemoFiles::default().config).unwrap();
    let short = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(short.path(), "abcd\n").unwrap();
    let broken = example
        .replace(
            "file = \"../certs-example/pseudonym-audit.key\"",
            &format!("file = \"{}\"", short.path().display()),
        )
        .replace("domain = \"subscriptions\"", "domain = \"uppfoljning\"");
    let file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile_in(&dir)
        .unwrap();
    std::fs::write(file.path(), broken).unwrap();
    let out = brygga()
        .args(["check-config", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("pseudonyms[0]: the key is 2 bytes; at least 32 are needed"),
        "{text}"
    );
    assert!(
        text.contains("a key for the domain 'subscriptions' is required"),
        "{text}"
    );
    let serve = brygga()
        .args(["serve", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(!serve.status.success(), "serve refuses to start");
}

/// A hand-edited record in the SQLite store is found by `brygga audit verify`.
#[test]
fn audit_verify_finds_a_hand_edited_record() {
    use brygga::store::audit::{Action, AuditLog, CheckpointPolicy, Entry};
    let certs = DemoFiles::default().certs;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("audit.db");
    let key = std::fs::read(certs.join("audit-signing.key")).unwrap();
    let log = AuditLog::start(
        &store,
        Some(&key),
        CheckpointPolicy {
            every_records: 2,
            every: std::time::Duration::from_secs(3600),
            witness: None,
            retention: None,
        },
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for i in 0..5u64 {
        rt.block_on(log.append(Entry {
            time: "2026-11-25T10:00:00Z".into(),
            korrelationsid: uuid::Uuid::new_v4().to_string(),
            direction: "kommun-af".into(),
            operation: "HamtaArbetssokandeStatus".into(),
            action: Action::Disclose,
            organisation: "212000-0142".into(),
            handlaggare: Some("SE2120000142-HL01".into()),
            arende: Some("EB-2026-004711".into()),
            subject: Some("a1:iwKJo_Ja8C0fJvWvjcm_zg".into()),
            syfte: Some("EKB-BESLUT".into()),
            lagrum: None,
            kategorier: vec!["REGISTRERING".into()],
            outcome: "OK".into(),
            af_status: Some(200),
            duration_ms: i,
            genesis: None,
            enhet: None,
            funktion: None,
            personuppgiftsbitrade: None,
            skyddad_identitet: false,
            pruned: None,
            sample: None,
            review: None,
        }))
        .unwrap();
    }
    drop(log);
    let verify = || {
        brygga()
            .args(["audit", "verify", "--store"])
            .arg(&store)
            .arg("--public-key")
            .arg(certs.join("audit-signing.pub.pem"))
            .output()
            .unwrap()
    };
    let ok = verify();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("5 record(s), 3 signed checkpoint(s)"));
    // Someone edits record 2 by hand: who was the case worker.
    let conn = rusqlite::Connection::open(&store).unwrap();
    conn.execute(
        "UPDATE records SET body = replace(body, 'HL01', 'HL99') WHERE seq = 2",
        [],
    )
    .unwrap();
    drop(conn);
    let bad = verify();
    let text = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(text.contains("TAMPERED: record 2 was changed"), "{text}");
}

/// `brygga serve` with `--log-format json` and `[log] level` from the configuration: one JSON
/// line per request with its time, level, Korrelationsid, trace id, client, operation,
/// outcome and duration, and the module levels the configuration set (the gateway's own
/// info line filtered out, the exchange's kept).
#[tokio::test]
async fn serve_logs_json_lines_at_the_configured_module_levels() {
    use std::io::BufRead;
    let setup = crate::audit::ServeSetup::start(Duration::from_millis(0), |store, port| {
        let file = crate::audit::config_with_store(store, Some(port));
        let text = std::fs::read_to_string(file.path())
            .unwrap()
            .replace("level = \"info\"", "level = \"warn,brygga::exchange=info\"");
        std::fs::write(file.path(), text).unwrap();
        file
    })
    .await;
    let mut child = brygga()
        .args(["--log-format", "json", "serve", "--config"])
        .arg(setup.config_file.path())
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: serde_json::Value = serde_json::from_str(&line).unwrap();
    let url = info["kommun_url"]
        .as_str()
        .unwrap()
        .replace("127.0.0.1", "localhost");
    let client = setup.case_system(&url);
    let xml = brygga::contract::soap::encode_request(
        &brygga::model::KommunRequest::HamtaArbetssokandeStatus(
            brygga::devkit::client::example_fraga(
                &setup.sthlm.orgnr,
                &setup.sthlm.namn,
                &setup.sthlm.handlaggare,
                brygga::devkit::sim_af::REGISTRERAD,
                "EKB-BESLUT",
            )
            .unwrap(),
        ),
    );
    let a = client
        .post_with_headers(
            Some(&setup.token),
            xml,
            "text/xml; charset=utf-8",
            &[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )],
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    // Waited for off the runtime: the client's connection task must run to see the GOAWAY.
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    let request = lines
        .iter()
        .find(|l| l["message"] == "kommun request")
        .unwrap_or_else(|| panic!("no request line in {stderr}"));
    assert_eq!(request["level"], "INFO");
    assert_eq!(request["target"], "brygga::exchange");
    assert!(
        request["timestamp"]
            .as_str()
            .is_some_and(|t| t.starts_with("20"))
    );
    assert_eq!(request["client"], "stockholm");
    assert_eq!(request["operation"], "HamtaArbetssokandeStatus");
    assert_eq!(request["outcome"], "OK");
    assert_eq!(request["status"], 200);
    assert_eq!(request["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(
        request["korrelationsid"]
            .as_str()
            .is_some_and(|k| k.len() == 36)
    );
    assert!(request["duration_ms"].as_f64().is_some_and(|d| d > 0.0));
    // The gateway's info lines are below the configured level of their module.
    assert!(
        !lines.iter().any(|l| l["message"] == "brygga is serving"),
        "{stderr}"
    );
    assert_eq!(personnummer_like(&stderr), Vec::<String>::new());
}
