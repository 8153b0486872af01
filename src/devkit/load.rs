//! The load generator of `brygga bench` and its soak: N keep-alive HTTP/1.1 connections over
//! mutual TLS, closed loop (each connection sends as soon as its answer came) or open loop
//! (requests fall due on one schedule at a fixed rate, and whichever connection is free sends
//! the next; latency counts from when a request was due, so a queue shows as latency and
//! nothing is omitted).
//!
//! The open schedule is shared by all connections, as a case system's connection pool would
//! share its requests: a slow answer holds up only itself while other connections are free,
//! instead of every request due after it on the same connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;

use crate::contract::soap;

/// Everything a scenario needs to send one request.
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) path: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) authorization: String,
    pub(crate) bodies: Vec<Bytes>,
    /// The processes whose CPU this scenario's server side uses.
    pub(crate) server_pids: Vec<u32>,
}

/// An empty latency histogram: 1 µs to 60 s, three significant digits.
pub(crate) fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())
}

/// What the answers of one stretch of a run came to: latencies of the successful ones, and
/// the rest counted by kind (`http 503 AF_EJ_NABAR`, `connect`, `timeout`, ...).
#[derive(Clone)]
pub(crate) struct Bucket {
    pub(crate) hist: Histogram<u64>,
    pub(crate) errors: BTreeMap<String, u64>,
}

impl Bucket {
    pub(crate) fn new(empty: &Histogram<u64>) -> Self {
        Bucket {
            hist: empty.clone(),
            errors: BTreeMap::new(),
        }
    }

    pub(crate) fn add(&mut self, other: &Bucket) {
        let _ = self.hist.add(&other.hist);
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_insert(0) += v;
        }
    }
}

/// Where answers are counted: one bucket per stretch of a run, chosen by the time the
/// request was due, so a late answer counts where it was asked for.
pub(crate) struct Tally {
    pub(crate) buckets: Vec<Mutex<Bucket>>,
    bucket_of: Box<dyn Fn(Instant) -> usize + Send + Sync>,
}

impl Tally {
    /// `n` buckets; `bucket_of` maps a due time to one of them (clamped to the last).
    pub(crate) fn new(
        n: usize,
        empty: &Histogram<u64>,
        bucket_of: impl Fn(Instant) -> usize + Send + Sync + 'static,
    ) -> Self {
        Tally {
            buckets: (0..n.max(1))
                .map(|_| Mutex::new(Bucket::new(empty)))
                .collect(),
            bucket_of: Box::new(bucket_of),
        }
    }

    fn bucket(&self, due: Instant) -> &Mutex<Bucket> {
        let i = (self.bucket_of)(due).min(self.buckets.len() - 1);
        &self.buckets[i]
    }

    fn answered(&self, due: Instant) {
        let us = u64::try_from(due.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, 60_000_000);
        if let Ok(mut b) = self.bucket(due).lock() {
            let _ = b.hist.record(us);
        }
    }

    fn failed(&self, due: Instant, kind: String) {
        if let Ok(mut b) = self.bucket(due).lock() {
            *b.errors.entry(kind).or_insert(0) += 1;
        }
    }

    /// A copy of one bucket as it stands.
    pub(crate) fn snapshot(&self, i: usize) -> Option<Bucket> {
        self.buckets
            .get(i)
            .and_then(|b| b.lock().ok())
            .map(|b| b.clone())
    }
}

/// When requests are sent.
pub(crate) enum Pace {
    /// Each connection sends its next request as soon as its answer came.
    Closed,
    /// Request n falls due at `start + n × interval`, whoever sends it.
    Open {
        start: Instant,
        interval: Duration,
        next: AtomicU64,
    },
}

impl Pace {
    /// Closed loop without a rate; otherwise `rate` requests a second from now.
    pub(crate) fn new(rate: Option<f64>) -> Self {
        match rate {
            None => Pace::Closed,
            Some(r) => Pace::Open {
                start: Instant::now(),
                interval: Duration::from_secs_f64(1.0 / r.max(0.001)),
                next: AtomicU64::new(0),
            },
        }
    }

    /// When request 0 falls due, for an open loop.
    pub(crate) fn start(&self) -> Option<Instant> {
        match self {
            Pace::Closed => None,
            Pace::Open { start, .. } => Some(*start),
        }
    }

    /// The next request's due time, after waiting for it; `None` once it falls at or after
    /// `until`.
    async fn next_due(&self, until: Instant) -> Option<Instant> {
        match self {
            Pace::Closed => {
                let now = Instant::now();
                (now < until).then_some(now)
            }
            Pace::Open {
                start,
                interval,
                next,
            } => {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let due = *start + interval.mul_f64(n as f64);
                if due >= until {
                    return None;
                }
                tokio::time::sleep_until(due.into()).await;
                Some(due)
            }
        }
    }
}

/// A refusal's Felkod, as ` FELKOD` (empty when the body is no SOAP Fault: AF's own answers
/// on the direct path).
fn felkod(body: &[u8]) -> String {
    match soap::decode_response(body, &crate::contract::xml::XmlLimits::default()) {
        Ok(soap::KommunResponse::Fault { fel: Some(f), .. }) => format!(" {}", f.felkod),
        _ => String::new(),
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(t: &Target) -> Result<Sender, String> {
    tokio::time::timeout(Duration::from_secs(10), connect_once(t))
        .await
        .map_err(|_| "connect: timed out".to_owned())?
}

async fn connect_once(t: &Target) -> Result<Sender, String> {
    let tcp = tokio::net::TcpStream::connect(t.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let tls = tokio_rustls::TlsConnector::from(t.tls.clone())
        .connect(
            ServerName::try_from("localhost").map_err(|e| e.to_string())?,
            tcp,
        )
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("http: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One exchange on `sender`: `Ok` for a 2xx answer, otherwise what went wrong.
async fn exchange(t: &Target, sender: &mut Sender, body: Bytes) -> Result<(), String> {
    let req = Request::post(t.path)
        .header("host", "localhost")
        .header("content-type", t.content_type)
        .header("authorization", &t.authorization)
        .header("af-trackingid", uuid::Uuid::new_v4().to_string())
        .header("af-systemid", "brygga-bench")
        .header("af-enduserid", "SE2120000142-HL01")
        .header("af-environment", "U1")
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    sender.ready().await.map_err(|e| format!("send: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("http {}{}", status.as_u16(), felkod(&body)))
    }
}

/// One connection's loop until `until`: takes the next due request, sends it, counts the
/// answer in `tally`; reconnects after a failure that is not an HTTP answer.
async fn run_connection(
    t: Arc<Target>,
    seed: usize,
    until: Instant,
    pace: Arc<Pace>,
    tally: Arc<Tally>,
) {
    let mut sender = None;
    let mut n: usize = 0;
    while let Some(due) = pace.next_due(until).await {
        n += 1;
        if sender.is_none() {
            match connect(&t).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    tally.failed(due, e.split(':').next().unwrap_or("connect").to_owned());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let body = t.bodies[(seed * 7919 + n) % t.bodies.len()].clone();
        match tokio::time::timeout(Duration::from_secs(10), exchange(&t, s, body)).await {
            Ok(Ok(())) => tally.answered(due),
            Ok(Err(e)) if e.starts_with("http") => tally.failed(due, e),
            Ok(Err(e)) => {
                sender = None;
                tally.failed(due, e.split(':').next().unwrap_or("error").to_owned());
            }
            Err(_) => {
                sender = None;
                tally.failed(due, "timeout".into());
            }
        }
    }
}

/// Runs `connections` connections against `t` until `until`, counting into `tally`; returns
/// when every connection has had its last answer.
pub(crate) async fn run(
    t: &Arc<Target>,
    connections: usize,
    until: Instant,
    pace: Pace,
    tally: &Arc<Tally>,
) {
    let pace = Arc::new(pace);
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            tokio::spawn(run_connection(
                t.clone(),
                i,
                until,
                pace.clone(),
                tally.clone(),
            ))
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}

/// One stretch of load at `rate` (closed loop without one), all answers in one bucket.
pub(crate) async fn run_segment(
    t: &Arc<Target>,
    connections: usize,
    rate: Option<f64>,
    duration: Duration,
    empty: &Histogram<u64>,
) -> Bucket {
    let tally = Arc::new(Tally::new(1, empty, |_| 0));
    run(
        t,
        connections,
        Instant::now() + duration,
        Pace::new(rate),
        &tally,
    )
    .await;
    tally.snapshot(0).unwrap_or_else(|| Bucket::new(empty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_open_pace_hands_out_one_schedule_whoever_asks_and_stops_at_its_end() {
        let pace = Arc::new(Pace::new(Some(1000.0)));
        let start = pace.start().expect("an open pace has a start");
        let until = start + Duration::from_millis(20);
        // Two takers share the schedule: between them they get every slot once, in order.
        let take = |pace: Arc<Pace>| async move {
            let mut dues = Vec::new();
            while let Some(d) = pace.next_due(until).await {
                dues.push(d);
            }
            dues
        };
        let (a, b) = tokio::join!(take(pace.clone()), take(pace.clone()));
        let mut all: Vec<Duration> = a.iter().chain(&b).map(|d| *d - start).collect();
        all.sort();
        let expected: Vec<Duration> = (0..20).map(Duration::from_millis).collect();
        assert_eq!(all, expected);
        assert!(!a.is_empty() && !b.is_empty(), "both takers sent");
    }

    #[test]
    fn an_answer_counts_in_the_bucket_of_the_time_it_was_due() {
        let empty = histogram().expect("histogram");
        let origin = Instant::now();
        let tally = Tally::new(3, &empty, move |due| {
            (due.saturating_duration_since(origin).as_millis() / 100) as usize
        });
        tally.answered(origin);
        tally.failed(
            origin + Duration::from_millis(150),
            "http 503 AF_EJ_NABAR".into(),
        );
        // Past the last bucket: clamped into it, not lost.
        tally.answered(origin + Duration::from_secs(5));
        let b = |i| tally.snapshot(i).expect("bucket");
        assert_eq!(b(0).hist.len(), 1);
        assert_eq!(b(1).errors.get("http 503 AF_EJ_NABAR"), Some(&1));
        assert_eq!(b(2).hist.len(), 1);
        assert!(tally.snapshot(3).is_none());
    }
}
