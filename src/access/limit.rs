//! Limits on what one client, one operation and all clients together may ask: requests per
//! second with a burst (governor's GCRA, per authenticated client), requests under way at once
//! per client, and a quota towards AF shared by everyone. Generic over the clock, so tests
//! step time by hand.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use governor::RateLimiter;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Config;
use crate::error::{Failure, Felkod};
use crate::model::Operation;

pub use crate::config::{Configured, Rate};

type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

struct ClientLimits<C: Clock> {
    /// The limiter and its rate per second, for the message.
    all: (Direct<C>, u32),
    per_operation: HashMap<Operation, (Direct<C>, u32)>,
    under_way: Arc<Semaphore>,
    max_concurrent: usize,
}

/// Why a request was held back, and when to come again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Limited {
    #[error("this client sends more than {0} requests per second; wait before sending again")]
    Client(u32, Duration),
    #[error("this client sends {op} more than {1} times per second; wait before sending it again", op = .0.name())]
    Operation(Operation, u32, Duration),
    #[error(
        "this client has {0} requests under way already; wait for an answer before sending more"
    )]
    Concurrent(usize),
    #[error(
        "the quota towards Arbetsförmedlingen, shared by all municipalities, is used up for now"
    )]
    Af(Duration),
}

impl Limited {
    /// Seconds for `Retry-After`: when the limiter lets the next one through, rounded up.
    pub fn retry_after(&self) -> u64 {
        let wait = match self {
            Limited::Client(_, d) | Limited::Operation(_, _, d) | Limited::Af(d) => *d,
            Limited::Concurrent(_) => Duration::from_secs(1),
        };
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
    }
}

/// Every limit of a running gateway.
pub struct Limiter<C: Clock + Clone = DefaultClock> {
    clock: C,
    clients: HashMap<String, ClientLimits<C>>,
    af: Option<(Direct<C>, u32)>,
}

impl Limiter<DefaultClock> {
    /// The configured limits, or none when `limits.enforce_rate_limits` is off.
    pub fn new(config: &Config) -> Self {
        if config.limits.enforce_rate_limits {
            Self::with_clock(config, DefaultClock::default())
        } else {
            tracing::warn!(
                "limits.enforce_rate_limits = false: no rate, concurrency or AF-quota limits hold"
            );
            Self::from_rules(Vec::new(), None, DefaultClock::default())
        }
    }
}

impl<C: Clock + Clone> Limiter<C> {
    /// The limits of `config`, measured with `clock`.
    pub fn with_clock(config: &Config, clock: C) -> Self {
        let clients = config
            .clients
            .iter()
            .map(|c| ClientRule {
                name: c.name.clone(),
                rate: c.rate,
                per_operation: c.rate_per_operation.clone(),
                max_concurrent: c.max_concurrent,
            })
            .collect();
        Self::from_rules(clients, config.af_rate, clock)
    }

    /// The limits of each client and the shared quota towards AF.
    pub fn from_rules(clients: Vec<ClientRule>, af: Option<Configured>, clock: C) -> Self {
        let direct = |c: Configured| {
            (
                RateLimiter::direct_with_clock(c.quota, clock.clone()),
                c.rate.per_second,
            )
        };
        let clients = clients
            .into_iter()
            .map(|c| {
                let limits = ClientLimits {
                    all: direct(c.rate),
                    per_operation: c
                        .per_operation
                        .into_iter()
                        .map(|(op, r)| (op, direct(r)))
                        .collect(),
                    under_way: Arc::new(Semaphore::new(c.max_concurrent)),
                    max_concurrent: c.max_concurrent,
                };
                (c.name, limits)
            })
            .collect();
        let af = af.map(direct);
        Self { clock, clients, af }
    }

    fn wait<T>(
        &self,
        result: Result<(), governor::NotUntil<C::Instant>>,
        f: impl FnOnce(Duration) -> T,
    ) -> Result<(), T> {
        result.map_err(|not_until| f(not_until.wait_time_from(self.clock.now())))
    }

    /// A request of `client`: within its rate, and a place among its requests under way (held
    /// until the permit is dropped). An unknown client is not limited here (identity refuses
    /// it before).
    pub fn admit(&self, client: &str) -> Result<Option<OwnedSemaphorePermit>, Limited> {
        let Some(c) = self.clients.get(client) else {
            return Ok(None);
        };
        let (all, rate) = &c.all;
        self.wait(all.check(), |d| Limited::Client(*rate, d))?;
        c.under_way
            .clone()
            .try_acquire_owned()
            .map(Some)
            .map_err(|_| Limited::Concurrent(c.max_concurrent))
    }

    /// The operation's own rate for this client, when it has one.
    pub fn admit_operation(&self, client: &str, op: Operation) -> Result<(), Limited> {
        match self
            .clients
            .get(client)
            .and_then(|c| c.per_operation.get(&op))
        {
            Some((l, rate)) => self.wait(l.check(), |d| Limited::Operation(op, *rate, d)),
            None => Ok(()),
        }
    }

    /// One call towards AF, within the shared quota.
    pub fn admit_af(&self) -> Result<(), Limited> {
        match &self.af {
            Some((l, _)) => self.wait(l.check(), Limited::Af),
            None => Ok(()),
        }
    }
}

/// One client's limits.
pub struct ClientRule {
    pub name: String,
    pub rate: Configured,
    pub per_operation: HashMap<Operation, Configured>,
    pub max_concurrent: usize,
}

/// What the caller is told: the Felkod and the message of a SOAP Fault.
impl From<Limited> for Failure {
    fn from(l: Limited) -> Self {
        let felkod = match l {
            Limited::Client(..) | Limited::Operation(..) => Felkod::ForMangaForfragningar,
            Limited::Concurrent(_) => Felkod::ForMangaSamtidiga,
            Limited::Af(_) => Felkod::AfKvotSlut,
        };
        Failure {
            retry_after: Some(l.retry_after()),
            ..Failure::new(felkod, l.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn rate(per_second: u32, burst: u32) -> Configured {
        let rate = Rate { per_second, burst };
        Configured {
            rate,
            quota: rate.quota().unwrap(),
        }
    }

    fn limiter(clock: &FakeRelativeClock) -> Limiter<FakeRelativeClock> {
        let client = |name: &str, r, max_concurrent| ClientRule {
            name: name.into(),
            rate: r,
            per_operation: HashMap::from([(Operation::AnmalAktivitetsplan, rate(1, 2))]),
            max_concurrent,
        };
        Limiter::from_rules(
            vec![client("a", rate(10, 5), 2), client("b", rate(10, 5), 100)],
            Some(rate(4, 8)),
            clock.clone(),
        )
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_for_its_rate() {
        let clock = FakeRelativeClock::default();
        let l = limiter(&clock);
        for _ in 0..5 {
            drop(l.admit("b").unwrap());
        }
        let refused = l.admit("b").unwrap_err();
        assert_eq!(refused, Limited::Client(10, Duration::from_millis(100)));
        assert_eq!(refused.retry_after(), 1);
        // Another client is not affected.
        drop(l.admit("a").unwrap());
        // A tenth of a second later, one more.
        clock.advance(Duration::from_millis(100));
        drop(l.admit("b").unwrap());
        assert!(l.admit("b").is_err());
        // An unknown client is not this module's business.
        assert!(l.admit("nobody").unwrap().is_none());
    }

    #[test]
    fn an_operation_can_be_narrower() {
        let clock = FakeRelativeClock::default();
        let l = limiter(&clock);
        let op = Operation::AnmalAktivitetsplan;
        l.admit_operation("a", op).unwrap();
        l.admit_operation("a", op).unwrap();
        let refused = l.admit_operation("a", op).unwrap_err();
        assert!(
            matches!(refused, Limited::Operation(o, 1, d) if o == op && d == Duration::from_secs(1))
        );
        // Other operations have no rate of their own.
        for _ in 0..100 {
            l.admit_operation("a", Operation::HamtaArbetssokandeStatus)
                .unwrap();
        }
    }

    #[test]
    fn requests_under_way_are_counted_until_their_place_is_released() {
        let clock = FakeRelativeClock::default();
        let l = limiter(&clock);
        let first = l.admit("a").unwrap();
        let second = l.admit("a").unwrap();
        assert_eq!(l.admit("a").unwrap_err(), Limited::Concurrent(2));
        drop(first);
        let third = l.admit("a").unwrap();
        drop((second, third));
    }

    #[test]
    fn the_quota_towards_af_is_shared() {
        let clock = FakeRelativeClock::default();
        let l = limiter(&clock);
        for _ in 0..8 {
            l.admit_af().unwrap();
        }
        let refused = l.admit_af().unwrap_err();
        assert_eq!(refused, Limited::Af(Duration::from_millis(250)));
        assert_eq!(refused.retry_after(), 1);
        clock.advance(Duration::from_secs(1));
        for _ in 0..4 {
            l.admit_af().unwrap();
        }
        assert!(l.admit_af().is_err());
    }
}
