//! The AF simulator: a real HTTPS server with mutual TLS, an OAuth2 token endpoint and AF's
//! status endpoint. It answers for every valid personnummer, derived deterministically from
//! the number, plus the fixed persons in [`FIXED_PERSONS`]. Latency and failures can be
//! injected for tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::Request;
use hyper::body::Incoming;
use serde::Deserialize;
use sha2::Digest;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::CertAndKey;
use crate::contract::af_json::*;
use crate::gateway::server::{self, ConnLimits, HttpResponse, Peer, respond};
use crate::model::Personnummer;
use crate::{access::tls, gateway::upstream};

/// The simulator's configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimFile {
    pub bind: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA that the gateway's client certificate must chain to.
    pub client_ca: PathBuf,
    /// The OAuth2 client ids the token endpoint accepts.
    pub client_ids: Vec<String>,
    #[serde(with = "humantime_serde", default = "default_token_lifetime")]
    pub token_lifetime: Duration,
    #[serde(default)]
    pub faults: Faults,
}

fn default_token_lifetime() -> Duration {
    Duration::from_secs(300)
}

/// Injected misbehaviour, for tests and demonstrations.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Added before every data answer.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Every n-th data request (1 = all) is answered with `fail_status`; 0 = never.
    pub fail_every: u64,
    pub fail_status: u16,
    /// Answer every data request with JSON that breaks AF's contract.
    pub invalid_answers: bool,
}

/// Validated simulator settings.
#[derive(Debug, Clone)]
pub struct SimSettings {
    pub bind: SocketAddr,
    pub tls: CertAndKey,
    pub client_ca: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub client_ids: Vec<String>,
    pub token_lifetime: Duration,
    pub faults: Faults,
}

impl SimSettings {
    /// Loads a simulator configuration; relative paths are taken from the file's directory.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let f: SimFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let bind = f
            .bind
            .parse()
            .map_err(|_| format!("{}: bind: not an address", path.display()))?;
        if f.token_lifetime.is_zero() || f.token_lifetime > Duration::from_secs(86_400) {
            return Err(format!(
                "{}: token_lifetime must be 1s to 24h",
                path.display()
            ));
        }
        if f.faults.latency > Duration::from_secs(3600) {
            return Err(format!(
                "{}: faults.latency must be at most 1h",
                path.display()
            ));
        }
        if f.faults.fail_every > 0 && !(400..=599).contains(&f.faults.fail_status) {
            return Err(format!(
                "{}: faults.fail_status must be 400-599",
                path.display()
            ));
        }
        Ok(Self {
            bind,
            tls: CertAndKey {
                chain: tls::load_certs(&dir.join(&f.cert)).map_err(|e| e.to_string())?,
                key: tls::load_key(&dir.join(&f.key)).map_err(|e| e.to_string())?,
            },
            client_ca: tls::load_certs(&dir.join(&f.client_ca)).map_err(|e| e.to_string())?,
            client_ids: f.client_ids,
            token_lifetime: f.token_lifetime,
            faults: f.faults,
        })
    }
}

/// Counters a test can read to see what reached AF.
#[derive(Debug, Default)]
pub struct SimStats {
    pub token_requests: AtomicU64,
    pub data_requests: AtomicU64,
    /// `AF-TrackingId` and `AF-EndUserId` of the latest accepted data request.
    pub last_caller: Mutex<Option<(String, String)>>,
    /// While true, every data request and health check is answered 503 (AF is down).
    pub down: std::sync::atomic::AtomicBool,
    /// Data requests being answered now, and the most at once: over HTTP/1.1 each holds a
    /// connection of its own.
    pub in_flight: AtomicU64,
    pub peak_in_flight: AtomicU64,
    /// Health checks asked (by `Ping` and `/readyz`).
    pub health_requests: AtomicU64,
    /// The `traceparent` and `tracestate` of the latest data request.
    pub last_traceparent: Mutex<Option<String>>,
    pub last_tracestate: Mutex<Option<String>>,
    /// Who asked, and for which categories, in the latest accepted person request.
    pub last_asked: Mutex<Option<(crate::contract::af_json::FragandeJson, Option<Vec<String>>)>>,
    /// Faults switched on and off while the simulator runs (the soak's): every n-th data
    /// request answered 503 (0 = off), and every n-th delayed by `slow_ms` (0 = off). They
    /// come on top of the configured `faults`.
    pub fail_every: AtomicU64,
    pub slow_every: AtomicU64,
    pub slow_ms: AtomicU64,
}

/// Counts a data request as under way while it lives.
struct InFlight<'a>(&'a SimStats);

impl<'a> InFlight<'a> {
    fn enter(stats: &'a SimStats) -> Self {
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(stats)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Sim {
    settings: SimSettings,
    tokens: Mutex<HashMap<String, Instant>>,
    /// Plans seen, by kommunkod and plan id.
    plans: Mutex<std::collections::HashSet<String>>,
    stats: Arc<SimStats>,
}

/// A running simulator.
pub struct RunningSim {
    pub addr: SocketAddr,
    pub stats: Arc<SimStats>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl RunningSim {
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Binds and starts the simulator.
pub async fn start(settings: SimSettings) -> Result<RunningSim, String> {
    let tls = server::ListenerTls::fixed(
        settings.tls.chain.clone(),
        settings.tls.key.clone_key(),
        &settings.client_ca,
        &[],
    )
    .map_err(|e| e.to_string())?;
    let listener = server::bind(settings.bind, "AF simulator").await?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let stats = Arc::new(SimStats::default());
    let sim = Arc::new(Sim {
        settings,
        tokens: Mutex::new(HashMap::new()),
        plans: Mutex::new(std::collections::HashSet::new()),
        stats: stats.clone(),
    });
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tasks.spawn(server::serve_tls(
        listener,
        tls,
        ConnLimits::default(),
        rx,
        move |peer, req| serve(sim.clone(), peer, req),
    ));
    Ok(RunningSim {
        addr,
        stats,
        shutdown,
        tasks,
    })
}

fn problem(status: StatusCode, title: &str, detail: impl Into<String>) -> HttpResponse {
    let p = Problem {
        kind: "about:blank".into(),
        title: Some(title.into()),
        status: Some(i64::from(status.as_u16())),
        detail: Some(detail.into()),
        instance: None,
    };
    respond(
        status,
        "application/problem+json",
        serde_json::to_vec(&p).unwrap_or_default(),
    )
}

fn json(value: &impl serde::Serialize) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(body) => respond(StatusCode::OK, "application/json", body),
        Err(e) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error",
            e.to_string(),
        ),
    }
}

async fn body_of(req: Request<Incoming>) -> Result<bytes::Bytes, HttpResponse> {
    Limited::new(req.into_body(), 64 * 1024)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| {
            problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Body too large",
                "at most 64 KiB",
            )
        })
}

async fn serve(sim: Arc<Sim>, _peer: Arc<Peer>, req: Request<Incoming>) -> HttpResponse {
    if req.uri().path() == upstream::HEALTH_PATH {
        sim.stats.health_requests.fetch_add(1, Ordering::Relaxed);
    }
    match (req.method().clone(), req.uri().path()) {
        (Method::POST, "/oauth2/token") => token(&sim, req).await,
        (Method::POST, upstream::STATUS_PATH)
        | (Method::POST, upstream::ERSATTNINGSBESLUT_PATH)
        | (Method::POST, upstream::HANDLINGSPLAN_PATH)
        | (Method::POST, upstream::AKTIVITETSPLAN_PATH) => data(&sim, req).await,
        (Method::GET, upstream::HEALTH_PATH) if sim.stats.down.load(Ordering::SeqCst) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Down",
            "the simulator was told it is down",
        ),
        (Method::GET, upstream::HEALTH_PATH) => json(&HealthResponse {
            status: "UP".into(),
        }),
        _ => problem(StatusCode::NOT_FOUND, "Not found", "no such resource"),
    }
}

fn form_value(body: &str, key: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(b[i + 1]) * 16 + hex(b[i + 2]));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn token(sim: &Sim, req: Request<Incoming>) -> HttpResponse {
    sim.stats.token_requests.fetch_add(1, Ordering::Relaxed);
    let body = match body_of(req).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(r) => return r,
    };
    if form_value(&body, "grant_type").as_deref() != Some("client_credentials") {
        return problem(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        );
    }
    match form_value(&body, "client_id") {
        Some(id) if sim.settings.client_ids.contains(&id) => {}
        _ => {
            return problem(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "unknown client_id",
            );
        }
    }
    let value = format!("sim-{}", uuid::Uuid::new_v4().simple());
    let expires = Instant::now() + sim.settings.token_lifetime;
    if let Ok(mut tokens) = sim.tokens.lock() {
        let now = Instant::now();
        tokens.retain(|_, exp| *exp > now);
        tokens.insert(value.clone(), expires);
    }
    json(&TokenResponse {
        access_token: value,
        token_type: "Bearer".into(),
        expires_in: i64::try_from(sim.settings.token_lifetime.as_secs().clamp(1, 86_400))
            .unwrap_or(86_400),
    })
}

fn check_headers(sim: &Sim, req: &Request<Incoming>) -> Result<(), Box<HttpResponse>> {
    let h = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let token = h("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            problem(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "bearer token missing",
            )
        })?;
    let valid = sim
        .tokens
        .lock()
        .map(|t| t.get(token).is_some_and(|exp| *exp > Instant::now()))
        .unwrap_or(false);
    if !valid {
        return Err(Box::new(problem(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "token unknown or expired",
        )));
    }
    if h("AF-TrackingId")
        .and_then(|v| uuid::Uuid::try_parse(v).ok())
        .is_none()
    {
        return Err(Box::new(problem(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "AF-TrackingId must be a UUID",
        )));
    }
    for name in ["AF-SystemId", "AF-EndUserId"] {
        if h(name).is_none_or(str::is_empty) {
            return Err(Box::new(problem(
                StatusCode::BAD_REQUEST,
                "Bad request",
                format!("{name} is required"),
            )));
        }
    }
    if !h("AF-Environment").is_some_and(|e| crate::config::ENVIRONMENTS.contains(&e)) {
        return Err(Box::new(problem(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "AF-Environment must be U1, I1, T1, T2 or PROD",
        )));
    }
    Ok(())
}

/// Every data endpoint: headers and token checked, the body read, faults injected, then the
/// answer for the path.
async fn data(sim: &Sim, req: Request<Incoming>) -> HttpResponse {
    let n = sim.stats.data_requests.fetch_add(1, Ordering::Relaxed) + 1;
    let _in_flight = InFlight::enter(&sim.stats);
    if let Err(r) = check_headers(sim, &req) {
        return *r;
    }
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    if let Ok(mut last) = sim.stats.last_caller.lock() {
        *last = Some((header("AF-TrackingId"), header("AF-EndUserId")));
    }
    if let Ok(mut last) = sim.stats.last_traceparent.lock() {
        *last = Some(header("traceparent"));
    }
    if let Ok(mut last) = sim.stats.last_tracestate.lock() {
        *last = Some(header("tracestate"));
    }
    let path = req.uri().path().to_owned();
    let body = match body_of(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let f = sim.settings.faults;
    if sim.stats.down.load(Ordering::SeqCst) {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Down",
            "the simulator was told it is down",
        );
    }
    if !f.latency.is_zero() {
        tokio::time::sleep(f.latency).await;
    }
    let slow_every = sim.stats.slow_every.load(Ordering::Relaxed);
    if slow_every > 0 && n.is_multiple_of(slow_every) {
        let ms = sim.stats.slow_ms.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let fail_every = sim.stats.fail_every.load(Ordering::Relaxed);
    if fail_every > 0 && n.is_multiple_of(fail_every) {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Injected failure",
            "the simulator was told to fail",
        );
    }
    if f.fail_every > 0 && n.is_multiple_of(f.fail_every) {
        let s = StatusCode::from_u16(f.fail_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut r = problem(s, "Injected failure", "the simulator was told to fail");
        if s == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("7"),
            );
        }
        return r;
    }
    if f.invalid_answers {
        return respond(
            StatusCode::OK,
            "application/json",
            r#"{"kandAvAf":true,"inskriven":true,"omfattningProcent":250,"beslut":[{"typ":"X"}],"handlingsplan":{"status":1},"referens":""}"#,
        );
    }
    answer(sim, &path, &body)
}

/// AF's answer to a data request's body at `path`: the request checked as AF checks it (who
/// asks and why included), then only what the asking purpose may see.
fn answer(sim: &Sim, path: &str, body: &[u8]) -> HttpResponse {
    let bad = |what: String| problem(StatusCode::BAD_REQUEST, "Bad request", what);
    if path == upstream::AKTIVITETSPLAN_PATH {
        let request: AktivitetsplanRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return bad(json_error(&e)),
        };
        if let Err(e) = crate::contract::translate::check_fragande(&request.fragande) {
            return bad(e.to_string());
        }
        if let Ok(mut l) = sim.stats.last_asked.lock() {
            *l = Some((request.fragande.clone(), None));
        }
        return match crate::contract::translate::aktivitetsplan_from_request(&request) {
            Ok((person, ..)) if is_af_failure(&person) => problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "simulated internal error",
            ),
            Ok((_, kommun, plan)) => json(&receipt(sim, kommun, &plan)),
            Err(e) => bad(e.to_string()),
        };
    }
    let request: PersonRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return bad(json_error(&e)),
    };
    let person = match Personnummer::parse(&request.personnummer) {
        Ok(p) => p,
        Err(e) => return bad(format!("personnummer: {e}")),
    };
    // AF's own secrecy assessment and log need to know who asks and why.
    if let Err(e) = crate::contract::translate::check_fragande(&request.fragande) {
        return bad(e.to_string());
    }
    let kategorier = match request
        .kategorier
        .as_deref()
        .map(|k| {
            k.iter()
                .map(|c| {
                    crate::model::Datakategori::from_code(c)
                        .ok_or_else(|| format!("kategorier: unknown category {c:?}"))
                })
                .collect::<Result<std::collections::HashSet<_>, _>>()
        })
        .transpose()
    {
        Ok(k) => k,
        Err(e) => return bad(e),
    };
    if let Ok(mut l) = sim.stats.last_asked.lock() {
        *l = Some((request.fragande.clone(), request.kategorier.clone()));
    }
    if is_af_failure(&person) {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error",
            "simulated internal error",
        );
    }
    // Only what the asking purpose may see leaves AF (minimisation at the source).
    let sees = |d: crate::model::Datakategori| kategorier.as_ref().is_none_or(|k| k.contains(&d));
    use crate::model::Datakategori as D;
    match path {
        upstream::STATUS_PATH => {
            let mut r = status_for(&person).unwrap_or_else(okand);
            if !sees(D::Registrering) {
                r.inskrivningsdatum = None;
                r.avaktualisering = None;
            }
            if !sees(D::Kontor) {
                r.kontor = None;
            }
            if !sees(D::Sokandekategori) {
                r.sokandekategori = None;
                r.omfattning_procent = None;
            }
            if !sees(D::Aktivitetsrapport) {
                r.senaste_aktivitetsrapport = None;
            }
            if !sees(D::AKassa) {
                r.a_kassa = None;
            }
            json(&r)
        }
        upstream::ERSATTNINGSBESLUT_PATH => {
            let mut r = ersattningar_for(&person);
            if !sees(D::Ersattningar) {
                r.beslut.clear();
                r.aktivitetsstod_dagar = None;
                r.senaste_utbetalning = None;
            }
            json(&r)
        }
        upstream::HANDLINGSPLAN_PATH => {
            let mut r = handlingsplan_for(&person);
            if !sees(D::Handlingsplan) {
                r.handlingsplan = None;
            }
            if let Some(plan) = r.handlingsplan.as_mut() {
                if !sees(D::Aktiviteter) {
                    plan.aktiviteter.clear();
                }
                if !sees(D::Kontor) {
                    plan.kontor = None;
                }
            }
            json(&r)
        }
        _ => problem(StatusCode::NOT_FOUND, "Not found", "no such resource"),
    }
}

/// A request body serde could not read, said without echoing its values: a missing or
/// unknown member is named (its name is the contract's), anything else only located.
fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.starts_with("missing field") || text.starts_with("unknown field") {
        let named = text.split(" at line").next().unwrap_or(&text);
        return format!("body: {named}");
    }
    format!(
        "body: line {} column {}: {:?}",
        e.line(),
        e.column(),
        e.classify()
    )
}

fn is_af_failure(p: &Personnummer) -> bool {
    p.expose() == AF_FEL
}

/// AF's receipt: a reference derived from the plan, MOTTAGEN the first time a plan id is
/// seen and UPPDATERAD after.
fn receipt(
    sim: &Sim,
    kommun: crate::model::Kommunkod,
    plan: &crate::model::Aktivitetsplan,
) -> AktivitetsplanResponse {
    let key = format!("{kommun}/{}", plan.plan_id);
    let seen = sim
        .plans
        .lock()
        .map(|mut p| !p.insert(key.clone()))
        .unwrap_or(false);
    let h = sha2::Sha256::digest(key.as_bytes());
    AktivitetsplanResponse {
        referens: format!("AKP-{}", hex::encode_upper(&h[..6])),
        mottagen: crate::model::lexical::format_tidpunkt(
            time::OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        ),
        status: if seen { "UPPDATERAD" } else { "MOTTAGEN" }.to_owned(),
    }
}

/// A fixed person of the simulator, documented in the README.
pub struct FixedPerson {
    pub personnummer: &'static str,
    pub label: &'static str,
}

/// Registered jobseeker, full time, member of an a-kassa (the example answer in `schemas/`).
pub const REGISTRERAD: &str = "198507099805";
/// Deregistered: got a job.
pub const AVAKTUALISERAD: &str = "199003159812";
/// Registered with protected identity: the office is removed from the answer.
pub const SKYDDAD: &str = "197805129819";
/// Not known to AF.
pub const OKAND: &str = "200112249826";
/// AF fails with an internal error for this person.
pub const AF_FEL: &str = "196911309828";

pub const FIXED_PERSONS: [FixedPerson; 5] = [
    FixedPerson {
        personnummer: REGISTRERAD,
        label: "registered jobseeker",
    },
    FixedPerson {
        personnummer: AVAKTUALISERAD,
        label: "deregistered (got a job)",
    },
    FixedPerson {
        personnummer: SKYDDAD,
        label: "protected identity",
    },
    FixedPerson {
        personnummer: OKAND,
        label: "not known to AF",
    },
    FixedPerson {
        personnummer: AF_FEL,
        label: "AF answers 500",
    },
];

fn s(v: &str) -> String {
    v.to_owned()
}

fn registrerad() -> StatusResponse {
    StatusResponse {
        kand_av_af: true,
        inskriven: true,
        inskrivningsdatum: Some(s("2025-09-01")),
        kontor: Some(KontorJson {
            kod: s("10021"),
            namn: s("Arbetsförmedlingen Stockholm"),
        }),
        sokandekategori: Some(SokandekategoriJson {
            kod: s("11"),
            benamning: s("Arbetslös"),
            from_datum: Some(s("2025-09-01")),
        }),
        omfattning_procent: Some(100),
        avaktualisering: None,
        senaste_aktivitetsrapport: Some(AktivitetsrapportJson {
            datum: s("2026-11-14"),
            meddelande: s("Aktivitetsrapport inlämnad i tid"),
        }),
        a_kassa: Some(AKassaJson {
            medlem: true,
            namn: Some(s("Unionens arbetslöshetskassa")),
        }),
        skyddsmarkeringar: vec![],
    }
}

fn okand() -> StatusResponse {
    StatusResponse {
        kand_av_af: false,
        inskriven: false,
        inskrivningsdatum: None,
        kontor: None,
        sokandekategori: None,
        omfattning_procent: None,
        avaktualisering: None,
        senaste_aktivitetsrapport: None,
        a_kassa: None,
        skyddsmarkeringar: vec![],
    }
}

const KATEGORIER: [(&str, &str); 6] = [
    ("11", "Arbetslös"),
    ("21", "Deltidsarbetslös"),
    ("22", "Timanställd"),
    ("68", "I program med aktivitetsstöd"),
    ("69", "Jobbgarantin för ungdomar"),
    ("70", "Etableringsprogrammet"),
];
const KONTOR: [(&str, &str); 4] = [
    ("10021", "Arbetsförmedlingen Stockholm"),
    ("14801", "Arbetsförmedlingen Göteborg"),
    ("12801", "Arbetsförmedlingen Malmö"),
    ("22811", "Arbetsförmedlingen Sundsvall"),
];
const ORSAKER: [(&str, &str); 3] = [
    ("AV02", "Fått arbete"),
    ("AV05", "Påbörjat reguljära studier"),
    ("AV09", "Kontakten upphört"),
];

fn day(offset: u32) -> String {
    let base = time::macros::date!(2020 - 01 - 01);
    crate::model::ident::format_date(base + time::Duration::days(i64::from(offset)))
}

/// AF's answer for a person: fixed persons as documented, everyone else derived from a hash
/// of the number. `None` means AF fails for this person.
pub fn status_for(p: &Personnummer) -> Option<StatusResponse> {
    match p.expose().as_str() {
        REGISTRERAD => return Some(registrerad()),
        AVAKTUALISERAD => {
            return Some(StatusResponse {
                inskriven: false,
                inskrivningsdatum: Some(s("2023-02-01")),
                kontor: Some(KontorJson {
                    kod: s("14801"),
                    namn: s("Arbetsförmedlingen Göteborg"),
                }),
                sokandekategori: None,
                omfattning_procent: None,
                avaktualisering: Some(AvaktualiseringJson {
                    datum: s("2026-10-15"),
                    orsak_kod: s("AV02"),
                    orsak_text: s("Fått arbete"),
                }),
                senaste_aktivitetsrapport: Some(AktivitetsrapportJson {
                    datum: s("2026-09-14"),
                    meddelande: s("Aktivitetsrapport inlämnad i tid"),
                }),
                a_kassa: Some(AKassaJson {
                    medlem: false,
                    namn: None,
                }),
                ..registrerad()
            });
        }
        SKYDDAD => {
            return Some(StatusResponse {
                skyddsmarkeringar: vec![s("SKYDDAD_FBF")],
                ..registrerad()
            });
        }
        OKAND => return Some(okand()),
        AF_FEL => return None,
        _ => {}
    }
    let h = sha2::Sha256::digest(p.digits());
    if h[0] % 10 == 0 {
        return Some(okand());
    }
    let registered_on = u32::from(u16::from_be_bytes([h[2], h[3]]) % 2000);
    let (kkod, ktext) = KATEGORIER[usize::from(h[4]) % KATEGORIER.len()];
    let (okod, onamn) = KONTOR[usize::from(h[6]) % KONTOR.len()];
    let inskriven = h[1] % 5 != 0;
    let avaktualisering = (!inskriven).then(|| {
        let (c, t) = ORSAKER[usize::from(h[10]) % ORSAKER.len()];
        AvaktualiseringJson {
            datum: day(registered_on + 30 + u32::from(h[11])),
            orsak_kod: s(c),
            orsak_text: s(t),
        }
    });
    Some(StatusResponse {
        kand_av_af: true,
        inskriven,
        inskrivningsdatum: Some(day(registered_on)),
        kontor: Some(KontorJson {
            kod: s(okod),
            namn: s(onamn),
        }),
        sokandekategori: inskriven.then(|| SokandekategoriJson {
            kod: s(kkod),
            benamning: s(ktext),
            from_datum: Some(day(registered_on)),
        }),
        omfattning_procent: inskriven.then(|| [100, 100, 75, 50, 25][usize::from(h[5]) % 5]),
        avaktualisering,
        senaste_aktivitetsrapport: Some(AktivitetsrapportJson {
            datum: day(2_500 + u32::from(h[7]) % 28),
            meddelande: s("Aktivitetsrapport inlämnad i tid"),
        }),
        a_kassa: Some(AKassaJson {
            medlem: h[8] % 3 != 0,
            namn: (h[8] % 3 != 0).then(|| s("Akademikernas a-kassa")),
        }),
        skyddsmarkeringar: if h[9] % 50 == 0 {
            vec![s("SEKRETESS_FBF")]
        } else {
            vec![]
        },
    })
}

fn hash(p: &Personnummer) -> [u8; 32] {
    sha2::Sha256::digest(p.digits()).into()
}

fn day_date(offset: u32) -> time::Date {
    time::macros::date!(2020 - 01 - 01) + time::Duration::days(i64::from(offset))
}

/// AF's benefit decisions for a person: none for people AF does not know or who are not
/// registered, otherwise derived from the number.
pub fn ersattningar_for(p: &Personnummer) -> ErsattningsbeslutResponse {
    // The registered example person answers exactly the published example.
    if p.expose() == REGISTRERAD
        && let Ok(example) = serde_json::from_str(include_str!(
            "../../schemas/af/v1/examples/ersattningsbeslut.response.json"
        ))
    {
        return example;
    }
    use crate::model::*;
    let status = status_for(p).unwrap_or_else(okand);
    if !status.inskriven {
        return crate::contract::translate::ersattningar_to_af(&Ersattningar {
            beslut: vec![],
            aktivitetsstod_dagar: None,
            senaste_utbetalning: None,
        });
    }
    let h = hash(p);
    let start = u32::from(u16::from_be_bytes([h[12], h[13]]) % 1800);
    let typ = Ersattningstyp::ALL[usize::from(h[14]) % Ersattningstyp::ALL.len()];
    let mut beslut = vec![Ersattningsbeslut {
        typ,
        omfattning_procent: [100, 75, 50][usize::from(h[15]) % 3],
        from: day_date(start),
        tom: h[16].is_multiple_of(2).then(|| day_date(start + 180)),
    }];
    if h[17].is_multiple_of(3) {
        beslut.push(Ersattningsbeslut {
            typ: Ersattningstyp::Aktivitetsstod,
            omfattning_procent: 100,
            from: day_date(start + 181),
            tom: None,
        });
    }
    let paid = beslut
        .iter()
        .any(|b| b.typ == Ersattningstyp::Aktivitetsstod);
    crate::contract::translate::ersattningar_to_af(&Ersattningar {
        beslut,
        aktivitetsstod_dagar: paid.then_some(u16::from(h[18]) + 20),
        senaste_utbetalning: paid.then(|| Utbetalning {
            datum: day_date(2_490 + u32::from(h[19] % 20)),
            belopp: Ore(500_000 + u64::from(u16::from_be_bytes([h[20], h[21]])) * 10),
        }),
    })
}

/// AF's handlingsplan for a person: none for people AF does not know, otherwise derived from
/// the number.
pub fn handlingsplan_for(p: &Personnummer) -> HandlingsplanResponse {
    // The registered example person answers exactly the published example.
    if p.expose() == REGISTRERAD
        && let Ok(example) = serde_json::from_str(include_str!(
            "../../schemas/af/v1/examples/handlingsplan.response.json"
        ))
    {
        return example;
    }
    use crate::model::*;
    let status = status_for(p).unwrap_or_else(okand);
    if !status.kand_av_af {
        return crate::contract::translate::handlingsplan_to_af(None);
    }
    let h = hash(p);
    let start = u32::from(u16::from_be_bytes([h[22], h[23]]) % 1800);
    let program = [
        ("P101", "Rusta och matcha"),
        ("P204", "Arbetsmarknadsutbildning"),
        ("P310", "Studiemotiverande folkhögskolekurs"),
    ];
    let aktivitet = [("A01", "Jobbsökaraktivitet"), ("A07", "Kartläggning")];
    let (pk, pn) = program[usize::from(h[24]) % program.len()];
    let (ak, an) = aktivitet[usize::from(h[25]) % aktivitet.len()];
    let kontor = status.kontor.map(|k| Kontor {
        kod: k.kod,
        namn: k.namn,
    });
    let plan = Handlingsplan {
        upprattad: day_date(start),
        status: if status.inskriven {
            HandlingsplanStatus::Aktiv
        } else {
            HandlingsplanStatus::Avslutad
        },
        nasta_uppfoljning: status
            .inskriven
            .then(|| day_date(2_520 + u32::from(h[26] % 60))),
        hinder_for_lampligt_arbete: h[27].is_multiple_of(4),
        aktiviteter: vec![
            AfAktivitet {
                slag: AktivitetSlag::Program,
                typ_kod: pk.into(),
                namn: pn.into(),
                from: day_date(start + 14),
                tom: Some(day_date(start + 14 + 90)),
                omfattning_procent: Some(100),
                anordnare: Some("Utbildningsbolaget Exempel AB".into()),
            },
            AfAktivitet {
                slag: AktivitetSlag::Aktivitet,
                typ_kod: ak.into(),
                namn: an.into(),
                from: day_date(start),
                tom: None,
                omfattning_procent: None,
                anordnare: None,
            },
        ],
        kontor,
        ansvarig_handlaggare: Some(AnsvarigHandlaggare {
            namn: ["Anna Exempelsson", "Björn Testberg", "Cecilia Prov"][usize::from(h[28]) % 3]
                .into(),
            kontaktvag: Some("Via Arbetsförmedlingens kundtjänst".into()),
        }),
    };
    let mut answer = crate::contract::translate::handlingsplan_to_af(Some(&plan));
    // AF carries the person's protection flags here too.
    answer.skyddsmarkeringar = status_for(p)
        .map(|st| st.skyddsmarkeringar)
        .unwrap_or_default();
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_persons_are_valid_numbers() {
        for p in FIXED_PERSONS {
            assert!(Personnummer::parse(p.personnummer).is_ok(), "{}", p.label);
        }
    }

    #[test]
    fn derived_answers_are_deterministic_and_valid() {
        let p = Personnummer::parse("200012193421").unwrap();
        let a = status_for(&p).unwrap();
        assert_eq!(Some(a.clone()), status_for(&p));
        assert!(crate::contract::translate::status_from_af(&a).is_ok());
    }

    fn sim() -> Sim {
        Sim {
            settings: SimSettings::load(&crate::devkit::demo::DemoFiles::default().sim_config)
                .unwrap(),
            tokens: Mutex::new(HashMap::new()),
            plans: Mutex::new(std::collections::HashSet::new()),
            stats: Arc::new(SimStats::default()),
        }
    }

    fn asked(kategorier: Option<&[&str]>) -> serde_json::Value {
        let mut body = serde_json::json!({
            "personnummer": REGISTRERAD,
            "fromDatum": "2026-06-01",
            "tomDatum": "2026-11-30",
            "fragande": {
                "organisationsnummer": "212000-0142",
                "organisationsnamn": "Stockholms stad",
                "handlaggare": "SE2120000142-HL01",
                "syfte": "AKT-UPPFOLJNING",
                "syfteBeskrivning": "Uppföljning av aktivitetskravet",
                "lagrum": "Socialtjänstlagen",
                "arendereferens": "a1:SM5Gwe7hTmTc4YSM_5yTZw"
            }
        });
        if let Some(k) = kategorier {
            body["kategorier"] = serde_json::json!(k);
        }
        body
    }

    async fn call(sim: &Sim, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        use http_body_util::BodyExt;
        let r = answer(sim, path, body.to_string().as_bytes());
        let status = r.status().as_u16();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn af_is_told_who_asks_and_answers_only_the_categories_asked_for() {
        let sim = sim();
        let (status, full) = call(&sim, upstream::STATUS_PATH, &asked(None)).await;
        assert_eq!(status, 200, "{full}");
        assert!(
            full.get("kontor").is_some() && full.get("aKassa").is_some(),
            "{full}"
        );
        let (_, narrow) = call(
            &sim,
            upstream::STATUS_PATH,
            &asked(Some(&["REGISTRERING", "AKTIVITETSRAPPORT"])),
        )
        .await;
        assert_eq!(narrow["inskriven"], true);
        for absent in ["kontor", "aKassa", "sokandekategori", "omfattningProcent"] {
            assert!(narrow.get(absent).is_none(), "{absent} in {narrow}");
        }
        assert!(narrow.get("senasteAktivitetsrapport").is_some(), "{narrow}");
        let (_, plan) = call(
            &sim,
            upstream::HANDLINGSPLAN_PATH,
            &asked(Some(&["REGISTRERING"])),
        )
        .await;
        assert!(plan["handlingsplan"].is_null(), "{plan}");
        let (_, ers) = call(
            &sim,
            upstream::ERSATTNINGSBESLUT_PATH,
            &asked(Some(&["KONTOR"])),
        )
        .await;
        assert_eq!(ers["beslut"], serde_json::json!([]), "{ers}");
        let told = sim.stats.last_asked.lock().unwrap().clone().unwrap();
        assert_eq!(told.0.syfte, "AKT-UPPFOLJNING");

        // Refused, naming what is wrong, without echoing the number.
        let mut missing = asked(None);
        missing.as_object_mut().unwrap().remove("fragande");
        let mut clear_case = asked(None);
        clear_case["fragande"]["arendereferens"] = "EB-2026-004711".into();
        let mut unknown = asked(None);
        unknown["kategorier"] = serde_json::json!(["ALLT"]);
        for (body, named) in [
            (missing, "fragande"),
            (clear_case, "fragande.arendereferens"),
            (unknown, "kategorier"),
        ] {
            let (status, problem) = call(&sim, upstream::STATUS_PATH, &body).await;
            assert_eq!(status, 400, "{problem}");
            let detail = problem["detail"].as_str().unwrap();
            assert!(detail.contains(named), "{named}: {detail}");
            assert!(!detail.contains(REGISTRERAD), "{detail}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
