//! The case-system simulator (`brygga sim kommun`): a real mutual-TLS endpoint that receives
//! AF's events as the gateway delivers them (`POST /handelser`, SOAP `ArbetssokandeHandelse`),
//! checks each against the contract, records it and answers the receipt. It can be told to
//! fail or be slow (`POST /styr`), and lists what it received at `GET /mottaget`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::Request;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::contract::soap;
use crate::contract::xml::XmlLimits;
use crate::gateway::server::{self, ConnLimits, HttpResponse, Peer, respond};
use crate::model::ArbetssokandeHandelseKvittens;
use crate::model::lexical::format_tidpunkt;

/// Where deliveries are posted.
pub const RECEIVE_PATH: &str = "/handelser";

/// The simulator's configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KommunSimSettings {
    pub bind: SocketAddr,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// The CA the gateway's delivery certificate must chain to.
    pub client_ca: std::path::PathBuf,
}

impl KommunSimSettings {
    /// Reads the file; relative paths are taken from its directory.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut s: Self = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for p in [&mut s.cert, &mut s.key, &mut s.client_ca] {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        Ok(s)
    }
}

/// How the simulator answers deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "lage", rename_all = "lowercase")]
pub enum Lage {
    /// Receipt every valid event.
    Ok,
    /// Answer 503 to every delivery.
    Fel,
    /// Wait this long before answering.
    Langsam { ms: u64 },
}

/// One event the simulator received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mottaget {
    pub handelse_id: uuid::Uuid,
    pub typ: String,
    pub tidpunkt: String,
    pub arendeidentitet: String,
    /// Deliveries of this id after the first (dropped by id, as a case system should).
    pub dubbletter: u32,
}

/// What the simulator has seen and how it answers; shared with tests.
#[derive(Debug)]
pub struct SimState {
    pub received: Mutex<Vec<Mottaget>>,
    pub lage: Mutex<Lage>,
    /// Every delivery posted to it, answered or not.
    pub posted: std::sync::atomic::AtomicUsize,
}

impl SimState {
    pub fn received(&self) -> Vec<Mottaget> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
    /// Deliveries posted to it so far, however it answered.
    pub fn attempts(&self) -> usize {
        self.posted.load(std::sync::atomic::Ordering::SeqCst)
    }
    pub fn set(&self, lage: Lage) {
        if let Ok(mut l) = self.lage.lock() {
            *l = lage;
        }
    }
}

/// A started simulator.
pub struct RunningKommunSim {
    pub addr: SocketAddr,
    pub state: Arc<SimState>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningKommunSim {
    /// Where the gateway delivers to.
    pub fn url(&self) -> String {
        format!("https://localhost:{}{RECEIVE_PATH}", self.addr.port())
    }
    /// Stops it (it "goes away"); connections are closed.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Binds and starts the simulator; `state` carries over what an earlier run received (a
/// case system that went away and came back remembers).
pub async fn start(
    settings: &KommunSimSettings,
    state: Option<Arc<SimState>>,
) -> Result<RunningKommunSim, String> {
    let chain = crate::access::tls::load_certs(&settings.cert).map_err(|e| e.to_string())?;
    let key = crate::access::tls::load_key(&settings.key).map_err(|e| e.to_string())?;
    let ca = crate::access::tls::load_certs(&settings.client_ca).map_err(|e| e.to_string())?;
    let tls = server::ListenerTls::fixed(chain, key, &ca, &[]).map_err(|e| e.to_string())?;
    let listener = server::bind(settings.bind, "kommun-sim").await?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let state = state.unwrap_or_else(|| {
        Arc::new(SimState {
            received: Mutex::new(Vec::new()),
            lage: Mutex::new(Lage::Ok),
            posted: Default::default(),
        })
    });
    let (shutdown, rx) = watch::channel(false);
    let s = state.clone();
    let task = tokio::spawn(server::serve_tls(
        listener,
        tls,
        ConnLimits {
            drain_timeout: Duration::from_millis(200),
            ..ConnLimits::default()
        },
        rx,
        move |peer, req| handle(s.clone(), peer, req),
    ));
    Ok(RunningKommunSim {
        addr,
        state,
        shutdown,
        task,
    })
}

async fn handle(state: Arc<SimState>, _peer: Arc<Peer>, req: Request<Incoming>) -> HttpResponse {
    let text = |s: StatusCode, t: &str| respond(s, "text/plain; charset=utf-8", t.to_owned());
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/mottaget") => respond(
            StatusCode::OK,
            "application/json",
            serde_json::to_string(&state.received()).unwrap_or_default(),
        ),
        (Method::POST, "/styr") => {
            let body = read(req).await;
            match serde_json::from_slice::<Lage>(&body) {
                Ok(l) => {
                    state.set(l);
                    text(StatusCode::OK, "ok")
                }
                Err(e) => text(StatusCode::BAD_REQUEST, &format!("body: {e}")),
            }
        }
        (Method::POST, RECEIVE_PATH) => {
            state
                .posted
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let lage = state.lage.lock().map(|l| *l).unwrap_or(Lage::Ok);
            let body = read(req).await;
            match lage {
                Lage::Fel => return text(StatusCode::SERVICE_UNAVAILABLE, "told to fail"),
                Lage::Langsam { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
                Lage::Ok => {}
            }
            let h = match soap::decode_handelse(&body, &XmlLimits::default()) {
                Ok(h) => h,
                Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            if let Ok(mut r) = state.received.lock() {
                match r.iter_mut().find(|m| m.handelse_id == h.af.handelse_id) {
                    Some(seen) => seen.dubbletter += 1,
                    None => r.push(Mottaget {
                        handelse_id: h.af.handelse_id,
                        typ: h.af.handelse.typ().code().to_owned(),
                        tidpunkt: format_tidpunkt(h.af.tidpunkt),
                        arendeidentitet: h.arendeidentitet.clone(),
                        dubbletter: 0,
                    }),
                }
            }
            respond(
                StatusCode::OK,
                "text/xml; charset=utf-8",
                soap::encode_handelse_kvittens(&ArbetssokandeHandelseKvittens {
                    handelse_id: h.af.handelse_id,
                    mottagen: time::OffsetDateTime::now_utc(),
                }),
            )
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "POST /handelser, GET /mottaget, POST /styr",
        ),
    }
}

async fn read(req: Request<Incoming>) -> bytes::Bytes {
    let limited = http_body_util::Limited::new(req.into_body(), 1024 * 1024);
    match tokio::time::timeout(Duration::from_secs(10), limited.collect()).await {
        Ok(Ok(c)) => c.to_bytes(),
        _ => bytes::Bytes::new(),
    }
}
