//! Optional OpenTelemetry export: each exchange as spans, sent as OTLP/HTTP JSON to a
//! collector (`[telemetry] otlp_endpoint`). Off unless configured.
//!
//! A span carries the operation, the configured client name, the outcome (OK or Felkod) and
//! the trace ids — never a person. Export never holds a request up: spans go into a bounded
//! queue, and when the collector is slow or away the excess is dropped and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

pub use crate::config::TelemetrySettings;

/// Span kinds as OTLP numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server = 2,
    Client = 3,
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    pub parent_id: Option<String>,
    pub name: &'static str,
    pub kind: Kind,
    pub start: SystemTime,
    pub end: SystemTime,
    /// Bounded values only: names, codes, numbers.
    pub attributes: Vec<(&'static str, Attribute)>,
    /// The Felkod, when the span failed (a server span: brygga's or AF's fault, not the
    /// caller's, as OpenTelemetry's HTTP conventions say).
    pub error: Option<&'static str>,
}

/// An attribute's value.
#[derive(Debug, Clone)]
pub enum Attribute {
    Text(String),
    Int(i64),
}

impl From<&str> for Attribute {
    fn from(s: &str) -> Self {
        Attribute::Text(s.to_owned())
    }
}

impl From<String> for Attribute {
    fn from(s: String) -> Self {
        Attribute::Text(s)
    }
}

/// Spans waiting at most; more are dropped.
const QUEUE: usize = 4096;
/// Spans per request to the collector.
const BATCH: usize = 512;

/// The sending side, held by the gateway.
pub struct Exporter {
    tx: mpsc::Sender<Span>,
    pub stats: Arc<ExportStats>,
}

#[derive(Debug, Default)]
pub struct ExportStats {
    pub exported: AtomicU64,
    /// Dropped because the queue was full or the collector refused them.
    pub dropped: AtomicU64,
}

impl Exporter {
    /// Starts the export task. It sends what is queued once a second or every 512 spans,
    /// and a last time when the exporter is dropped (or 15 s after `shutdown` turns true).
    pub fn start(
        settings: TelemetrySettings,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), String> {
        let mut http = reqwest::Client::builder()
            .no_proxy()
            .pool_idle_timeout(crate::config::OUTBOUND_IDLE_TIMEOUT)
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none());
        if settings.endpoint.starts_with("https://") {
            let tls =
                crate::access::tls::client_config(&settings.ca, None).map_err(|e| e.to_string())?;
            http = http.tls_backend_preconfigured(tls);
        }
        let http = http.build().map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(ExportStats::default());
        let task = tokio::spawn(run(rx, http, settings, stats.clone(), shutdown));
        Ok((Self { tx, stats }, task))
    }

    /// Queues a span; never waits.
    pub fn record(&self, span: Span) {
        if self.tx.try_send(span).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<Span>,
    http: reqwest::Client,
    settings: TelemetrySettings,
    stats: Arc<ExportStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // After the stop signal, requests still draining keep sending spans: wait for the
    // gateway to let go of the queue (all its senders gone), but not forever.
    let mut stop_by: Option<tokio::time::Instant> = None;
    loop {
        let wait_stop = async {
            match stop_by {
                Some(at) => tokio::time::sleep_until(at).await,
                None => {
                    let _ = shutdown.wait_for(|s| *s).await;
                }
            }
        };
        let mut done = false;
        let mut due = false;
        tokio::select! {
            span = rx.recv() => match span {
                Some(span) => batch.push(span),
                None => done = true,
            },
            _ = tick.tick() => due = true,
            _ = wait_stop => match stop_by {
                None => stop_by = Some(tokio::time::Instant::now() + Duration::from_secs(15)),
                Some(_) => done = true,
            },
        }
        if done {
            while let Ok(span) = rx.try_recv() {
                batch.push(span);
            }
        }
        // A full batch at once; the rest once a second, and all of it at the end.
        while batch.len() >= BATCH || (!batch.is_empty() && (done || due)) {
            let take = batch.len().min(BATCH);
            let spans: Vec<Span> = batch.drain(..take).collect();
            send(&http, &settings, &stats, &spans).await;
        }
        if done {
            return;
        }
    }
}

async fn send(
    http: &reqwest::Client,
    settings: &TelemetrySettings,
    stats: &ExportStats,
    spans: &[Span],
) {
    let body = encode(&settings.service_name, spans);
    let n = spans.len() as u64;
    match http
        .post(&settings.endpoint)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => {
            stats.exported.fetch_add(n, Ordering::Relaxed);
        }
        Ok(r) => {
            tracing::debug!(
                status = r.status().as_u16(),
                spans = n,
                "the collector refused spans"
            );
            stats.dropped.fetch_add(n, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::debug!(error = %crate::error::error_chain(&e), spans = n, "spans could not be exported");
            stats.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        .to_string()
}

fn string_attribute(key: &str, value: &str) -> Value {
    json!({ "key": key, "value": { "stringValue": value } })
}

fn attribute(key: &str, value: &Attribute) -> Value {
    match value {
        Attribute::Text(s) => string_attribute(key, s),
        // int64 is a decimal string in the protocol's JSON mapping.
        Attribute::Int(n) => json!({ "key": key, "value": { "intValue": n.to_string() } }),
    }
}

/// The OTLP/HTTP JSON body (`ExportTraceServiceRequest`): ids in hex, times in nanoseconds
/// as strings, as the protocol's JSON mapping says.
pub fn encode(service_name: &str, spans: &[Span]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut span = json!({
                "traceId": s.trace_id,
                "spanId": s.span_id,
                "name": s.name,
                "kind": s.kind as u8,
                "startTimeUnixNano": nanos(s.start),
                "endTimeUnixNano": nanos(s.end),
                "attributes": s.attributes.iter().map(|(k, v)| attribute(k, v)).collect::<Vec<_>>(),
            });
            // Unset unless it failed, as the conventions say.
            if let Some(felkod) = s.error {
                span["status"] = json!({ "code": 2, "message": felkod });
            }
            if let Some(parent) = &s.parent_id {
                span["parentSpanId"] = json!(parent);
            }
            span
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": { "attributes": [
                string_attribute("service.name", service_name),
                string_attribute("service.version", env!("CARGO_PKG_VERSION")),
            ]},
            "scopeSpans": [{
                "scope": { "name": "brygga", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans,
            }],
        }],
    })
}
