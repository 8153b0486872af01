//! `brygga bench`: the full secure path measured side by side with the direct call to AF and
//! with nginx as a bare mTLS reverse proxy, the scenarios interleaved in one run so that the
//! machine's noise hits all alike.
//!
//! The AF simulator, the gateway and nginx run as child processes, so the CPU each uses can be
//! read from `/proc`; the load generator ([`super::load`]) runs in this process.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use serde_json::json;

use crate::contract::soap;
use crate::devkit::client::{TokenMinter, example_fraga};
use crate::devkit::demo::DemoFiles;
use crate::devkit::load::{self, Target, histogram};
use crate::model::KommunRequest;
use crate::{access::tls, gateway::upstream};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub connections: usize,
    /// Measured time of each scenario in each round.
    pub duration: Duration,
    pub rounds: u32,
    /// Unmeasured load before the first round, per scenario.
    pub warmup: Duration,
    /// Total requests per second per scenario; `None` runs closed loop (the peak).
    pub rate: Option<f64>,
    /// Run the nginx scenario when an `nginx` binary is on PATH.
    pub nginx: bool,
    pub files: DemoFiles,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scenario {
    Direct,
    Gateway,
    /// The same gateway with `limits.enforce_rate_limits = false`: what the limits cost.
    GatewayNoLimits,
    Nginx,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Direct => "direct",
            Scenario::Gateway => "gateway",
            Scenario::GatewayNoLimits => "gateway_no_limits",
            Scenario::Nginx => "nginx",
        }
    }
}

/// A child process that is killed when dropped, so a failed run leaves nothing behind.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a brygga subcommand and reads the JSON line it prints when it is ready.
pub(crate) fn spawn_brygga(args: &[&str], log: &Path) -> Result<(Proc, serde_json::Value), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let log = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("BRYGGA_BENCH_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start brygga {}: {e}", args.join(" ")))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let proc = Proc(child);
    // The readiness line, within a deadline: a child that hangs must not hang the bench.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| format!("brygga {} did not report ready within 30 s", args.join(" ")))?;
    let v = serde_json::from_str(&line)
        .map_err(|_| format!("brygga {} did not start: {line:?}", args.join(" ")))?;
    Ok((proc, v))
}

pub(crate) fn port_of(url: &str) -> Result<u16, String> {
    url.rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no port in {url}"))
}

/// CPU seconds (user + system) used so far by these processes and their children.
fn cpu_seconds(pids: &[u32]) -> f64 {
    // /proc reports in USER_HZ, which Linux fixes at 100 per second for this interface.
    const TICKS: f64 = 100.0;
    let stat = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    let fields = |s: &str| -> Option<(u32, f64)> {
        let rest = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ppid = f.get(1)?.parse().ok()?;
        let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        Some((ppid, ticks))
    };
    let mut total = 0.0;
    for &pid in pids {
        if let Some((_, t)) = stat(pid).as_deref().and_then(fields) {
            total += t;
        }
    }
    // Workers of a master process (nginx).
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((ppid, t)) = stat(pid).as_deref().and_then(fields)
                && pids.contains(&ppid)
            {
                total += t;
            }
        }
    }
    total / TICKS
}

pub(crate) fn client_tls(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut cfg = tls::client_config(
        &tls::load_certs(ca).map_err(|e| e.to_string())?,
        Some((
            tls::load_certs(cert).map_err(|e| e.to_string())?,
            tls::load_key(key).map_err(|e| e.to_string())?,
        )),
    )
    .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Synthetic personnummer with valid check digits, so every request asks about someone new.
pub(crate) fn persons(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let base = format!(
                "19{:02}{:02}{:02}{:03}",
                40 + i % 60,
                1 + i % 12,
                1 + i % 28,
                i % 1000
            );
            let d: Vec<u8> = base[2..].bytes().map(|b| b - b'0').collect();
            format!("{base}{}", crate::model::ident::luhn_check_digit(&d))
        })
        .collect()
}

/// The figures of one scenario over all its rounds.
#[derive(Debug)]
struct Figures {
    hist: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    seconds: f64,
    cpu: f64,
}

pub(crate) fn absolute_paths(text: &str, certs: &Path) -> String {
    text.replace("\"../certs-example/", &format!("\"{}/", certs.display()))
}

/// The example AF simulator's configuration for a run, in `dir`: on a free port, its tokens
/// outliving the run.
pub(crate) fn write_sim_config(
    files: &DemoFiles,
    certs: &Path,
    dir: &Path,
) -> Result<PathBuf, String> {
    let text = absolute_paths(
        &std::fs::read_to_string(&files.sim_config).map_err(|e| e.to_string())?,
        certs,
    )
    .replace("127.0.0.1:9443", "127.0.0.1:0")
    .replace("token_lifetime = \"300s\"", "token_lifetime = \"3600s\"");
    let path = dir.join("sim.toml");
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    Ok(path)
}

/// The example gateway configuration for a run, in `dir`: pointed at the simulator on
/// `sim_port`, on free ports, every limit out of reach (or off), its store `dir/<name>.db`.
pub(crate) fn write_gateway_config(
    files: &DemoFiles,
    certs: &Path,
    dir: &Path,
    name: &str,
    sim_port: u16,
    limits_on: bool,
) -> Result<PathBuf, String> {
    let mut text = crate::devkit::demo::on_free_ports_unlimited(&absolute_paths(
        &std::fs::read_to_string(&files.config).map_err(|e| e.to_string())?,
        certs,
    ))
    .replace(
        "https://localhost:9443",
        &format!("https://localhost:{sim_port}"),
    )
    .replace(
        "\"../data/audit.db\"",
        &format!("{:?}", dir.join(format!("{name}.db")).display().to_string()),
    );
    if !limits_on {
        text = text.replace("[limits]\n", "[limits]\nenforce_rate_limits = false\n");
    }
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    Ok(config)
}

/// Starts `brygga serve` on `config`; returns it and its `kommun` listener's port.
pub(crate) fn start_gateway(config: &Path, log: &Path) -> Result<(Proc, u16), String> {
    let (proc, info) = spawn_brygga(&["serve", "--config", &config.to_string_lossy()], log)?;
    let port = port_of(info["kommun_url"].as_str().unwrap_or(""))?;
    Ok((proc, port))
}

/// The gateway as a case system calls it: `HamtaArbetssokandeStatus` about each of `people`
/// in turn, as a Stockholm case worker over Stockholm's client certificate.
pub(crate) fn gateway_target(
    certs: &Path,
    people: &[String],
    port: u16,
    pid: u32,
) -> Result<Target, String> {
    let minter = TokenMinter::load(
        &certs.join("idp-0180.key"),
        "https://idp.stockholm.example/",
        "urn:se:brygga:kommun:v1",
    )?;
    let jwt = minter.sign(&minter.claims(
        "SE2120000142-HL01",
        "0180",
        "EKB-BESLUT",
        Duration::from_secs(3600),
    ))?;
    let bodies = people
        .iter()
        .map(|p| {
            let f = example_fraga(
                "2120000142",
                "Stockholms stad",
                "SE2120000142-HL01",
                p,
                "EKB-BESLUT",
            )?;
            Ok(Bytes::from(soap::encode_request(
                &KommunRequest::HamtaArbetssokandeStatus(f),
            )))
        })
        .collect::<Result<_, String>>()?;
    Ok(Target {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        tls: client_tls(
            &certs.join("kommun-ca.pem"),
            &certs.join("klient-0180.pem"),
            &certs.join("klient-0180.key"),
        )?,
        path: crate::gateway::exchange::KOMMUN_PATH,
        content_type: "text/xml; charset=utf-8",
        authorization: format!("Bearer {jwt}"),
        bodies,
        server_pids: vec![pid],
    })
}

impl Target {
    /// The same requests to another server.
    fn with_server(&self, addr: SocketAddr, pid: u32) -> Self {
        Self {
            addr,
            tls: self.tls.clone(),
            path: self.path,
            content_type: self.content_type,
            authorization: self.authorization.clone(),
            bodies: self.bodies.clone(),
            server_pids: vec![pid],
        }
    }
}

/// Runs the benchmark; returns the JSON object with every figure.
pub async fn run(opts: &BenchOptions, print_table: bool) -> Result<serde_json::Value, String> {
    let certs = std::fs::canonicalize(&opts.files.certs)
        .map_err(|e| format!("{}: {e}", opts.files.certs.display()))?;
    let dir = std::env::temp_dir().join(format!("brygga-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let _cleanup = Cleanup(dir.clone());

    // The AF simulator. It is the same upstream for every scenario; one worker thread keeps
    // it from competing with the process under test for the cores.
    let sim_toml = write_sim_config(&opts.files, &certs, &dir)?;
    let (sim, sim_info) = spawn_brygga(
        &[
            "--worker-threads",
            "1",
            "sim",
            "af",
            "--config",
            &sim_toml.to_string_lossy(),
        ],
        &dir.join("sim.log"),
    )?;
    let sim_port = port_of(sim_info["af_sim_url"].as_str().unwrap_or(""))?;

    // The gateway, pointed at it, twice: with every limit checked (set out of reach, so the
    // bench measures the path) and with the limits off, each with its own store.
    let launch = |name: &str, limits_on: bool| {
        let config = write_gateway_config(&opts.files, &certs, &dir, name, sim_port, limits_on)?;
        start_gateway(&config, &dir.join(format!("{name}.log")))
    };
    let (gateway, gw_port) = launch("gateway", true)?;
    let (gateway_no_limits, gw_nl_port) = launch("gateway-no-limits", false)?;

    // nginx as a bare mTLS reverse proxy in front of the same simulator.
    let nginx = if opts.nginx {
        start_nginx(&dir, &certs, sim_port).await?
    } else {
        None
    };

    // Requests: an AF token for the direct and nginx paths, a case-worker JWT for the gateway.
    let af_tls = client_tls(
        &certs.join("af-ca.pem"),
        &certs.join("gateway-to-af.pem"),
        &certs.join("gateway-to-af.key"),
    )?;
    let af_token = sim_token(sim_port, af_tls.clone()).await?;
    let people = persons(512);
    let json_bodies: Vec<Bytes> = people
        .iter()
        .map(|p| {
            // What the gateway sends: who asks and why, and the purpose's categories.
            Bytes::from(format!(
                r#"{{"personnummer":"{p}","fromDatum":"2026-06-01","tomDatum":"2026-11-30","fragande":{{"organisationsnummer":"212000-0142","organisationsnamn":"Stockholms stad","handlaggare":"SE2120000142-HL01","syfte":"EKB-BESLUT","syfteBeskrivning":"Beslut om eller kontroll av ekonomiskt bistånd","lagrum":"11 kap. 11 a § socialtjänstlagen; 5 § förordningen (2008:975)","arendereferens":"a1:SM5Gwe7hTmTc4YSM_5yTZw"}},"kategorier":["AKASSA","AKTIVITETER","AKTIVITETSRAPPORT","ERSATTNINGAR","HANDLINGSPLAN","KONTOR","REGISTRERING","SOKANDEKATEGORI"]}}"#
            ))
        })
        .collect();
    let localhost = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let gateway_target = gateway_target(&certs, &people, gw_port, gateway.0.id())?;
    let gateway_no_limits_target =
        gateway_target.with_server(localhost(gw_nl_port), gateway_no_limits.0.id());
    let kommun_tls = gateway_target.tls.clone();
    let mut targets: Vec<(Scenario, Arc<Target>)> = vec![
        (
            Scenario::Direct,
            Arc::new(Target {
                addr: localhost(sim_port),
                tls: af_tls.clone(),
                path: upstream::STATUS_PATH,
                content_type: "application/json",
                authorization: format!("Bearer {af_token}"),
                bodies: json_bodies.clone(),
                server_pids: vec![sim.0.id()],
            }),
        ),
        (Scenario::Gateway, Arc::new(gateway_target)),
        (
            Scenario::GatewayNoLimits,
            Arc::new(gateway_no_limits_target),
        ),
    ];
    if let Some((proc, port)) = &nginx {
        targets.push((
            Scenario::Nginx,
            Arc::new(Target {
                addr: localhost(*port),
                tls: kommun_tls.clone(),
                path: upstream::STATUS_PATH,
                content_type: "application/json",
                authorization: format!("Bearer {af_token}"),
                bodies: json_bodies,
                server_pids: vec![proc.0.id()],
            }),
        ));
    }

    // Warm up, then interleave: every round runs every scenario once.
    let empty = histogram()?;
    for (_, t) in &targets {
        load::run_segment(t, opts.connections, opts.rate, opts.warmup, &empty).await;
    }
    let mut figures: BTreeMap<Scenario, Figures> = BTreeMap::new();
    for round in 0..opts.rounds as usize {
        // Each round starts with another scenario, so none always runs first.
        let order = (0..targets.len()).map(|i| &targets[(i + round) % targets.len()]);
        for (scenario, t) in order {
            let cpu_before = cpu_seconds(&t.server_pids);
            let started = Instant::now();
            let load::Bucket { hist, errors } =
                load::run_segment(t, opts.connections, opts.rate, opts.duration, &empty).await;
            let seconds = started.elapsed().as_secs_f64();
            let cpu = cpu_seconds(&t.server_pids) - cpu_before;
            let f = figures.entry(*scenario).or_insert_with(|| Figures {
                hist: empty.clone(),
                errors: BTreeMap::new(),
                seconds: 0.0,
                cpu: 0.0,
            });
            let _ = f.hist.add(&hist);
            for (k, v) in errors {
                *f.errors.entry(k).or_insert(0) += v;
            }
            f.seconds += seconds;
            f.cpu += cpu;
        }
    }
    drop(targets);
    drop(nginx);
    drop(gateway);
    drop(gateway_no_limits);
    drop(sim);

    let mut scenarios = serde_json::Map::new();
    let rps = |s: Scenario| {
        figures
            .get(&s)
            .map(|f| f.hist.len() as f64 / f.seconds.max(1e-9))
    };
    let p99 = |s: Scenario| {
        figures
            .get(&s)
            .map(|f| f.hist.value_at_quantile(0.99) as f64 / 1000.0)
    };
    for (scenario, f) in &figures {
        let n = f.hist.len();
        let q = |x: f64| f.hist.value_at_quantile(x) as f64 / 1000.0;
        scenarios.insert(
            scenario.name().into(),
            json!({
                "requests": n,
                "rps": n as f64 / f.seconds.max(1e-9),
                "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "p999_ms": q(0.999),
                "errors": f.errors,
                "server_cpu_s_per_1000": if n > 0 { f.cpu / n as f64 * 1000.0 } else { 0.0 },
            }),
        );
    }
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let result = json!({
        "options": {
            "connections": opts.connections,
            "duration_s": opts.duration.as_secs_f64(),
            "rounds": opts.rounds,
            "rate": opts.rate,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        },
        "scenarios": scenarios,
        "ratios": {
            "gateway_over_direct_rps": ratio(rps(Scenario::Gateway), rps(Scenario::Direct)),
            "gateway_over_nginx_rps": ratio(rps(Scenario::Gateway), rps(Scenario::Nginx)),
            "limits_on_over_off_rps": ratio(rps(Scenario::Gateway), rps(Scenario::GatewayNoLimits)),
            "gateway_minus_direct_p99_ms": p99(Scenario::Gateway).zip(p99(Scenario::Direct)).map(|(g, d)| g - d),
        },
    });
    if print_table {
        print_human(&result);
    }
    Ok(result)
}

fn print_human(r: &serde_json::Value) {
    let o = &r["options"];
    println!(
        "brygga bench: {} connection(s), {} round(s) of {} s per scenario, {}; load generator, gateway, simulator and nginx share {} core(s)",
        o["connections"],
        o["rounds"],
        o["duration_s"],
        match o["rate"].as_f64() {
            Some(rate) => format!("fixed rate {rate} req/s"),
            None => "closed loop (peak)".into(),
        },
        o["cores"],
    );
    println!(
        "{:<17} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>14}",
        "scenario", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "errors", "CPU s/1000 req"
    );
    if let Some(s) = r["scenarios"].as_object() {
        for (name, f) in s {
            let errors: u64 = f["errors"]
                .as_object()
                .map(|e| e.values().filter_map(|v| v.as_u64()).sum())
                .unwrap_or(0);
            println!(
                "{:<17} {:>9.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7} {:>14.3}",
                name,
                f["rps"].as_f64().unwrap_or(0.0),
                f["p50_ms"].as_f64().unwrap_or(0.0),
                f["p90_ms"].as_f64().unwrap_or(0.0),
                f["p99_ms"].as_f64().unwrap_or(0.0),
                f["p999_ms"].as_f64().unwrap_or(0.0),
                errors,
                f["server_cpu_s_per_1000"].as_f64().unwrap_or(0.0),
            );
        }
    }
    let ratios = &r["ratios"];
    let show = |v: &serde_json::Value| {
        v.as_f64()
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "gateway/direct req/s {}   gateway/nginx req/s {}   limits on/off req/s {}   gateway p99 - direct p99 {} ms",
        show(&ratios["gateway_over_direct_rps"]),
        show(&ratios["gateway_over_nginx_rps"]),
        show(&ratios["limits_on_over_off_rps"]),
        show(&ratios["gateway_minus_direct_p99_ms"]),
    );
}

/// Removes the bench's temporary directory.
pub(crate) struct Cleanup(pub(crate) PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn sim_token(port: u16, tls: Arc<rustls::ClientConfig>) -> Result<String, String> {
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let t: crate::contract::af_json::TokenResponse = http
        .post(format!("https://localhost:{port}/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "brygga"),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    Ok(t.access_token)
}

fn nginx_on_path() -> bool {
    Command::new("nginx")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// nginx with the same mTLS as the gateway's `kommun` listener, proxying to the simulator
/// over mTLS with pooled upstream connections: what an operator would deploy instead.
async fn start_nginx(
    dir: &Path,
    certs: &Path,
    sim_port: u16,
) -> Result<Option<(Proc, u16)>, String> {
    if !nginx_on_path() {
        return Ok(None);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let c = |f: &str| certs.join(f).display().to_string();
    let d = dir.display();
    let conf = format!(
        r#"worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  # Logged per request, as the gateway logs a line per request.
  access_log {d}/nginx-access.log;
  client_body_temp_path {d}/nginx-body;
  proxy_temp_path {d}/nginx-proxy;
  fastcgi_temp_path {d}/nginx-fastcgi;
  uwsgi_temp_path {d}/nginx-uwsgi;
  scgi_temp_path {d}/nginx-scgi;
  upstream af {{ server 127.0.0.1:{sim_port}; keepalive 64; keepalive_requests 1000000; }}
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate {kc}; ssl_certificate_key {kk};
    ssl_client_certificate {kca}; ssl_verify_client on;
    location / {{
      proxy_pass https://af;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_certificate {gc}; proxy_ssl_certificate_key {gk};
      proxy_ssl_trusted_certificate {aca}; proxy_ssl_verify on; proxy_ssl_name localhost;
      proxy_ssl_session_reuse on;
    }}
  }}
}}
"#,
        kc = c("gateway-kommun.pem"),
        kk = c("gateway-kommun.key"),
        kca = c("kommun-ca.pem"),
        gc = c("gateway-to-af.pem"),
        gk = c("gateway-to-af.key"),
        aca = c("af-ca.pem"),
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("nginx.out")).map_err(|e| e.to_string())?;
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start nginx: {e}"))?;
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("nginx.out")).unwrap_or_default();
            return Err(format!("nginx did not start: {log}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Some((proc, port)))
}
