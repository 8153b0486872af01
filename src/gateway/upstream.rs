//! The call to AF: mutual TLS, an OAuth2 client-credentials token cached until shortly before
//! it expires, AF's headers, JSON bodies, and one deadline over the whole call.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::AfSettings;
use crate::contract::af_json::{self, TokenResponse};
use crate::error::{Failure, Felkod};
use crate::model::TjanstStatus;

/// What went wrong towards AF. Details are for the log; the caller only learns the class.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("AF cannot be reached: {0}")]
    Unreachable(String),
    #[error("AF did not answer within {0:?}")]
    Timeout(Duration),
    #[error("AF answered HTTP {0}")]
    Status(u16),
    #[error("AF is rate limiting the gateway (HTTP 429)")]
    Busy(Option<u64>),
    #[error("AF refused the gateway's credentials (HTTP {0})")]
    Credentials(u16),
    #[error("AF's answer breaks the contract: {0}")]
    Contract(String),
    #[error("AF has failed repeatedly; nothing is sent to it for another {0:?}")]
    BreakerOpen(Duration),
    /// brygga's own cap (`af.max_connections`): no connection was free within the deadline.
    /// Says nothing of AF, so it does not count for the breaker.
    #[error("every connection to AF was busy for {0:?}")]
    Saturated(Duration),
}

impl UpstreamError {
    fn from_reqwest(e: reqwest::Error, deadline: Duration) -> Self {
        // A connect timeout is "unreachable", not "AF was slow to answer".
        if e.is_connect() {
            UpstreamError::Unreachable(crate::error::error_chain(&e))
        } else if e.is_timeout() {
            UpstreamError::Timeout(deadline)
        } else {
            // The chain names the cause (refused, reset, TLS) and never body content.
            UpstreamError::Unreachable(crate::error::error_chain(&e))
        }
    }
}

struct CachedToken {
    value: String,
    refresh_at: Instant,
}

/// The connections towards AF: hyper's pool for the calls, reqwest for the token and health,
/// both with the TLS of the moment. Replaced whole on reload and at `limits.max_connection_age`:
/// calls under way finish on the old one, whose connections close when the last is done.
struct Transport {
    pool: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    http: reqwest::Client,
    built: std::time::Instant,
}

/// A client for AF's API.
pub struct AfClient {
    transport: std::sync::RwLock<std::sync::Arc<Transport>>,
    /// The TLS the transport is built with, to build it again when it grows old.
    tls: std::sync::RwLock<rustls::ClientConfig>,
    settings: AfSettings,
    system_id: String,
    environment: String,
    token: Mutex<Option<CachedToken>>,
    /// Opens after AF fails repeatedly, so calls fail at once instead of piling up.
    pub breaker: crate::gateway::breaker::Breaker,
    /// Retries of reads, at most this often.
    retries: Option<governor::DefaultDirectRateLimiter>,
    /// Retries made, for tests and metrics.
    pub retry_count: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// One permit per call under way: hyper-util's pool has no total cap, so this bounds
    /// the connections to AF (`af.max_connections`).
    calls: tokio::sync::Semaphore,
    /// Health checks (`Ping`, `/readyz`) under way: at most `HEALTH_CONNECTIONS` more.
    health_calls: tokio::sync::Semaphore,
}

/// Connections to AF for health checks, beside `af.max_connections`.
pub const HEALTH_CONNECTIONS: usize = 2;

/// The calls that only read: tried once more when AF could not be reached. A plan reported
/// (`AKTIVITETSPLAN_PATH`) is not, so it is never reported twice by brygga.
const READS: [&str; 3] = [STATUS_PATH, ERSATTNINGSBESLUT_PATH, HANDLINGSPLAN_PATH];

/// Refresh this long before the token expires, so one in flight never expires at AF.
const TOKEN_MARGIN: Duration = Duration::from_secs(30);
/// The most of an AF answer brygga reads.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

impl Transport {
    fn build(tls: &rustls::ClientConfig, settings: &AfSettings) -> Result<Self, String> {
        let mut tls = tls.clone();
        // reqwest follows ALPN: offering only HTTP/1.1 is what makes `http1_only` hold.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        // The hot path: hyper's pooled client (reqwest costs more per call); reqwest serves
        // the rare token and health calls.
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        // hyper-rustls sets ALPN itself (HTTP/1.1 here) and refuses a config that has one.
        let mut hot_tls = tls.clone();
        hot_tls.alpn_protocols.clear();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(hot_tls)
            .https_only()
            .enable_http1()
            .wrap_connector(connector);
        let pool = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(crate::config::OUTBOUND_IDLE_TIMEOUT)
            .pool_max_idle_per_host(settings.max_connections as usize + HEALTH_CONNECTIONS)
            .build(https);
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            // AF is reached directly; a proxy from the environment is never used by accident.
            .no_proxy()
            .connect_timeout(settings.connect_timeout)
            .pool_idle_timeout(crate::config::OUTBOUND_IDLE_TIMEOUT)
            // A pool of HTTP/1.1 connections spreads concurrent calls over connections and
            // cores; one multiplexed HTTP/2 connection funnels them through one task.
            .http1_only()
            .pool_max_idle_per_host(256)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            pool,
            http,
            built: std::time::Instant::now(),
        })
    }
}

impl AfClient {
    /// A client presenting the certificate and verifying AF as `tls` says (see
    /// [`crate::gateway::tls`]).
    pub fn new(
        settings: AfSettings,
        tls: rustls::ClientConfig,
        system_id: &str,
        environment: &str,
    ) -> Result<Self, String> {
        let transport = Transport::build(&tls, &settings)?;
        let breaker = crate::gateway::breaker::Breaker::new(
            settings.breaker_failures,
            settings.breaker_open,
            settings.timeout + Duration::from_secs(1),
        );
        let retries = settings
            .retry_budget
            .map(|b| governor::RateLimiter::direct(b.quota));
        Ok(Self {
            calls: tokio::sync::Semaphore::new(settings.max_connections as usize),
            health_calls: tokio::sync::Semaphore::new(HEALTH_CONNECTIONS),
            breaker,
            retries,
            retry_count: std::sync::Arc::default(),
            transport: std::sync::RwLock::new(std::sync::Arc::new(transport)),
            tls: std::sync::RwLock::new(tls),
            settings,
            system_id: system_id.to_owned(),
            environment: environment.to_owned(),
            token: Mutex::new(None),
        })
    }

    /// Calls from now on use `tls` (a new client certificate, AF's CA or CRLs); calls under
    /// way finish with what they started with.
    pub fn set_tls(&self, tls: rustls::ClientConfig) -> Result<(), String> {
        let transport = Transport::build(&tls, &self.settings)?;
        *self.transport.write().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::new(transport);
        *self.tls.write().unwrap_or_else(|p| p.into_inner()) = tls;
        Ok(())
    }

    /// The connections of the moment; older than `max_age`, they are replaced first, so no
    /// connection to AF outlives a revocation by more than that.
    fn transport(&self, max_age: Duration) -> std::sync::Arc<Transport> {
        let current = self
            .transport
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if current.built.elapsed() < max_age {
            return current;
        }
        let tls = self.tls.read().unwrap_or_else(|p| p.into_inner()).clone();
        match Transport::build(&tls, &self.settings) {
            Ok(fresh) => {
                let fresh = std::sync::Arc::new(fresh);
                *self.transport.write().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
                fresh
            }
            Err(e) => {
                tracing::warn!(error = %e, "the connections towards AF could not be renewed; the old ones stay");
                current
            }
        }
    }

    async fn token(&self) -> Result<String, UpstreamError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(t.value.clone());
        }
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.settings.client_id.as_str()),
        ];
        if let Some(secret) = &self.settings.client_secret {
            form.push(("client_secret", secret.0.as_str()));
        }
        let started = Instant::now();
        let resp = self
            .transport(self.settings.max_connection_age)
            .http
            .post(&self.settings.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| UpstreamError::from_reqwest(e, self.settings.timeout))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST {
            return Err(UpstreamError::Credentials(status.as_u16()));
        }
        if !status.is_success() {
            return Err(UpstreamError::Status(status.as_u16()));
        }
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        let mut resp = resp;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| UpstreamError::Unreachable(crate::error::error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(UpstreamError::Contract(
                    "token answer larger than 1 MiB".into(),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let t: TokenResponse = decode_json(content_type.as_deref(), &body)?;
        t.check().map_err(UpstreamError::Contract)?;
        let lifetime = Duration::from_secs(t.expires_in.unsigned_abs());
        let margin = TOKEN_MARGIN.min(lifetime / 10);
        *cached = Some(CachedToken {
            value: t.access_token.clone(),
            refresh_at: started + lifetime - margin,
        });
        Ok(t.access_token)
    }

    /// Calls to AF under way now.
    pub fn calls_in_flight(&self) -> usize {
        (self.settings.max_connections as usize).saturating_sub(self.calls.available_permits())
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// POSTs `body` to `path` with AF's headers and reads the JSON answer, all within the
    /// configured deadline. A 401 from AF drops the cached token and tries once more.
    pub async fn post_json<Req: Serialize, Resp: DeserializeOwned + Serialize>(
        &self,
        path: &str,
        body: &Req,
        tracking_id: Uuid,
        end_user: &str,
        traceparent: &crate::ops::tracectx::Outgoing,
    ) -> Result<Resp, UpstreamError> {
        self.breaker
            .admit()
            .map_err(|crate::gateway::breaker::Open(d)| UpstreamError::BreakerOpen(d))?;
        let until = Instant::now() + self.settings.timeout;
        let mut result = self
            .call_json(
                path,
                body,
                tracking_id,
                end_user,
                traceparent,
                self.settings.timeout,
            )
            .await;
        // One more try for a read AF did not get to answer, within the deadline and the budget.
        let transient = matches!(
            result,
            Err(UpstreamError::Unreachable(_) | UpstreamError::Status(502..=504))
        );
        let left = until.saturating_duration_since(Instant::now());
        if transient
            && READS.contains(&path)
            && left > Duration::from_millis(50)
            && self.retries.as_ref().is_some_and(|b| b.check().is_ok())
        {
            tracing::debug!(path, "retrying a read once");
            self.retry_count
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            result = self
                .call_json(path, body, tracking_id, end_user, traceparent, left)
                .await;
        }
        match &result {
            // brygga's own queue: neither AF up nor down.
            Err(UpstreamError::Saturated(_)) => {}
            Err(UpstreamError::Unreachable(_) | UpstreamError::Timeout(_)) => {
                self.breaker.failure()
            }
            Err(UpstreamError::Status(s)) if *s >= 500 => self.breaker.failure(),
            // Any other answer shows AF up, refusals and broken answers included.
            _ => self.breaker.success(),
        }
        result
    }

    async fn call_json<Req: Serialize, Resp: DeserializeOwned + Serialize>(
        &self,
        path: &str,
        body: &Req,
        tracking_id: Uuid,
        end_user: &str,
        traceparent: &crate::ops::tracectx::Outgoing,
        deadline: Duration,
    ) -> Result<Resp, UpstreamError> {
        let body = Bytes::from(
            serde_json::to_vec(body)
                .map_err(|e| UpstreamError::Contract(format!("request: {e:?}")))?,
        );
        let uri: http::Uri = format!("{}{}", self.settings.base_url, path)
            .parse()
            .map_err(|_| UpstreamError::Unreachable("the AF URL is not a valid URI".into()))?;
        // Waiting for a free connection counts against the deadline, as brygga's own wait.
        let waited = Instant::now();
        let _permit = match tokio::time::timeout(deadline, self.calls.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => {
                return Err(UpstreamError::Unreachable(
                    "the AF client is shutting down".into(),
                ));
            }
            Err(_) => return Err(UpstreamError::Saturated(deadline)),
        };
        let full = deadline;
        let deadline = deadline.saturating_sub(waited.elapsed());
        // Too little time left to ask AF: brygga's own wait used it up (and a call doomed to
        // time out would count against AF).
        if deadline < full / 10 {
            return Err(UpstreamError::Saturated(full));
        }
        let call = async {
            for attempt in 0..2 {
                let token = self.token().await?;
                let req = http::Request::post(uri.clone())
                    .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .header("AF-TrackingId", tracking_id.to_string())
                    .header("AF-SystemId", &self.system_id)
                    .header("AF-EndUserId", end_user)
                    .header("AF-Environment", &self.environment)
                    .header("traceparent", &traceparent.traceparent);
                let req = match &traceparent.tracestate {
                    Some(state) => req.header("tracestate", state),
                    None => req,
                };
                let req = req
                    .body(Full::new(body.clone()))
                    .map_err(|e| UpstreamError::Unreachable(format!("request: {e}")))?;
                let resp = self
                    .transport(self.settings.max_connection_age)
                    .pool
                    .request(req)
                    .await
                    .map_err(|e| UpstreamError::Unreachable(crate::error::error_chain(&e)))?;
                let status = resp.status();
                if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                    self.forget_token().await;
                    continue;
                }
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    return Err(UpstreamError::Credentials(status.as_u16()));
                }
                if status == StatusCode::TOO_MANY_REQUESTS {
                    let after = resp
                        .headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| s.min(3600));
                    return Err(UpstreamError::Busy(after));
                }
                if !status.is_success() {
                    return Err(UpstreamError::Status(status.as_u16()));
                }
                return read_json(resp).await;
            }
            Err(UpstreamError::Credentials(401))
        };
        tokio::time::timeout(deadline, call)
            .await
            .map_err(|_| UpstreamError::Timeout(deadline))?
    }

    /// AF's health, as `Ping` and readiness report it: up, failing, or not reachable, and how
    /// long the check took.
    pub async fn health(&self) -> (TjanstStatus, u32) {
        // An open breaker is the answer: AF failed repeatedly just now.
        if self.breaker.is_open() {
            return (TjanstStatus::EjNabar, 0);
        }
        let started = Instant::now();
        let result = tokio::time::timeout(self.settings.timeout, async {
            // Health checks have their own few connections: a saturated cap must not make
            // AF look unreachable, nor a burst of Ping take the calls' connections.
            let _permit =
                self.health_calls.acquire().await.map_err(|_| {
                    UpstreamError::Unreachable("the AF client is shutting down".into())
                })?;
            let uri: http::Uri = format!("{}{HEALTH_PATH}", self.settings.base_url)
                .parse()
                .map_err(|_| UpstreamError::Unreachable("the AF URL is not a valid URI".into()))?;
            let req = http::Request::get(uri)
                .body(Full::new(Bytes::new()))
                .map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
            let resp = self
                .transport(self.settings.max_connection_age)
                .pool
                .request(req)
                .await
                .map_err(|e| UpstreamError::Unreachable(crate::error::error_chain(&e)))?;
            let ok = resp.status().is_success();
            // Read like every AF answer: bounded, and JSON.
            let up = read_json::<af_json::HealthResponse>(resp)
                .await
                .is_ok_and(|h| h.status == "UP");
            Ok::<_, UpstreamError>(ok && up)
        })
        .await;
        let ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        let status = match result {
            Ok(Ok(true)) => TjanstStatus::Ok,
            Ok(Ok(false)) => TjanstStatus::Fel,
            Ok(Err(_)) | Err(_) => TjanstStatus::EjNabar,
        };
        (status, ms)
    }
}

async fn read_json<T: DeserializeOwned + Serialize>(
    resp: http::Response<Incoming>,
) -> Result<T, UpstreamError> {
    let content_type = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                UpstreamError::Contract("answer larger than 1 MiB".into())
            } else {
                UpstreamError::Unreachable(format!("reading the answer: {e}"))
            }
        })?
        .to_bytes();
    decode_json(content_type.as_deref(), &body)
}

/// An AF answer's JSON, checked to be declared as JSON.
fn decode_json<T: DeserializeOwned + Serialize>(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<T, UpstreamError> {
    if !content_type.is_some_and(|v| v.starts_with("application/json")) {
        return Err(UpstreamError::Contract(
            "answer is not application/json".into(),
        ));
    }
    // JSON is UTF-8, also in the members serde skips without reading them.
    let text = std::str::from_utf8(body).map_err(|e| {
        UpstreamError::Contract(format!("JSON is not UTF-8 at byte {}", e.valid_up_to()))
    })?;
    // serde's messages quote the offending value, which may be personal data: keep only where.
    let value: T = serde_json::from_str(text).map_err(|e| {
        UpstreamError::Contract(format!(
            "JSON {:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    crate::contract::af_json::objects_as_sent(text, &value).map_err(|(path, why)| {
        UpstreamError::Contract(format!(
            "{}: {why}",
            if path.is_empty() { "(document)" } else { &path }
        ))
    })?;
    Ok(value)
}

/// AF's paths, one per operation.
pub const STATUS_PATH: &str = "/arbetssokande/v1/status";
pub const ERSATTNINGSBESLUT_PATH: &str = "/arbetssokande/v1/ersattningsbeslut";
pub const HANDLINGSPLAN_PATH: &str = "/arbetssokande/v1/handlingsplan";
pub const AKTIVITETSPLAN_PATH: &str = "/aktivitetskrav/v1/planer";
pub const HEALTH_PATH: &str = "/health";

/// What the caller is told: the Felkod and the message of a SOAP Fault.
impl From<UpstreamError> for Failure {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::BreakerOpen(d) => Failure {
                retry_after: Some(d.as_secs() + u64::from(d.subsec_nanos() > 0)),
                ..Failure::new(
                    Felkod::AfEjNabar,
                    "Arbetsförmedlingen har inte svarat på de senaste anropen; brygga väntar en stund innan nästa försök",
                )
            },
            UpstreamError::Unreachable(_) => Failure::new(
                Felkod::AfEjNabar,
                "Arbetsförmedlingen kan inte nås just nu; försök igen om en stund",
            ),
            UpstreamError::Timeout(d) => Failure::new(
                Felkod::AfTidsgrans,
                format!(
                    "Arbetsförmedlingen svarade inte inom {} ms; försök igen",
                    d.as_millis()
                ),
            ),
            UpstreamError::Saturated(d) => Failure::new(
                Felkod::Tidsgrans,
                format!(
                    "alla förbindelser till Arbetsförmedlingen var upptagna i {} ms; försök igen",
                    d.as_millis()
                ),
            ),
            UpstreamError::Busy(after) => Failure {
                retry_after: Some(after.unwrap_or(1)),
                ..Failure::new(
                    Felkod::AfOverbelastad,
                    "Arbetsförmedlingen tar inte emot fler frågor just nu; försök igen efter Retry-After",
                )
            },
            UpstreamError::Status(s) if (400..500).contains(&s) => Failure::new(
                Felkod::AfAvvisadeFragan,
                format!(
                    "Arbetsförmedlingen avvisade frågan (HTTP {s}); kontakta driften om felet består"
                ),
            ),
            UpstreamError::Status(s) => Failure::new(
                Felkod::AfFel,
                format!("Arbetsförmedlingen svarade med ett fel (HTTP {s}); försök igen senare"),
            ),
            UpstreamError::Credentials(_) => Failure::new(
                Felkod::AfAvvisade,
                "Arbetsförmedlingen godtog inte brygga's behörighet; kontakta driften",
            ),
            UpstreamError::Contract(_) => Failure::new(
                Felkod::AfOgiltigtSvar,
                "Arbetsförmedlingens svar följde inte kontraktet; kontakta driften",
            ),
        }
    }
}
