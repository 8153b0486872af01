//! Listeners: accept, TLS handshake with a deadline, identify the peer once per connection,
//! serve HTTP/1.1 or HTTP/2 (chosen by ALPN) with hyper, drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::rt::{Read, Write};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulConnection, GracefulShutdown, Watcher};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rustls_pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::gateway::admission::{Admission, HandshakeLimits};
use crate::gateway::pending::{Budget, Pending, Written};
use crate::model::Organisationsnummer;

/// What is known of a connection's peer after the handshake.
#[derive(Debug)]
pub struct Peer {
    pub remote: SocketAddr,
    /// The verified client certificate (leaf), for certificate-bound tokens.
    pub certificate: Option<CertificateDer<'static>>,
    /// The organisation number in that certificate, or why there is none.
    pub orgnr: Result<Organisationsnummer, String>,
}

/// Connection-level limits of a listener.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub handshake_timeout: Duration,
    /// How long a request head may take, counted from the connection's start or, on a kept
    /// connection, from the end of the previous answer: an idle connection closes then.
    pub header_read_timeout: Duration,
    /// The idle time announced to HTTP/1.1 clients (`Keep-Alive: timeout=N`); shorter than
    /// `header_read_timeout`, so a client that honours it never sends into a closing connection.
    pub keep_alive_timeout: Duration,
    /// How long in-flight requests may take to finish after shutdown is signalled.
    pub drain_timeout: Duration,
    /// Connections open at once on the listener. On a TLS listener a connection takes its
    /// place once its client certificate is verified; past it, it is closed then.
    pub max_connections: usize,
    /// Connections open at once with one client certificate (TLS listeners).
    pub max_per_certificate: usize,
    /// A connection older than this is closed gracefully, so what changed since it was
    /// verified (a CRL, a certificate) reaches it too.
    pub max_connection_age: Duration,
    /// Bytes of answers built and not yet sent, per connection and per client certificate
    /// (see [`crate::gateway::pending`]); a connection that goes over is closed.
    pub max_pending_per_connection: usize,
    pub max_pending_per_certificate: usize,
    /// Connections still in their TLS handshake: how many, from one source, how often.
    pub handshakes: HandshakeLimits,
    /// What `/metrics` shows of the listener's connections.
    pub observe: Option<ListenerMetrics>,
    /// How this listener words a refusal made here, before its handler (a bad `Host`).
    pub refuse: Refuse,
}

/// A request the HTTP layer refuses before the listener's handler sees it.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: http::StatusCode,
    /// The header at fault.
    pub field: &'static str,
    pub message: String,
}

/// A listener's own format for a [`Refusal`] (a SOAP Fault, problem+json, plain text).
pub type Refuse = fn(Refusal) -> HttpResponse;

fn refuse_as_text(r: Refusal) -> HttpResponse {
    respond(
        r.status,
        "text/plain; charset=utf-8",
        format!("{}: {}\n", r.field, r.message),
    )
}

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host`, and no request more than
/// one, each a valid `host[:port]` (empty is allowed); RFC 9113 §8.3.1: over HTTP/2 a `Host`
/// must name the same authority as `:authority`.
pub fn host_refusal<B>(req: &Request<B>) -> Option<Refusal> {
    let refusal = |message: &str| {
        Some(Refusal {
            status: http::StatusCode::BAD_REQUEST,
            field: "Host",
            message: message.to_owned(),
        })
    };
    // user@host in the request target (HTTP/2's :authority, HTTP/1.1's absolute form) is
    // deprecated and only ever used to mislead (RFC 9110 4.2.4).
    if req
        .uri()
        .authority()
        .is_some_and(|a| a.as_str().contains('@'))
    {
        return refusal("the request target's authority carries userinfo (user@host)");
    }
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return refusal("the request carries more than one Host header field");
    }
    let Some(host) = host else {
        return if req.version() == http::Version::HTTP_11 {
            refusal("an HTTP/1.1 request must carry a Host header field")
        } else {
            None
        };
    };
    if host.is_empty() {
        return None;
    }
    let valid = host
        .to_str()
        .ok()
        .filter(|h| !h.contains('@'))
        .and_then(|h| h.parse::<http::uri::Authority>().ok());
    let Some(authority) = valid else {
        return refusal("the Host header field is not a valid host[:port]");
    };
    // One request, one authority: a target that names another host than the Host header
    // field is refused, in either version.
    if req
        .uri()
        .authority()
        .is_some_and(|a| !a.as_str().eq_ignore_ascii_case(authority.as_str()))
    {
        return refusal(if req.version() == http::Version::HTTP_2 {
            "the Host header field names another authority than :authority"
        } else {
            "the request target names another authority than the Host header field"
        });
    }
    None
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_per_certificate: 512,
            max_connection_age: Duration::from_secs(3600),
            max_pending_per_connection: 2 * 1024 * 1024,
            max_pending_per_certificate: 16 * 1024 * 1024,
            handshakes: HandshakeLimits {
                max: 1024,
                per_address: 128,
                rate_per_address: crate::access::limit::Rate {
                    per_second: 100,
                    burst: 500,
                }
                .quota()
                .ok(),
            },
            observe: None,
            refuse: refuse_as_text,
        }
    }
}

/// Bytes of one request head (HTTP/1.1) or header list (HTTP/2).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

pub type HttpResponse = Response<Full<Bytes>>;

async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// How a served connection may end besides its peer closing it.
pub struct Ends {
    /// The listener is stopping: finish what is under way, then close.
    pub shutdown: watch::Receiver<bool>,
    /// Held while the connection lives, so the listener's drain waits for it.
    pub watcher: Watcher,
    /// Close at once (its certificate no longer verifies).
    pub close: Arc<tokio::sync::Notify>,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Its peer closed it, or it timed out, or it was drained.
    Closed,
    /// It held more unsent answers than its budget or its certificate's.
    OverBudget,
    /// Told to close at once.
    Cut,
}

/// Serves one connection with HTTP/2 when ALPN chose it, HTTP/1.1 otherwise. The protocol is
/// known before the first byte is read, so no read runs without a deadline.
///
/// Every answer counts against `pending` until it is handed over; a connection that goes over
/// its budget (or its certificate's) is closed at once. One older than
/// `limits.max_connection_age` is closed gracefully (HTTP/1.1: after its answer under way;
/// HTTP/2: GOAWAY), so what changed since it was verified reaches it too.
async fn serve_http<I, H, Fut>(
    io: I,
    h2: bool,
    limits: ConnLimits,
    pending: Pending,
    ends: Ends,
    handler: H,
) -> Ended
where
    I: Read + Write + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HttpResponse> + Send + 'static,
{
    let got_request = Arc::new(AtomicBool::new(false));
    let seen = got_request.clone();
    let refuse = limits.refuse;
    // HTTP/2 has no Keep-Alive header (RFC 9113 §8.2.2); its GOAWAY says what was processed.
    let keep_alive = (!h2).then(|| keep_alive_header(&limits));
    let over = pending.over.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        seen.store(true, Ordering::Relaxed);
        // Checked here, for every listener alike, before any handler reads the request.
        let answer = match host_refusal(&req) {
            Some(refusal) => {
                tracing::debug!(reason = %refusal.message, "request refused by the HTTP layer");
                Err(refuse(refusal))
            }
            None => Ok(handler(req)),
        };
        let keep_alive = keep_alive.clone();
        let pending = pending.clone();
        async move {
            let mut response = match answer {
                Ok(handled) => handled.await,
                Err(refused) => refused,
            };
            if let Some(v) = keep_alive {
                response.headers_mut().insert(KEEP_ALIVE, v);
            }
            Ok::<_, Infallible>(response.map(|body| pending.charge(body)))
        }
    });
    if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_concurrent_streams(100)
            .max_header_list_size(MAX_HEAD_BYTES as u32)
            // A peer that stops answering pings is gone: free its connection.
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(10));
        // hyper has no deadline for the HTTP/2 preface: a peer must send its first request
        // within the header deadline, as an HTTP/1.1 peer must.
        let first_request = Some((limits.header_read_timeout, got_request));
        drive(
            b.serve_connection(io, service),
            first_request,
            &limits,
            ends,
            over,
        )
        .await
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        // hyper enforces header_read_timeout only with a timer (slowloris otherwise holds on).
        b.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // A head of more bytes, or of more than 100 fields (hyper's default, not set
            // again because setting it moves header parsing to the heap; the 431 test holds
            // it), is refused with 431 before it is parsed.
            .max_header_size(MAX_HEAD_BYTES)
            .max_buf_size(MAX_HEAD_BYTES);
        drive(b.serve_connection(io, service), None, &limits, ends, over).await
    }
}

/// Runs a connection to its end: closed by its peer or a deadline, drained gracefully on
/// shutdown or at its maximum age, or cut at once when told or over its budget.
async fn drive<C>(
    conn: C,
    first_request: Option<(Duration, Arc<AtomicBool>)>,
    limits: &ConnLimits,
    mut ends: Ends,
    over: Arc<tokio::sync::Notify>,
) -> Ended
where
    C: GracefulConnection<Error = hyper::Error>,
{
    tokio::pin!(conn);
    let age = tokio::time::sleep(limits.max_connection_age);
    tokio::pin!(age);
    let (preface_deadline, got_request) = match first_request {
        Some((d, seen)) => (Some(d), seen),
        None => (None, Arc::new(AtomicBool::new(true))),
    };
    let preface = tokio::time::sleep(preface_deadline.unwrap_or(Duration::ZERO));
    tokio::pin!(preface);
    let mut waiting_for_preface = preface_deadline.is_some();
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return Ended::Closed;
            }
            _ = &mut preface, if waiting_for_preface => {
                if !got_request.load(Ordering::Relaxed) {
                    tracing::debug!("HTTP/2 peer sent no request before the header deadline; closing");
                    return Ended::Closed;
                }
                waiting_for_preface = false;
            }
            _ = ends.shutdown.wait_for(|s| *s), if !draining => {
                // An HTTP/2 peer that has not sent its preface has nothing under way.
                if waiting_for_preface && !got_request.load(Ordering::Relaxed) {
                    return Ended::Closed;
                }
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            _ = &mut age, if !draining => {
                tracing::debug!("connection reached limits.max_connection_age; closing it gracefully");
                if waiting_for_preface && !got_request.load(Ordering::Relaxed) {
                    return Ended::Closed;
                }
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            _ = ends.close.notified() => return Ended::Cut,
            _ = over.notified() => return Ended::OverBudget,
        }
    }
}

const KEEP_ALIVE: http::HeaderName = http::HeaderName::from_static("keep-alive");

/// `Keep-Alive: timeout=N` (RFC 9110 §7.6.1's companion, as browsers and HTTP client pools
/// read it): whole seconds, at least one second below the header deadline at which an idle
/// connection is closed, so a request sent at N seconds of idleness still arrives in time.
fn keep_alive_header(limits: &ConnLimits) -> http::HeaderValue {
    let closes = limits
        .header_read_timeout
        .saturating_sub(Duration::from_secs(1));
    let announced = limits.keep_alive_timeout.min(closes).as_secs();
    http::HeaderValue::try_from(format!("timeout={announced}"))
        .unwrap_or_else(|_| http::HeaderValue::from_static("timeout=0"))
}

/// Why a TLS handshake was refused, as `brygga_connections_closed_early_total` counts it.
fn handshake_refusal(e: &std::io::Error) -> &'static str {
    use rustls::{CertificateError as C, Error as E};
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
        return "tls_connection_lost";
    };
    match tls {
        E::NoCertificatesPresented => "tls_no_certificate",
        E::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "tls_unknown_ca",
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => "tls_certificate_expired",
            C::Revoked => "tls_certificate_revoked",
            C::UnknownRevocationStatus
            | C::ExpiredRevocationList
            | C::ExpiredRevocationListContext { .. } => "tls_revocation_unknown",
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => "tls_certificate_wrong_purpose",
            C::BadSignature | C::UnsupportedSignatureAlgorithmContext { .. } => "tls_bad_signature",
            _ => "tls_certificate_invalid",
        },
        E::PeerIncompatible(_) => "tls_incompatible",
        E::AlertReceived(_) => "tls_client_alert",
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. } => "tls_malformed",
        _ => "tls_other",
    }
}

/// Counters and gauges of one listener's connections.
#[derive(Debug, Clone)]
pub struct ListenerMetrics {
    pub listener: &'static str,
    /// Connections served now (on a TLS listener: past the handshake).
    pub open: Gauge,
    /// Connections in their TLS handshake now.
    pub handshaking: Gauge,
    /// Connections closed before they were served, by reason.
    pub closed_early: Family<crate::ops::metrics::ClosedEarlyLabels, Counter>,
}

impl ListenerMetrics {
    fn closed_early(&self, reason: &'static str) {
        self.closed_early
            .get_or_create(&crate::ops::metrics::ClosedEarlyLabels {
                listener: self.listener,
                reason,
            })
            .inc();
    }
}

/// Every connection closed before it was served is counted; a warning is logged at most
/// once a minute per listener and reason (a flood must not become a flood of log lines).
#[derive(Default)]
struct ClosedEarly {
    metrics: Option<ListenerMetrics>,
    warned: std::sync::Mutex<
        std::collections::HashMap<&'static str, (Option<std::time::Instant>, u64)>,
    >,
}

impl ClosedEarly {
    fn note(&self, reason: &'static str, why: &str) {
        if let Some(m) = &self.metrics {
            m.closed_early(reason);
        }
        let listener = self.metrics.as_ref().map(|m| m.listener).unwrap_or("-");
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        let (last, since) = warned.entry(reason).or_insert((None, 0));
        *since += 1;
        if last.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60)) {
            tracing::warn!(
                listener,
                reason,
                closed = *since,
                "{why}; connections closed (counted in brygga_connections_closed_early_total)"
            );
            *last = Some(now);
            *since = 0;
        } else {
            tracing::debug!(listener, reason, "{why}");
        }
    }
}

/// Accepts until `shutdown` turns true and hands each connection to `on_connection`, which
/// either returns the future that serves it or `None` to close it at once; then drains:
/// in-flight requests get `drain_timeout` to finish.
async fn accept_loop<C, CF>(
    listener: TcpListener,
    drain_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
    on_connection: C,
) where
    C: Fn(TcpStream, SocketAddr, Ends) -> Option<CF>,
    CF: Future<Output = ()> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut shutdown) => break,
        };
        match accepted {
            Ok((tcp, remote)) => {
                let _ = tcp.set_nodelay(true);
                let ends = Ends {
                    shutdown: shutdown.clone(),
                    watcher: graceful.watcher(),
                    close: Arc::new(tokio::sync::Notify::new()),
                };
                if let Some(connection) = on_connection(tcp, remote, ends) {
                    tokio::spawn(connection);
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain timeout; closing them");
    }
}

/// A gauge raised while this lives (dropped however the connection ends, a panic too).
struct Counted(Option<Gauge>);

impl Counted {
    fn open(gauge: Option<Gauge>) -> Self {
        if let Some(g) = &gauge {
            g.inc();
        }
        Self(gauge)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.dec();
        }
    }
}

/// What each client certificate holds (by SHA-256 of the certificate): its open
/// connections, and the budget its connections' unsent answers share.
struct CertificateCounts {
    /// By certificate: connections open, and their shared budget.
    held: std::sync::Mutex<std::collections::HashMap<[u8; 32], CertificateShare>>,
    max_pending: usize,
}

type CertificateShare = (usize, Arc<Budget>);

/// A connection counted against its certificate until dropped.
struct Held {
    counts: Arc<CertificateCounts>,
    key: [u8; 32],
    /// The certificate's budget of unsent answers.
    budget: Arc<Budget>,
}

impl CertificateCounts {
    fn new(max_pending: usize) -> Arc<Self> {
        Arc::new(Self {
            held: Default::default(),
            max_pending,
        })
    }

    fn hold(self: &Arc<Self>, cert: &CertificateDer<'_>, max: usize) -> Option<Held> {
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(cert.as_ref()).into();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let (n, budget) = held
            .entry(key)
            .or_insert_with(|| (0, Budget::new(self.max_pending)));
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Held {
            counts: self.clone(),
            key,
            budget: budget.clone(),
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.counts.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, _)) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// Serves a TLS listener until `shutdown` turns true, then drains connections.
///
/// A new connection first needs a handshake place (see [`crate::gateway::admission`]): none for its
/// source, and it is closed at once. Its handshake must finish within `handshake_timeout`,
/// or sooner if newer connections need its place. Only a verified client then takes a place
/// of `max_connections` and of its certificate's share. Each connection takes the listener's
/// TLS configuration as it is when it arrives; when the configuration changes (a reload, a
/// new CRL), every open connection's certificate chain is verified again with the new one,
/// and those that no longer pass are closed at once.
pub async fn serve_tls<H, Fut>(
    listener: TcpListener,
    tls: TlsWatch,
    limits: ConnLimits,
    shutdown: watch::Receiver<bool>,
    handler: H,
) where
    H: Fn(Arc<Peer>, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = HttpResponse> + Send + 'static,
{
    let per_certificate = CertificateCounts::new(limits.max_pending_per_certificate);
    let admission = Admission::new(limits.handshakes);
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let closed_early = Arc::new(ClosedEarly {
        metrics: limits.observe.clone(),
        ..ClosedEarly::default()
    });
    let verified = Arc::new(OpenConnections::default());
    let reverify = tokio::spawn(verify_again_on_change(
        tls.clone(),
        verified.clone(),
        closed_early.clone(),
        shutdown.clone(),
    ));
    let drain = limits.drain_timeout;
    accept_loop(listener, drain, shutdown, move |tcp, remote, ends| {
        let place = match admission.admit(remote.ip()) {
            Ok((place, _)) => place,
            Err(refused) => {
                closed_early.note(
                    refused.as_str(),
                    "a source has too many TLS handshakes under way, or opens connections too fast",
                );
                return None;
            }
        };
        let current = tls.borrow().config.clone();
        let handler = handler.clone();
        let per_certificate = per_certificate.clone();
        let open = open.clone();
        let closed_early = closed_early.clone();
        let verified = verified.clone();
        let limits = limits.clone();
        Some(async move {
            let handshaking =
                Counted::open(limits.observe.as_ref().map(|m| m.handshaking.clone()));
            let acceptor = TlsAcceptor::from(current);
            let outcome = tokio::select! {
                r = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)) => r,
                _ = place.evicted.notified() => {
                    closed_early.note("handshake_evicted", "every handshake place was taken; the oldest handshakes gave way");
                    return;
                }
            };
            drop((place, handshaking));
            let tls = match outcome {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    // Counted by why (no identity to record yet); said once a minute at most,
                    // with the latest: a client that keeps failing must not fill the log.
                    closed_early.note(
                        handshake_refusal(&e),
                        &crate::model::ident::mask_identity_numbers(&format!(
                            "TLS handshakes refused, the latest from {remote}: {e}"
                        )),
                    );
                    return;
                }
                Err(_) => {
                    closed_early.note("handshake_timeout", "TLS handshakes did not finish in time");
                    return;
                }
            };
            // Identified: now the connection may take a place among the served ones.
            let Ok(_place) = open.try_acquire_owned() else {
                closed_early.note(
                    "max_connections",
                    "the listener has limits.max_connections open",
                );
                return;
            };
            let session = tls.get_ref().1;
            let h2 = session.alpn_protocol() == Some(b"h2");
            let chain: Vec<CertificateDer<'static>> = session
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default();
            let certificate = chain.first().cloned();
            // One client certificate may hold only so many connections.
            let _held = match &certificate {
                Some(c) => match per_certificate.hold(c, limits.max_per_certificate) {
                    Some(held) => Some(held),
                    None => {
                        closed_early.note(
                            "per_certificate",
                            "a client certificate has limits.max_connections_per_certificate open",
                        );
                        return;
                    }
                },
                None => None,
            };
            let _listed = verified.list(chain, ends.close.clone());
            let _counted = Counted::open(limits.observe.as_ref().map(|m| m.open.clone()));
            let orgnr = match &certificate {
                Some(c) => crate::access::identity::orgnr_from_certificate(c),
                None => Err("no client certificate".to_owned()),
            };
            let peer = Arc::new(Peer {
                remote,
                certificate,
                orgnr,
            });
            let pending = Pending::new(
                Budget::new(limits.max_pending_per_connection),
                _held.as_ref().map(|h| h.budget.clone()),
            );
            // Answers stay counted until the connection has written them.
            let io = TokioIo::new(Written::new(tls, &pending));
            let ended = serve_http(io, h2, limits, pending, ends, move |req| {
                handler(peer.clone(), req)
            })
            .await;
            if ended == Ended::OverBudget {
                closed_early.note(
                    "pending_bytes",
                    "a connection held more unsent answers than its budget or its certificate's",
                );
            }
        })
    })
    .await;
    reverify.abort();
}

/// A listener's TLS as it is now: the configuration new connections take, and the verifier
/// of its clients, to verify open connections again when it changes.
pub struct ListenerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

/// A listener's TLS, swapped whole on reload.
pub type TlsWatch = watch::Receiver<Arc<ListenerTls>>;

impl ListenerTls {
    /// A listener whose TLS never changes (the simulators): WebPKI with these CAs and CRLs.
    pub fn fixed(
        chain: Vec<CertificateDer<'static>>,
        key: rustls_pki_types::PrivateKeyDer<'static>,
        client_cas: &[CertificateDer<'static>],
        crls: &[rustls_pki_types::CertificateRevocationListDer<'static>],
    ) -> Result<TlsWatch, crate::access::tls::TlsError> {
        let verifier = crate::access::tls::webpki_client_verifier(client_cas, crls)?;
        let config = crate::access::tls::mtls_server_config_with(chain, key, verifier.clone())?;
        let (_, watch) = watch::channel(Arc::new(ListenerTls {
            config: Arc::new(config),
            verifier,
        }));
        Ok(watch)
    }
}

/// The client certificate chains of a listener's open connections, each with the signal that
/// closes it.
#[derive(Default)]
struct OpenConnections {
    next: std::sync::atomic::AtomicU64,
    open: std::sync::Mutex<std::collections::HashMap<u64, OpenConnection>>,
}

/// An open connection's client certificate chain, and the signal that closes it.
type OpenConnection = (Vec<CertificateDer<'static>>, Arc<tokio::sync::Notify>);

/// A connection listed until dropped.
struct Listed {
    list: Arc<OpenConnections>,
    id: u64,
}

impl OpenConnections {
    fn list(
        self: &Arc<Self>,
        chain: Vec<CertificateDer<'static>>,
        close: Arc<tokio::sync::Notify>,
    ) -> Option<Listed> {
        if chain.is_empty() {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, (chain, close));
        Some(Listed {
            list: self.clone(),
            id,
        })
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.list
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// Each time the listener's TLS changes, verifies every open connection's chain with the new
/// verifier (its CAs and CRLs as they are now) and closes those that fail.
async fn verify_again_on_change(
    mut tls: TlsWatch,
    open: Arc<OpenConnections>,
    closed_early: Arc<ClosedEarly>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            changed = tls.changed() => if changed.is_err() { return },
            _ = stopped(&mut shutdown) => return,
        }
        let verifier = tls.borrow_and_update().verifier.clone();
        let chains: Vec<_> = open
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        // Tens of microseconds a chain, for every open connection: off the async workers.
        let cut = tokio::task::spawn_blocking(move || {
            let now = rustls_pki_types::UnixTime::now();
            let mut cut = 0;
            for (chain, close) in chains {
                let (leaf, intermediates) = chain.split_at(1);
                if let Err(e) = verifier.verify_client_cert(&leaf[0], intermediates, now) {
                    tracing::warn!(error = %e, "an open connection's certificate no longer verifies; closing it");
                    close.notify_one();
                    cut += 1;
                }
            }
            cut
        })
        .await
        .unwrap_or(0);
        for _ in 0..cut {
            closed_early.note(
                "no_longer_verified",
                "open connections whose certificate no longer verifies were closed",
            );
        }
    }
}

/// Serves a plain-HTTP/1.1 listener (the loopback admin listener): at most
/// `max_connections` at once, more closed as they come.
pub async fn serve_plain<H, Fut>(
    listener: TcpListener,
    limits: ConnLimits,
    shutdown: watch::Receiver<bool>,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = HttpResponse> + Send + 'static,
{
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let closed_early = Arc::new(ClosedEarly {
        metrics: limits.observe.clone(),
        ..ClosedEarly::default()
    });
    let drain = limits.drain_timeout;
    accept_loop(listener, drain, shutdown, move |tcp, _, ends| {
        let Ok(place) = open.clone().try_acquire_owned() else {
            closed_early.note(
                "max_connections",
                "the listener has limits.max_connections open",
            );
            return None;
        };
        let counted = Counted::open(limits.observe.as_ref().map(|m| m.open.clone()));
        let pending = Pending::new(Budget::new(limits.max_pending_per_connection), None);
        let serving = serve_http(
            TokioIo::new(Written::new(tcp, &pending)),
            false,
            limits.clone(),
            pending,
            ends,
            handler.clone(),
        );
        Some(async move {
            let _held = (place, counted);
            serving.await;
        })
    })
    .await;
}

/// A response with a body and content type.
pub fn respond(
    status: http::StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> HttpResponse {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

/// The answer to a HEAD request: the GET answer's head, its length said, its body left out.
pub fn head_only(mut r: HttpResponse) -> HttpResponse {
    use hyper::body::Body as _;
    let len = r.body().size_hint().exact().unwrap_or(0);
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    r.map(|_| Full::new(Bytes::new()))
}

/// Binds a TCP listener, naming the address on failure.
pub async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for the {what} listener: {e}"))
}
