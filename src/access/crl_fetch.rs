//! CRLs brygga fetches itself: from the URLs the configuration lists, the distribution points
//! an edge's CA certificates name, and those its peers' verified certificates name (learned).
//! Each is fetched with a deadline and a size limit, checked (see [`crate::access::crl`]: readable by
//! WebPKI, not from the future, signed by a CA of the edge or an intermediate verified up to
//! one, not older than the one held), kept until a better one comes, and fetched again halfway
//! to its next update or every `revocation.refresh`, whichever is sooner. A failed fetch keeps
//! the last good CRL and is tried again after `revocation.retry` (sooner while that CRL nears
//! its next update); once that CRL is past its next update, the certificates of its CA are
//! refused (fail closed), and `/readyz` says so for configured and CA-named sources. A learned
//! source never decides readiness, at most [`MAX_LEARNED`] are held, and one that no verified
//! certificate has named for `revocation.forget_unused_after` is forgotten. A new CRL wakes
//! the gateway's reload, which also re-verifies the connections already open.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use tokio::sync::{Notify, watch};

use crate::access::crl::Issued;

pub use crate::config::RevocationSettings;

/// At most this many sources learned from peers' certificates are held; configured and
/// CA-named sources always have their place besides.
pub const MAX_LEARNED: usize = 64;

/// At most this many intermediate CAs are remembered per edge as CRL signers.
pub const MAX_INTERMEDIATES: usize = 16;

/// The shortest wait between two fetches of one source.
const MIN_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Held {
    der: CertificateRevocationListDer<'static>,
    issued: Issued,
}

#[derive(Debug)]
struct Source {
    /// The edges that want it.
    edges: BTreeSet<String>,
    /// The CAs one of which must have signed it (besides the intermediates its edges know).
    issuers: Vec<CertificateDer<'static>>,
    held: Option<Held>,
    failures: u64,
    last_error: Option<String>,
    last_success: Option<SystemTime>,
    due: Instant,
    /// Learned from a peer's certificate, not configured nor named by a CA of an edge.
    learned: bool,
    /// When a verified certificate last named it (what keeps a learned source).
    last_used: Instant,
}

#[derive(Debug, Default)]
struct State {
    sources: BTreeMap<String, Source>,
    /// Per edge, the intermediate CAs seen in its peers' chains and verified up to its CAs:
    /// they may sign CRLs too.
    intermediates: BTreeMap<String, Vec<CertificateDer<'static>>>,
}

impl State {
    fn learned(&self) -> usize {
        self.sources.values().filter(|s| s.learned).count()
    }

    /// Who may have signed `source`'s CRL.
    fn signers(&self, source: &Source) -> Vec<CertificateDer<'static>> {
        let mut out = source.issuers.clone();
        for edge in &source.edges {
            for i in self.intermediates.get(edge).into_iter().flatten() {
                if !out.contains(i) {
                    out.push(i.clone());
                }
            }
        }
        out
    }
}

/// What operators see of one source (`/metrics`, `/readyz`, the status page).
#[derive(Debug, Clone)]
pub struct SourceStatus {
    pub url: String,
    pub edges: Vec<String>,
    pub held: bool,
    /// Seconds until the held CRL's next update (negative: past it).
    pub next_update_in: Option<f64>,
    pub failures: u64,
    pub last_error: Option<String>,
    pub last_success: Option<SystemTime>,
    /// Learned from a peer's certificate: its problems do not make brygga unready.
    pub learned: bool,
}
impl SourceStatus {
    /// Why certificates of this source's CA are refused now, if they are.
    pub fn problem(&self) -> Option<String> {
        if !self.held {
            return Some(format!(
                "{}: no CRL fetched yet{}",
                self.url,
                self.last_error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
        }
        match self.next_update_in {
            Some(s) if s < 0.0 => Some(format!(
                "{}: the CRL held is past its next update and no newer one could be fetched{}",
                self.url,
                self.last_error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            )),
            _ => None,
        }
    }
}

/// The CRLs fetched from URLs, shared by every edge, and the newest CRL of each issuer every
/// edge has taken.
#[derive(Debug)]
pub struct CrlFetcher {
    settings: RevocationSettings,
    state: Mutex<State>,
    /// Whether any learned source is held (a verified handshake then says which it used).
    any_learned: AtomicBool,
    /// A new source is wanted.
    wake: Notify,
    /// A CRL changed, or a learned one was forgotten: the gateway reloads.
    pub changed: Notify,
    /// What each edge has taken: an older CRL never replaces it.
    pub taken: crate::access::crl::History,
}

impl CrlFetcher {
    pub fn new(settings: RevocationSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            state: Mutex::new(State::default()),
            any_learned: AtomicBool::new(false),
            wake: Notify::new(),
            changed: Notify::new(),
            taken: crate::access::crl::History::default(),
        })
    }

    pub fn follows_distribution_points(&self) -> bool {
        self.settings.follow_distribution_points
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for `url` on behalf of `edge`, whose CAs may have signed it: a URL the
    /// configuration lists or a CA of the edge names. True when it was not wanted before (its
    /// first fetch is then due at once).
    pub fn want(&self, url: &str, edge: &str, issuers: &[CertificateDer<'static>]) -> bool {
        self.add(url, edge, issuers, false)
    }

    /// Asks for `url`, a distribution point a peer's verified certificate names, on behalf of
    /// `edge`. True when it was not wanted before. When [`MAX_LEARNED`] are held already, the
    /// learned source unused longest that holds no CRL makes room; if every one holds a CRL,
    /// `url` is not fetched.
    pub fn learn(&self, url: &str, edge: &str, issuers: &[CertificateDer<'static>]) -> bool {
        self.add(url, edge, issuers, true)
    }

    fn add(
        &self,
        url: &str,
        edge: &str,
        issuers: &[CertificateDer<'static>],
        learned: bool,
    ) -> bool {
        let mut state = self.lock();
        if let Some(s) = state.sources.get_mut(url) {
            s.edges.insert(edge.to_owned());
            for i in issuers {
                if !s.issuers.contains(i) {
                    s.issuers.push(i.clone());
                }
            }
            // Configured wins: it then decides readiness and is never forgotten.
            s.learned &= learned;
            s.last_used = Instant::now();
            return false;
        }
        if learned && state.learned() >= MAX_LEARNED {
            let dead = state
                .sources
                .iter()
                .filter(|(_, s)| s.learned && s.held.is_none())
                .min_by_key(|(_, s)| s.last_used)
                .map(|(u, _)| u.clone());
            match dead {
                Some(dead) => {
                    tracing::info!(url = %dead, "a learned CRL source that never answered makes room for another");
                    state.sources.remove(&dead);
                }
                None => {
                    tracing::warn!(
                        url,
                        max = MAX_LEARNED,
                        "too many learned CRL sources; this one is not fetched"
                    );
                    return false;
                }
            }
        }
        let now = Instant::now();
        state.sources.insert(
            url.to_owned(),
            Source {
                edges: BTreeSet::from([edge.to_owned()]),
                issuers: issuers.to_vec(),
                held: None,
                failures: 0,
                last_error: None,
                last_success: None,
                due: now,
                learned,
                last_used: now,
            },
        );
        self.any_learned
            .store(state.learned() > 0, Ordering::Relaxed);
        drop(state);
        self.wake.notify_one();
        true
    }

    /// Remembers intermediate CAs verified up to `edge`'s CAs as signers of its CRLs; the
    /// sources of `edge` that hold nothing, or failed last, are fetched again at once.
    pub fn know(&self, edge: &str, intermediates: Vec<CertificateDer<'static>>) {
        let mut state = self.lock();
        let known = state.intermediates.entry(edge.to_owned()).or_default();
        let mut new = false;
        for i in intermediates {
            if !known.contains(&i) {
                known.push(i);
                new = true;
            }
        }
        if !new {
            return;
        }
        let excess = known.len().saturating_sub(MAX_INTERMEDIATES);
        known.drain(..excess);
        let now = Instant::now();
        for s in state.sources.values_mut() {
            if s.edges.contains(edge) && (s.held.is_none() || s.last_error.is_some()) {
                s.due = now;
            }
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Whether any learned source is held: only then does a verified handshake say which
    /// distribution points it used.
    pub fn learns(&self) -> bool {
        self.any_learned.load(Ordering::Relaxed)
    }

    /// A verified certificate named these distribution points: the learned ones stay.
    pub fn touch(&self, urls: &[String]) {
        let mut state = self.lock();
        let now = Instant::now();
        for url in urls {
            if let Some(s) = state.sources.get_mut(url) {
                s.last_used = now;
            }
        }
    }

    /// Forgets the learned sources no verified certificate named for
    /// `revocation.forget_unused_after`; true when one of them held a CRL.
    fn forget_unused(&self) -> bool {
        let mut state = self.lock();
        let forget = self.settings.forget_unused_after;
        let mut dropped_crl = false;
        state.sources.retain(|url, s| {
            let keep = !s.learned || s.last_used.elapsed() < forget;
            if !keep {
                tracing::info!(url, "a learned CRL source no verified certificate named for revocation.forget_unused_after is forgotten");
                dropped_crl |= s.held.is_some();
            }
            keep
        });
        self.any_learned
            .store(state.learned() > 0, Ordering::Relaxed);
        dropped_crl
    }

    /// The CRLs held for the sources `edge` wants, by URL.
    pub fn held_for(&self, edge: &str) -> Vec<(String, CertificateRevocationListDer<'static>)> {
        self.lock()
            .sources
            .iter()
            .filter(|(_, s)| s.edges.contains(edge))
            .filter_map(|(u, s)| Some((u.clone(), s.held.as_ref()?.der.clone())))
            .collect()
    }

    /// Fetches what is due now, without waiting for the next round (a refused handshake
    /// needs a CRL not held yet).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Every source as operators see it.
    pub fn status(&self) -> Vec<SourceStatus> {
        let now = crate::access::crl::now_secs();
        self.lock()
            .sources
            .iter()
            .map(|(url, s)| SourceStatus {
                url: url.clone(),
                edges: s.edges.iter().cloned().collect(),
                held: s.held.is_some(),
                next_update_in: s.held.as_ref().map(|h| (h.issued.next_update - now) as f64),
                failures: s.failures,
                last_error: s.last_error.clone(),
                last_success: s.last_success,
                learned: s.learned,
            })
            .collect()
    }

    /// Fetches every source that is due now, all at once: one that hangs until
    /// `revocation.timeout` holds no other back.
    pub async fn fetch_due(self: &Arc<Self>) {
        let due: Vec<(String, Vec<CertificateDer<'static>>)> = {
            let now = Instant::now();
            let state = self.lock();
            state
                .sources
                .iter()
                .filter(|(_, s)| s.due <= now)
                .map(|(u, s)| (u.clone(), state.signers(s)))
                .collect()
        };
        let mut fetches = tokio::task::JoinSet::new();
        for (url, signers) in due {
            let me = self.clone();
            fetches.spawn(async move {
                let fetched = me.fetch(&url, &signers).await;
                me.settle(&url, fetched);
            });
        }
        while fetches.join_next().await.is_some() {}
    }

    /// Fetches what is due until `shutdown`; a fetch of every wanted source is due at once.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if self.forget_unused() {
                self.changed.notify_one();
            }
            self.fetch_due().await;
            let next = {
                let state = self.lock();
                let forget = self.settings.forget_unused_after;
                state
                    .sources
                    .values()
                    .map(|s| s.due)
                    .chain(
                        state
                            .sources
                            .values()
                            .filter(|s| s.learned)
                            .map(|s| s.last_used + forget),
                    )
                    .min()
                    .unwrap_or_else(|| Instant::now() + self.settings.refresh)
            };
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(next.into()) => {}
            }
        }
    }

    /// Keeps a fetched CRL (or the failure) and says when to fetch again.
    fn settle(&self, url: &str, fetched: Result<Held, String>) {
        let mut changed = false;
        {
            let mut state = self.lock();
            let Some(s) = state.sources.get_mut(url) else {
                return;
            };
            let failed = match fetched {
                Ok(new) => match &s.held {
                    Some(old) if new.issued.older_than(&old.issued) => Err(
                        "the CRL served is older than the one held; the held one stays".to_owned(),
                    ),
                    Some(old) if old.der == new.der => Ok(()),
                    _ => {
                        changed = true;
                        s.held = Some(new);
                        Ok(())
                    }
                },
                Err(e) => Err(e),
            };
            match failed {
                Ok(()) => {
                    s.last_error = None;
                    s.last_success = Some(SystemTime::now());
                }
                Err(e) => {
                    tracing::warn!(url, error = %e, "a CRL could not be fetched, or was refused; the last good one stays");
                    s.failures += 1;
                    s.last_error = Some(e);
                }
            }
            let remaining = s.held.as_ref().map(|h| {
                Duration::from_secs(
                    (h.issued.next_update - crate::access::crl::now_secs()).max(0) as u64,
                )
            });
            s.due = Instant::now() + next_fetch(&self.settings, remaining, s.last_error.is_some());
        }
        if changed {
            tracing::info!(url, "a new CRL was fetched");
            self.changed.notify_one();
        }
    }

    async fn fetch(&self, url: &str, signers: &[CertificateDer<'static>]) -> Result<Held, String> {
        let tls = crate::access::tls::client_config(signers, None).map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.settings.timeout)
            .connect_timeout(self.settings.timeout)
            .build()
            .map_err(|e| e.to_string())?;
        let mut response = http
            .get(url)
            .send()
            .await
            .map_err(|e| crate::error::error_chain(&e))?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status().as_u16()));
        }
        let max = self.settings.max_bytes;
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(format!("larger than revocation.max_bytes ({max})"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| crate::error::error_chain(&e))?
        {
            if body.len() + chunk.len() > max {
                return Err(format!("larger than revocation.max_bytes ({max})"));
            }
            body.extend_from_slice(&chunk);
        }
        check(&body, signers)
    }
}

/// How long until a source is fetched again: halfway to the held CRL's next update (a CA that
/// publishes late still leaves half the time), at most `refresh` — or `retry` after a
/// failure; a CRL already past its next update, as after a failure. Never sooner than
/// [`MIN_WAIT`] unless the settings ask for it.
fn next_fetch(s: &RevocationSettings, remaining: Option<Duration>, failed: bool) -> Duration {
    let wait = if failed { s.retry } else { s.refresh };
    match remaining {
        Some(r) if r.is_zero() => s.retry,
        Some(r) => wait.min(r / 2).max(MIN_WAIT.min(wait)),
        None => wait,
    }
}

/// A CRL as served (DER, or PEM), as [`crate::access::crl::check`] takes it.
fn check(body: &[u8], signers: &[CertificateDer<'static>]) -> Result<Held, String> {
    let der = if body.starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::pem_slice_iter(body)
            .next()
            .ok_or("PEM without an X509 CRL block")?
            .map_err(|e| format!("not a CRL: {e}"))?
    } else {
        CertificateRevocationListDer::from(body.to_vec())
    };
    let crl = crate::access::crl::check(der, signers)?;
    Ok(Held {
        der: crl.der,
        issued: crl.issued,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crl_must_be_signed_by_a_ca_of_the_edge() {
        let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-example");
        let kommun_ca = crate::access::tls::load_certs(&certs.join("kommun-ca.pem")).unwrap();
        let af_ca = crate::access::tls::load_certs(&certs.join("af-ca.pem")).unwrap();
        let pem = std::fs::read(certs.join("kommun-ca.crl.pem")).unwrap();
        assert!(check(&pem, &kommun_ca).is_ok());
        let der = CertificateRevocationListDer::pem_slice_iter(&pem)
            .next()
            .unwrap()
            .unwrap();
        assert!(check(der.as_ref(), &kommun_ca).is_ok());
        assert!(
            check(&pem, &af_ca)
                .unwrap_err()
                .contains("not a CA of this edge")
        );
        // One bit changed in the signed part.
        let mut forged = der.as_ref().to_vec();
        let at = forged.len() / 2;
        forged[at] ^= 1;
        assert!(check(&forged, &kommun_ca).is_err());
        assert!(check(b"garbage", &kommun_ca).is_err());
        // A newline after the DER, as some web servers add: WebPKI would refuse it.
        let mut trailing = der.as_ref().to_vec();
        trailing.push(b'\n');
        assert!(
            check(&trailing, &kommun_ca)
                .unwrap_err()
                .contains("after the end of the CRL")
        );
    }

    #[test]
    fn a_crl_is_fetched_again_well_before_its_next_update() {
        let s = RevocationSettings::default();
        let secs = Duration::from_secs;
        // A CRL for a week: every hour. One with six seconds left: in three.
        assert_eq!(next_fetch(&s, Some(secs(7 * 86_400)), false), secs(3600));
        assert_eq!(next_fetch(&s, Some(secs(6)), false), secs(3));
        // A failure while the CRL held has ten seconds left: in five, not a minute.
        assert_eq!(next_fetch(&s, Some(secs(10)), true), secs(5));
        assert_eq!(next_fetch(&s, Some(secs(7 * 86_400)), true), secs(60));
        // Never more often than once a second; a stale CRL as after a failure.
        assert_eq!(
            next_fetch(&s, Some(Duration::from_millis(300)), false),
            secs(1)
        );
        assert_eq!(next_fetch(&s, Some(Duration::ZERO), false), secs(60));
        assert_eq!(next_fetch(&s, None, true), secs(60));
    }

    #[test]
    fn learned_sources_are_capped_and_never_crowd_out_configured_ones() {
        let fetcher = CrlFetcher::new(RevocationSettings::default());
        for i in 0..MAX_LEARNED {
            assert!(fetcher.learn(&format!("http://x/{i}"), "kommun", &[]));
        }
        // Full: a new learned source takes the place of the oldest that never answered.
        assert!(fetcher.learn("http://x/new", "kommun", &[]));
        let urls: Vec<String> = fetcher.status().into_iter().map(|s| s.url).collect();
        assert_eq!(urls.len(), MAX_LEARNED);
        assert!(!urls.contains(&"http://x/0".to_owned()));
        // A configured source always has its place, and decides readiness.
        assert!(fetcher.want("http://configured/", "kommun", &[]));
        let status = fetcher.status();
        assert_eq!(status.len(), MAX_LEARNED + 1);
        assert!(
            status
                .iter()
                .any(|s| s.url == "http://configured/" && !s.learned)
        );
        // A learned URL configured later is configured.
        fetcher.want("http://x/1", "kommun", &[]);
        assert!(
            fetcher
                .status()
                .iter()
                .any(|s| s.url == "http://x/1" && !s.learned)
        );
    }

    #[test]
    fn an_unused_learned_source_is_forgotten() {
        let fetcher = CrlFetcher::new(RevocationSettings {
            forget_unused_after: Duration::from_millis(50),
            ..RevocationSettings::default()
        });
        fetcher.learn("http://learned/", "kommun", &[]);
        fetcher.want("http://configured/", "kommun", &[]);
        assert!(fetcher.learns());
        std::thread::sleep(Duration::from_millis(80));
        fetcher.forget_unused();
        let urls: Vec<String> = fetcher.status().into_iter().map(|s| s.url).collect();
        assert_eq!(urls, vec!["http://configured/".to_owned()]);
        assert!(!fetcher.learns());
    }
}
