//! What operators see: Prometheus metrics, the last minutes per operation and client for the
//! status page, and the expiry of every certificate the configuration names.
//!
//! Every label value is bounded: a configured client name, an operation name, a listener, a
//! Felkod or a configuration key. Nothing about a person ever becomes a label.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::Felkod;
use crate::model::Kalla;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub listener: &'static str,
    pub operation: &'static str,
    pub client: String,
    /// `OK` or the Felkod.
    pub outcome: &'static str,
    /// `ok`, `klient` (the caller must change the request), `brygga` or `af`.
    pub class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub listener: &'static str,
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AfCallLabels {
    pub operation: &'static str,
    /// `OK` or the Felkod the failure became.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AfLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub listener: &'static str,
    pub client: String,
    /// `limit`, `policy` or `identity`.
    pub reason: &'static str,
    pub felkod: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ValidationLabels {
    /// Who sent it: `kommun` (a request), `af` (an answer or an event).
    pub source: &'static str,
    /// The message type: an operation, its answer from AF, or `ArbetssokandeHandelse`.
    pub message: &'static str,
    pub felkod: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub client: String,
    /// `OK`, `MOTTAGARE_FEL`, `EJ_NADD` or `GAV_UPP`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// `OK` (stored), `DUBBLETT` or the Felkod of a refused batch.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClosedEarlyLabels {
    pub listener: &'static str,
    /// `address_handshakes`, `address_rate`, `handshake_evicted`, `handshake_timeout`,
    /// a refused handshake's `tls_*` reason (`tls_unknown_ca`, `tls_certificate_expired`,
    /// `tls_certificate_revoked`, `tls_no_certificate`, …), `max_connections`,
    /// `per_certificate`, `pending_bytes` or `no_longer_verified`.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    /// The configuration key it came from, e.g. `kommun.cert`, `af.ca`.
    pub certificate: String,
    /// `certificate` or `crl` (for a CRL: seconds until its next update).
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JwksLabels {
    pub client: String,
    /// `url` (fetched, so it can go stale) or `file` (read at start and on change).
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CrlSourceLabels {
    /// The URL a CRL is fetched from (configured, or a certificate's distribution point).
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
}

type Seconds = Family<OperationLabels, Histogram, fn() -> Histogram>;
type AfSeconds = Family<AfLabels, Histogram, fn() -> Histogram>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Latency buckets from 0.5 ms to about 16 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric of a running gateway, registered once.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Seconds,
    pub af_calls: Family<AfCallLabels, Counter>,
    pub af_seconds: AfSeconds,
    pub refusals: Family<RefusalLabels, Counter>,
    pub validation_failures: Family<ValidationLabels, Counter>,
    pub events: Family<EventLabels, Counter>,
    pub deliveries: Family<DeliveryLabels, Counter>,
    /// Connections open now, per listener (kept by the listeners; on a TLS listener, those
    /// past their handshake).
    pub open_connections: Family<ListenerLabels, Gauge>,
    /// Connections in their TLS handshake now, per listener.
    pub handshakes_in_progress: Family<ListenerLabels, Gauge>,
    /// Connections closed before they were served, per listener and reason.
    pub connections_closed_early: Family<ClosedEarlyLabels, Counter>,
    // Read from their owners at each scrape:
    pub af_breaker_open: Gauge,
    pub af_calls_in_flight: Gauge,
    af_retries: Counter,
    telemetry_exported: Counter,
    telemetry_dropped: Counter,
    audit_records: Counter,
    audit_commits: Counter,
    audit_commit_failures: Counter,
    audit_witness_failures: Counter,
    audit_pruned: Counter,
    audit_prune_failures: Counter,
    pub audit_head: Gauge,
    pub audit_checkpoint: Gauge,
    pub outbox_pending: Gauge,
    pub outbox_dead: Gauge,
    pub outbox_oldest_seconds: FloatGauge,
    pub expiry_seconds: Family<CertificateLabels, FloatGauge>,
    pub jwks_age_seconds: Family<JwksLabels, FloatGauge>,
    pub jwks_keys: Family<JwksLabels, Gauge>,
    /// Failed fetches of each CRL source.
    pub crl_fetch_failures: Family<CrlSourceLabels, Counter>,
    /// 1 while a source's CRL is held and not past its next update.
    pub crl_source_ok: Family<CrlSourceLabels, Gauge>,
    /// The sources `crl_sources` has series for.
    crl_sources_shown: Mutex<std::collections::BTreeSet<String>>,
    /// Files the last reload could not load (each kept the version in use).
    pub reload_problems: Gauge,
    /// The last minutes per operation and client, for `/status`.
    pub recent: Recent,
    /// Times the status page was rendered (shown on it, so a refresh is visible).
    pub status_renders: AtomicU64,
    /// Held while a scrape sets the values read from their owners.
    pub scrape: Mutex<()>,
}

impl Metrics {
    /// The registry, with the audit writer's commit latency (a histogram it keeps itself).
    pub fn new(audit_commit_seconds: Histogram) -> Self {
        let mut r = Registry::with_prefix("brygga");
        let requests = Family::<RequestLabels, Counter>::default();
        r.register(
            "requests",
            "Requests answered, by listener, operation, client and outcome (OK or Felkod)",
            requests.clone(),
        );
        let request_seconds: Seconds = Family::new_with_constructor(latency);
        r.register(
            "request_duration_seconds",
            "Time from a request's arrival to its answer, its audit record included",
            request_seconds.clone(),
        );
        let af_calls = Family::<AfCallLabels, Counter>::default();
        r.register(
            "af_calls",
            "Calls to AF, by operation and outcome",
            af_calls.clone(),
        );
        let af_seconds: AfSeconds = Family::new_with_constructor(latency);
        r.register(
            "af_call_duration_seconds",
            "Time of one call to AF (token, retries and the wait for a connection included)",
            af_seconds.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        r.register(
            "refusals",
            "Requests refused by a limit, the access policy or the caller's identity",
            refusals.clone(),
        );
        let validation_failures = Family::<ValidationLabels, Counter>::default();
        r.register(
            "validation_failures",
            "Messages that broke their contract, by source and message type",
            validation_failures.clone(),
        );
        let events = Family::<EventLabels, Counter>::default();
        r.register(
            "events_received",
            "AF's events received on the af listener, by outcome",
            events.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        r.register(
            "deliveries",
            "Delivery attempts of events to case systems, by client and outcome",
            deliveries.clone(),
        );
        let open_connections = Family::<ListenerLabels, Gauge>::default();
        r.register(
            "open_connections",
            "Connections open now, per listener",
            open_connections.clone(),
        );
        let handshakes_in_progress = Family::<ListenerLabels, Gauge>::default();
        r.register(
            "handshakes_in_progress",
            "Connections in their TLS handshake now, per listener",
            handshakes_in_progress.clone(),
        );
        let connections_closed_early = Family::<ClosedEarlyLabels, Counter>::default();
        r.register(
            "connections_closed_early",
            "Connections closed before they were served, per listener and reason (a source over its handshake share or rate, a handshake that gave way, timed out or was refused, a listener or certificate at its cap)",
            connections_closed_early.clone(),
        );
        let af_breaker_open = Gauge::default();
        r.register(
            "af_breaker_open",
            "1 while the circuit breaker towards AF is open (calls fail at once)",
            af_breaker_open.clone(),
        );
        let af_calls_in_flight = Gauge::default();
        r.register(
            "af_calls_in_flight",
            "Calls to AF under way now (at most af.max_connections)",
            af_calls_in_flight.clone(),
        );
        let af_retries = Counter::default();
        r.register(
            "af_retries",
            "Reads tried once more towards AF",
            af_retries.clone(),
        );
        let telemetry_exported = Counter::default();
        r.register(
            "telemetry_spans_exported",
            "Spans the OpenTelemetry collector accepted",
            telemetry_exported.clone(),
        );
        let telemetry_dropped = Counter::default();
        r.register(
            "telemetry_spans_dropped",
            "Spans dropped: the export queue was full or the collector did not take them",
            telemetry_dropped.clone(),
        );
        let audit_records = Counter::default();
        r.register(
            "audit_records",
            "Audit records made durable",
            audit_records.clone(),
        );
        let audit_commits = Counter::default();
        r.register(
            "audit_commits",
            "Durable commits of the audit chain (one fdatasync per group of records)",
            audit_commits.clone(),
        );
        let audit_commit_failures = Counter::default();
        r.register(
            "audit_commit_failures",
            "Groups of audit records that could not be written (their requests failed closed)",
            audit_commit_failures.clone(),
        );
        r.register(
            "audit_commit_duration_seconds",
            "Time of one durable commit of the audit chain",
            audit_commit_seconds,
        );
        let audit_witness_failures = Counter::default();
        r.register(
            "audit_witness_failures",
            "Signed checkpoints that could not be written to the witness outside the store (retried with the next one)",
            audit_witness_failures.clone(),
        );
        let audit_pruned = Counter::default();
        r.register(
            "audit_pruned_records",
            "Audit records removed past the retention period (gallring), behind a signed checkpoint",
            audit_pruned.clone(),
        );
        let audit_prune_failures = Counter::default();
        r.register(
            "audit_prune_failures",
            "Prunings of the audit chain that failed (retried at the next interval)",
            audit_prune_failures.clone(),
        );
        let audit_head = Gauge::default();
        r.register(
            "audit_head_sequence",
            "Sequence number of the audit chain's last durable record",
            audit_head.clone(),
        );
        let audit_checkpoint = Gauge::default();
        r.register(
            "audit_checkpoint_sequence",
            "Sequence number of the audit chain's last signed checkpoint",
            audit_checkpoint.clone(),
        );
        let outbox_pending = Gauge::default();
        r.register(
            "outbox_pending",
            "Deliveries of events waiting in the outbox",
            outbox_pending.clone(),
        );
        let outbox_dead = Gauge::default();
        r.register(
            "outbox_dead",
            "Deliveries given up, waiting for an operator",
            outbox_dead.clone(),
        );
        let outbox_oldest_seconds = FloatGauge::default();
        r.register(
            "outbox_oldest_pending_seconds",
            "Age of the oldest pending delivery (0 when none)",
            outbox_oldest_seconds.clone(),
        );
        let expiry_seconds = Family::<CertificateLabels, FloatGauge>::default();
        r.register(
            "certificate_expiry_seconds",
            "Seconds until a configured certificate expires, or a CRL's next update is due",
            expiry_seconds.clone(),
        );
        let jwks_age_seconds = Family::<JwksLabels, FloatGauge>::default();
        r.register(
            "jwks_age_seconds",
            "Seconds since a client's identity-provider keys were read or fetched",
            jwks_age_seconds.clone(),
        );
        let jwks_keys = Family::<JwksLabels, Gauge>::default();
        r.register(
            "jwks_keys",
            "Keys in a client's identity-provider key set",
            jwks_keys.clone(),
        );
        let crl_fetch_failures = Family::<CrlSourceLabels, Counter>::default();
        r.register(
            "crl_fetch_failures",
            "Failed fetches of a CRL from its URL (the last good CRL stays until its next update)",
            crl_fetch_failures.clone(),
        );
        let crl_source_ok = Family::<CrlSourceLabels, Gauge>::default();
        r.register(
            "crl_source_ok",
            "1 while a CRL fetched from this URL is held and not past its next update; 0: the certificates of its CA are refused",
            crl_source_ok.clone(),
        );
        let reload_problems = Gauge::default();
        r.register(
            "reload_problems",
            "Pieces the last reload could not load (each kept the version in use)",
            reload_problems.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register("build_info", "The running build (always 1)", build);
        Self {
            registry: r,
            requests,
            request_seconds,
            af_calls,
            af_seconds,
            refusals,
            validation_failures,
            events,
            deliveries,
            open_connections,
            handshakes_in_progress,
            connections_closed_early,
            af_breaker_open,
            af_calls_in_flight,
            af_retries,
            telemetry_exported,
            telemetry_dropped,
            audit_records,
            audit_commits,
            audit_commit_failures,
            audit_witness_failures,
            audit_pruned,
            audit_prune_failures,
            audit_head,
            audit_checkpoint,
            outbox_pending,
            outbox_dead,
            outbox_oldest_seconds,
            expiry_seconds,
            jwks_age_seconds,
            jwks_keys,
            crl_fetch_failures,
            crl_source_ok,
            crl_sources_shown: Mutex::default(),
            reload_problems,
            recent: Recent::default(),
            status_renders: AtomicU64::new(0),
            scrape: Mutex::new(()),
        }
    }

    /// Creates the series every configured client and operation will have, at zero, so that
    /// dashboards and alerts see them before the first request (a rate over a missing series
    /// is no data, not zero).
    pub fn prepare(&self, config: &crate::config::Config) {
        use crate::model::Operation;
        for op in Operation::ALL {
            drop(self.request_seconds.get_or_create(&OperationLabels {
                listener: "kommun",
                operation: op.name(),
            }));
            if !op.is_local() {
                drop(self.af_calls.get_or_create(&AfCallLabels {
                    operation: op.name(),
                    outcome: "OK",
                }));
                drop(self.af_seconds.get_or_create(&AfLabels {
                    operation: op.name(),
                }));
            }
            for c in &config.clients {
                drop(self.requests.get_or_create(&RequestLabels {
                    listener: "kommun",
                    operation: op.name(),
                    client: c.name.clone(),
                    outcome: "OK",
                    class: "ok",
                }));
            }
        }
        for c in &config.clients {
            drop(self.refusals.get_or_create(&RefusalLabels {
                listener: "kommun",
                client: c.name.clone(),
                reason: "limit",
                felkod: Felkod::ForMangaForfragningar.as_str(),
            }));
            drop(self.deliveries.get_or_create(&DeliveryLabels {
                client: c.name.clone(),
                outcome: "OK",
            }));
        }
        drop(self.requests.get_or_create(&RequestLabels {
            listener: "af",
            operation: "ArbetssokandeHandelse",
            client: "af".into(),
            outcome: "OK",
            class: "ok",
        }));
        drop(self.request_seconds.get_or_create(&OperationLabels {
            listener: "af",
            operation: "ArbetssokandeHandelse",
        }));
        for outcome in ["OK", "DUBBLETT"] {
            drop(self.events.get_or_create(&EventLabels { outcome }));
        }
        for source in ["kommun", "af"] {
            drop(self.validation_failures.get_or_create(&ValidationLabels {
                source,
                message: if source == "af" {
                    "ArbetssokandeHandelse"
                } else {
                    "-"
                },
                felkod: Felkod::OgiltigtFalt.as_str(),
            }));
        }
    }

    /// One answered request of the `kommun` listener.
    pub fn request(
        &self,
        operation: &'static str,
        client: Option<&str>,
        felkod: Option<Felkod>,
        took: Duration,
    ) {
        self.answered("kommun", operation, client.unwrap_or("-"), felkod, took);
    }

    /// One batch of AF's events on the `af` listener: its outcome and the events in it.
    pub fn event_batch(&self, felkod: Option<Felkod>, new: u64, repeated: u64, took: Duration) {
        self.answered("af", "ArbetssokandeHandelse", "af", felkod, took);
        for (outcome, n) in [("OK", new), ("DUBBLETT", repeated)] {
            if n > 0 {
                self.events
                    .get_or_create(&EventLabels { outcome })
                    .inc_by(n);
            }
        }
        if let Some(f) = felkod {
            self.events
                .get_or_create(&EventLabels {
                    outcome: f.as_str(),
                })
                .inc();
        }
    }

    fn answered(
        &self,
        listener: &'static str,
        operation: &'static str,
        client: &str,
        felkod: Option<Felkod>,
        took: Duration,
    ) {
        let source = if listener == "af" { "af" } else { "kommun" };
        let outcome = felkod.map(Felkod::as_str).unwrap_or("OK");
        self.requests
            .get_or_create(&RequestLabels {
                listener,
                operation,
                client: client.to_owned(),
                outcome,
                class: class(felkod),
            })
            .inc();
        self.request_seconds
            .get_or_create(&OperationLabels {
                listener,
                operation,
            })
            .observe(took.as_secs_f64());
        if let Some(f) = felkod {
            if let Some(reason) = refusal_reason(f) {
                self.refusals
                    .get_or_create(&RefusalLabels {
                        listener,
                        client: client.to_owned(),
                        reason,
                        felkod: f.as_str(),
                    })
                    .inc();
            }
            if is_validation(f) {
                self.validation_failures
                    .get_or_create(&ValidationLabels {
                        source,
                        message: operation,
                        felkod: f.as_str(),
                    })
                    .inc();
            }
        }
        self.recent
            .observe(operation, client, felkod.is_some(), took);
    }

    /// One delivery attempt to `client`'s case system (a configured name).
    pub fn delivery(&self, client: &str, outcome: &'static str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                client: client.to_owned(),
                outcome,
            })
            .inc();
    }

    /// One call to AF for `operation`, and what became of it.
    pub fn af_call(&self, operation: &'static str, felkod: Option<Felkod>, took: Duration) {
        let outcome = felkod.map(Felkod::as_str).unwrap_or("OK");
        self.af_calls
            .get_or_create(&AfCallLabels { operation, outcome })
            .inc();
        self.af_seconds
            .get_or_create(&AfLabels { operation })
            .observe(took.as_secs_f64());
        if felkod == Some(Felkod::AfOgiltigtSvar) {
            self.validation_failures
                .get_or_create(&ValidationLabels {
                    source: "af",
                    message: operation,
                    felkod: Felkod::AfOgiltigtSvar.as_str(),
                })
                .inc();
        }
    }

    /// Sets a counter that mirrors a running total kept elsewhere.
    fn mirror(counter: &Counter, total: u64) {
        let now = counter.get();
        if total > now {
            counter.inc_by(total - now);
        }
    }

    /// The audit writer's totals, at a scrape.
    pub fn audit_totals(&self, stats: &crate::store::audit::AuditStats) {
        use std::sync::atomic::Ordering::Relaxed;
        Self::mirror(&self.audit_records, stats.records.load(Relaxed));
        Self::mirror(&self.audit_commits, stats.commits.load(Relaxed));
        Self::mirror(&self.audit_commit_failures, stats.failures.load(Relaxed));
        Self::mirror(
            &self.audit_witness_failures,
            stats.witness_failures.load(Relaxed),
        );
        Self::mirror(&self.audit_pruned, stats.pruned.load(Relaxed));
        Self::mirror(
            &self.audit_prune_failures,
            stats.prune_failures.load(Relaxed),
        );
        self.audit_head.set(gauge_value(stats.head.load(Relaxed)));
        self.audit_checkpoint
            .set(gauge_value(stats.checkpoint.load(Relaxed)));
    }

    pub fn af_retries(&self, total: u64) {
        Self::mirror(&self.af_retries, total);
    }

    /// Each CRL source's state, at a scrape; a source forgotten since loses its series.
    pub fn crl_sources(&self, sources: &[crate::access::crl_fetch::SourceStatus]) {
        let mut shown = self
            .crl_sources_shown
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now: std::collections::BTreeSet<String> =
            sources.iter().map(|s| s.url.clone()).collect();
        for gone in shown.difference(&now) {
            let labels = CrlSourceLabels {
                source: gone.clone(),
            };
            self.crl_fetch_failures.remove(&labels);
            self.crl_source_ok.remove(&labels);
        }
        *shown = now;
        for s in sources {
            let labels = CrlSourceLabels {
                source: s.url.clone(),
            };
            Self::mirror(&self.crl_fetch_failures.get_or_create(&labels), s.failures);
            self.crl_source_ok
                .get_or_create(&labels)
                .set(i64::from(s.problem().is_none()));
        }
    }

    /// The span exporter's totals, at a scrape.
    pub fn telemetry_totals(&self, stats: &crate::ops::telemetry::ExportStats) {
        use std::sync::atomic::Ordering::Relaxed;
        Self::mirror(&self.telemetry_exported, stats.exported.load(Relaxed));
        Self::mirror(&self.telemetry_dropped, stats.dropped.load(Relaxed));
    }

    /// The Prometheus text exposition (version 0.0.4), which every scraper and `promtool`
    /// read.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        prometheus_text(&out)
    }
}

/// OpenMetrics text as Prometheus 0.0.4 text: a counter's HELP and TYPE name its `_total`
/// samples, and the OpenMetrics-only lines (`# EOF`, `# UNIT`) go.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 256);
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{prefix}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The class of an outcome, for alerting: the caller's fault, brygga's, or AF's.
pub fn class(felkod: Option<Felkod>) -> &'static str {
    match felkod {
        None => "ok",
        Some(f) if f.kalla() == Kalla::Af => "af",
        Some(f) if f.is_client_fault() => "klient",
        Some(_) => "brygga",
    }
}

/// Why a request was refused before it reached AF, when it was a limit, the policy or the
/// caller's identity.
pub fn refusal_reason(f: Felkod) -> Option<&'static str> {
    use Felkod::*;
    match f {
        ForMangaForfragningar | ForMangaSamtidiga | AfKvotSlut => Some("limit"),
        FelKommun | HandlaggareMatcharEj | IngivareMatcharEj | SyfteMatcharEj
        | OperationEjTillaten | SyfteEjTillatet | HandlaggareEjBehorig => Some("policy"),
        KlientOkand | TokenSaknas | TokenOgiltigt | TokenFelAlgoritm | TokenOkandNyckel
        | TokenFelSignatur | TokenUtganget | TokenEjGiltigtAnnu | TokenFelUtfardare
        | TokenFelMottagare | TokenSaknarAnsprak | TokenForLangLivstid | TokenAteranvant
        | TokenFelCertifikat => Some("identity"),
        _ => None,
    }
}

/// Whether the request broke the contract (its XML, its fields, its size or media type).
pub fn is_validation(f: Felkod) -> bool {
    use Felkod::*;
    matches!(
        f,
        FelMediatyp
            | ForStorBegaran
            | OgiltigXml
            | OtillatenXml
            | XmlForDjup
            | XmlForMangaElement
            | XmlForLangText
            | XmlForStoraAttribut
            | InteSoap
            | OkandOperation
            | FaltSaknas
            | OgiltigtFalt
            | OvantatElement
    )
}

/// Seconds from now until `not_after` (negative once past).
fn seconds_until(unix: i64) -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    unix as f64 - now
}

/// One certificate or CRL and how long it has left.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Expiry {
    pub name: String,
    pub kind: &'static str,
    /// The subject (a certificate) or issuer (a CRL): organisation names, not people.
    pub subject: String,
    pub seconds_left: f64,
}

impl Expiry {
    pub fn days_left(&self) -> f64 {
        self.seconds_left / 86_400.0
    }
}

/// Every certificate in `certificates`, and the next update of every CRL in `crls` (the
/// `kommun` listener's client CRLs), soonest first.
pub fn expiries(
    certificates: &[crate::config::NamedCertificate],
    crls: &[crate::access::trust::NamedCrl],
) -> Vec<Expiry> {
    let mut out: Vec<Expiry> = certificates
        .iter()
        .filter_map(|c| {
            let (_, cert) = x509_parser::parse_x509_certificate(c.der.as_ref()).ok()?;
            Some(Expiry {
                name: c.name.clone(),
                kind: "certificate",
                // A person-bound certificate can carry an identity number in its subject.
                subject: crate::model::ident::mask_identity_numbers(&cert.subject().to_string()),
                seconds_left: seconds_until(cert.validity().not_after.timestamp()),
            })
        })
        .collect();
    for crl in crls {
        let Ok((_, parsed)) = x509_parser::parse_x509_crl(crl.der.as_ref()) else {
            continue;
        };
        // A CRL without a next update never goes stale by its own account.
        let Some(next) = parsed.next_update() else {
            continue;
        };
        out.push(Expiry {
            name: crl.name.clone(),
            kind: "crl",
            subject: crate::model::ident::mask_identity_numbers(&parsed.issuer().to_string()),
            seconds_left: seconds_until(next.timestamp()),
        });
    }
    out.sort_by(|a, b| a.seconds_left.total_cmp(&b.seconds_left));
    out
}

/// The status page's window: 30 slots of 10 s.
const SLOT_SECONDS: u64 = 10;
const SLOTS: usize = 30;
/// Upper bounds (ms) of the latency buckets the window keeps; the last is everything above.
const BOUNDS_MS: [f64; 18] = [
    1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 200.0, 500.0, 1000.0,
    2000.0, 5000.0, 30000.0,
];

#[derive(Clone, Copy, Default)]
struct Slot {
    /// Which 10 s of the epoch this slot counts; an older one is reset before use.
    epoch: u64,
    requests: u32,
    errors: u32,
    latency: [u32; BOUNDS_MS.len() + 1],
}

/// Requests, errors and latency per operation and client over the last five minutes.
pub struct Recent {
    by_client: Mutex<HashMap<String, HashMap<&'static str, [Slot; SLOTS]>>>,
    /// When counting began (seconds since the epoch): a younger gateway's rates are over
    /// the time it has run, not the whole window.
    started: u64,
}

impl Default for Recent {
    fn default() -> Self {
        Self::starting_at(now_secs())
    }
}

/// One row of the status page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecentRow {
    pub operation: &'static str,
    pub client: String,
    pub requests: u64,
    pub per_second: f64,
    pub error_rate: f64,
    /// The upper bound of the bucket holding the 99th percentile.
    pub p99_ms: f64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Recent {
    fn starting_at(started: u64) -> Self {
        Self {
            by_client: Mutex::default(),
            started,
        }
    }

    pub fn observe(&self, operation: &'static str, client: &str, error: bool, took: Duration) {
        self.observe_at(operation, client, error, took, now_secs());
    }

    fn observe_at(
        &self,
        operation: &'static str,
        client: &str,
        error: bool,
        took: Duration,
        now: u64,
    ) {
        let epoch = now / SLOT_SECONDS;
        let ms = took.as_secs_f64() * 1000.0;
        let bucket = BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(BOUNDS_MS.len());
        let mut all = self.by_client.lock().unwrap_or_else(|p| p.into_inner());
        let ops = match all.get_mut(client) {
            Some(ops) => ops,
            None => all.entry(client.to_owned()).or_default(),
        };
        let slots = ops
            .entry(operation)
            .or_insert_with(|| [Slot::default(); SLOTS]);
        let slot = &mut slots[(epoch % SLOTS as u64) as usize];
        if slot.epoch != epoch {
            *slot = Slot {
                epoch,
                ..Slot::default()
            };
        }
        slot.requests += 1;
        slot.errors += u32::from(error);
        slot.latency[bucket] += 1;
    }

    /// The last five minutes, per client and operation.
    pub fn rows(&self) -> Vec<RecentRow> {
        self.rows_at(now_secs())
    }

    fn rows_at(&self, now: u64) -> Vec<RecentRow> {
        let current = now / SLOT_SECONDS;
        let oldest = current.saturating_sub(SLOTS as u64 - 1);
        // The same span for every row: the window (the current slot partly over), or the
        // time since counting began when that is shorter.
        let window = (SLOTS as u64 - 1) * SLOT_SECONDS + now % SLOT_SECONDS + 1;
        let seconds = window.min(now.saturating_sub(self.started) + 1) as f64;
        let all = self.by_client.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows = Vec::new();
        for (client, ops) in all.iter() {
            for (operation, slots) in ops {
                let live = slots
                    .iter()
                    .filter(|s| (oldest..=current).contains(&s.epoch));
                let (mut requests, mut errors) = (0u64, 0u64);
                let mut latency = [0u64; BOUNDS_MS.len() + 1];
                for s in live {
                    requests += u64::from(s.requests);
                    errors += u64::from(s.errors);
                    for (sum, n) in latency.iter_mut().zip(s.latency) {
                        *sum += u64::from(n);
                    }
                }
                if requests == 0 {
                    continue;
                }
                let rank = (requests as f64 * 0.99).ceil() as u64;
                let mut seen = 0;
                let mut p99_ms = f64::INFINITY;
                for (i, n) in latency.iter().enumerate() {
                    seen += n;
                    if seen >= rank {
                        p99_ms = BOUNDS_MS.get(i).copied().unwrap_or(f64::INFINITY);
                        break;
                    }
                }
                rows.push(RecentRow {
                    operation,
                    client: client.clone(),
                    requests,
                    per_second: requests as f64 / seconds,
                    error_rate: errors as f64 / requests as f64,
                    p99_ms,
                });
            }
        }
        rows.sort_by(|a, b| (a.operation, &a.client).cmp(&(b.operation, &b.client)));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_counts_the_last_five_minutes_only() {
        let t = 1_000_000;
        let r = Recent::starting_at(t);
        for i in 0..99 {
            r.observe_at(
                "Ping",
                "stockholm",
                false,
                Duration::from_millis(2),
                t + i % 5,
            );
        }
        r.observe_at("Ping", "stockholm", true, Duration::from_millis(400), t + 3);
        // Six minutes earlier: outside the window.
        r.observe_at("Ping", "stockholm", true, Duration::from_secs(9), t - 360);
        let rows = r.rows_at(t + 5);
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.requests, 100);
        assert!((row.error_rate - 0.01).abs() < 1e-9, "{row:?}");
        // 100 requests in the 6 s since counting began (t .. t + 5).
        assert!((row.per_second - 100.0 / 6.0).abs() < 1e-9, "{row:?}");
        // Long after the start, the rate is over the whole window.
        let old = Recent::starting_at(t - 10_000);
        old.observe_at("Ping", "goteborg", false, Duration::from_millis(1), t + 5);
        let old_row = &old.rows_at(t + 5)[0];
        assert!(
            (old_row.per_second - 1.0 / 296.0).abs() < 1e-9,
            "{old_row:?}"
        );
        // 99 of 100 are within 2 ms: the 99th percentile is in that bucket.
        assert_eq!(row.p99_ms, 2.0);
        r.observe_at(
            "Ping",
            "stockholm",
            false,
            Duration::from_millis(450),
            t + 4,
        );
        assert_eq!(r.rows_at(t + 5)[0].p99_ms, 500.0);
        // Five minutes later, all of it has left the window.
        assert!(r.rows_at(t + 5 + 300).is_empty());
    }

    #[test]
    fn classes_and_reasons() {
        assert_eq!(class(None), "ok");
        assert_eq!(class(Some(Felkod::AfTidsgrans)), "af");
        assert_eq!(class(Some(Felkod::OgiltigtFalt)), "klient");
        assert_eq!(class(Some(Felkod::LoggningMisslyckades)), "brygga");
        assert_eq!(refusal_reason(Felkod::AfKvotSlut), Some("limit"));
        assert_eq!(refusal_reason(Felkod::SyfteEjTillatet), Some("policy"));
        assert_eq!(refusal_reason(Felkod::TokenUtganget), Some("identity"));
        assert_eq!(refusal_reason(Felkod::AfFel), None);
    }
}
