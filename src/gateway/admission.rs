//! Who may hold a place on a TLS listener before proving who they are. A connection still in
//! its handshake has no identity yet, so it must not use up what identified clients need: it
//! holds one of a listener's few handshake places (the oldest gives way when they are all
//! taken), one of its source address's (IPv4 address, IPv6 /64), and each address opens only
//! so many connections a second. A connection takes a place of `limits.max_connections`
//! only once its client certificate is verified.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use governor::clock::DefaultClock;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use tokio::sync::Notify;

/// A source as limits see it: an IPv4 address, or an IPv6 /64 (what one host or site is
/// usually given, so a host cannot escape the limit by using many of its addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Source::V4(a.octets()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => {
                    let o = a.octets();
                    Source::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                }
            },
        }
    }
}

/// Why a new connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its address already has `per_address` handshakes under way.
    AddressBusy,
    /// Its address opens connections faster than `rate_per_address`.
    AddressRate,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::AddressBusy => "address_handshakes",
            Refused::AddressRate => "address_rate",
        }
    }
}

/// The bounds of one listener's handshakes.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeLimits {
    /// Handshakes under way at once on the listener; when all are taken, the oldest is closed
    /// to make room, so a flood can slow new clients down but not lock them out.
    pub max: usize,
    /// Handshakes under way at once from one source.
    pub per_address: usize,
    /// New connections a second from one source, and the burst; none: unlimited.
    pub rate_per_address: Option<Quota>,
}

type PerSource = RateLimiter<Source, HashMapStateStore<Source>, DefaultClock>;

#[derive(Default)]
struct State {
    next: u64,
    /// Handshakes under way, oldest first, each with the signal that closes it.
    under_way: BTreeMap<u64, Arc<Notify>>,
    per_source: HashMap<Source, usize>,
    admitted: u64,
}

/// The handshake places of one listener.
pub struct Admission {
    limits: HandshakeLimits,
    state: Mutex<State>,
    rate: Option<PerSource>,
}

/// A handshake place, given back when dropped. `evicted` fires when an older place had to
/// make room for a newer connection: the handshake is then abandoned.
pub struct Place {
    admission: Arc<Admission>,
    id: u64,
    source: Source,
    pub evicted: Arc<Notify>,
}

impl Admission {
    pub fn new(limits: HandshakeLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            state: Mutex::new(State::default()),
            rate: limits.rate_per_address.map(RateLimiter::hashmap),
        })
    }

    /// A place for a new connection from `ip`, or why there is none. When every place is
    /// taken, the oldest handshake is told to give way (the second value: whether one was).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<(Place, bool), Refused> {
        let source = Source::from(ip);
        if let Some(rate) = &self.rate
            && rate.check_key(&source).is_err()
        {
            return Err(Refused::AddressRate);
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let busy = state.per_source.get(&source).copied().unwrap_or(0);
        if busy >= self.limits.per_address {
            return Err(Refused::AddressBusy);
        }
        let mut evicted_one = false;
        while state.under_way.len() >= self.limits.max.max(1) {
            match state.under_way.pop_first() {
                Some((_, oldest)) => {
                    oldest.notify_one();
                    evicted_one = true;
                }
                None => break,
            }
        }
        let id = state.next;
        state.next += 1;
        let evicted = Arc::new(Notify::new());
        state.under_way.insert(id, evicted.clone());
        *state.per_source.entry(source).or_insert(0) += 1;
        state.admitted += 1;
        // The per-source rate table keeps an entry per address seen: forget idle ones now
        // and then, so addresses that came once do not pile up.
        if state.admitted.is_multiple_of(4096)
            && let Some(rate) = &self.rate
        {
            rate.retain_recent();
        }
        Ok((
            Place {
                admission: self.clone(),
                id,
                source,
                evicted,
            },
            evicted_one,
        ))
    }

    /// Handshakes under way now.
    pub fn under_way(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .under_way
            .len()
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut state = self
            .admission
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        state.under_way.remove(&self.id);
        if let Some(n) = state.per_source.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.per_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn one_address_holds_at_most_its_share() {
        let a = Admission::new(HandshakeLimits {
            max: 100,
            per_address: 3,
            rate_per_address: None,
        });
        let held: Vec<_> = (0..3).map(|_| a.admit(v4(1)).unwrap().0).collect();
        assert_eq!(a.admit(v4(1)).err(), Some(Refused::AddressBusy));
        // Another address is not affected; a place given back is free again.
        let _other = a.admit(v4(2)).unwrap();
        drop(held);
        assert!(a.admit(v4(1)).is_ok());
    }

    #[test]
    fn when_all_places_are_taken_the_oldest_gives_way() {
        let a = Admission::new(HandshakeLimits {
            max: 2,
            per_address: 10,
            rate_per_address: None,
        });
        let (first, _) = a.admit(v4(1)).unwrap();
        let (_second, evicted) = a.admit(v4(2)).unwrap();
        assert!(!evicted);
        let (_third, evicted) = a.admit(v4(3)).unwrap();
        assert!(evicted);
        assert_eq!(a.under_way(), 2);
        // The first was told: its signal is stored until it waits for it.
        let told = first.evicted.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), told.notified())
                .await
                .expect("the oldest was told to give way");
        });
        // Its address's share comes back when it goes.
        drop(first);
        assert_eq!(a.under_way(), 2);
    }

    #[test]
    fn an_address_opens_only_so_many_connections_a_second() {
        let a = Admission::new(HandshakeLimits {
            max: 1000,
            per_address: 1000,
            rate_per_address: Some(
                Quota::per_second(std::num::NonZeroU32::new(1).unwrap())
                    .allow_burst(std::num::NonZeroU32::new(5).unwrap()),
            ),
        });
        let held: Vec<_> = (0..5).map(|_| a.admit(v4(1)).unwrap()).collect();
        assert_eq!(a.admit(v4(1)).err(), Some(Refused::AddressRate));
        assert!(a.admit(v4(2)).is_ok());
        drop(held);
    }

    #[test]
    fn ipv6_is_limited_by_its_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse::<Ipv6Addr>().unwrap().into();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse::<Ipv6Addr>().unwrap().into();
        let c: IpAddr = "2001:db8:1:3::1".parse::<Ipv6Addr>().unwrap().into();
        assert_eq!(Source::from(a), Source::from(b));
        assert_ne!(Source::from(a), Source::from(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().into();
        assert_eq!(Source::from(mapped), Source::from(v4(1)));
    }
}
