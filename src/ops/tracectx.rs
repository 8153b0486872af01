//! W3C Trace Context (`traceparent`): accepted from a case system, carried to AF.
//!
//! brygga is one hop: it keeps the caller's trace id and flags, and names itself with a new
//! span id. A request without a valid `traceparent` starts a trace whose id is the
//! Korrelationsid, so AF's logs, brygga's logs and the audit record share one key.

use uuid::Uuid;

/// The trace a request belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lower-case hex digits, not all zero.
    pub trace_id: String,
    /// The caller's span (16 hex digits), when it sent one.
    pub parent_id: Option<String>,
    /// Two hex digits; `01` is sampled.
    pub flags: String,
    /// The caller's `tracestate`, passed on unchanged when it is well-formed.
    pub state: Option<String>,
}

/// What brygga sends to AF of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

/// The longest `tracestate` passed on (the recommendation's limit).
const MAX_TRACESTATE: usize = 512;

/// A trace id goes into log lines and to AF: one whose digits spell an identity number (a
/// hostile caller could send one) is not used.
fn carries_no_identity_number(id: &str) -> bool {
    crate::model::ident::mask_identity_numbers(id) == id
}

fn random_trace_id() -> String {
    Uuid::new_v4().simple().to_string()
}

fn hex_of_len(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl TraceContext {
    /// A `traceparent` header as W3C Trace Context level 1 defines it, or none when it is not
    /// one (then the trace restarts, as the recommendation says: never an error).
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        // Version 00 has exactly four fields; a later version may add some after them.
        if !hex_of_len(version, 2) || version == "ff" || (version == "00" && parts.next().is_some())
        {
            return None;
        }
        if !hex_of_len(trace_id, 32) || trace_id.bytes().all(|b| b == b'0') {
            return None;
        }
        if !hex_of_len(parent_id, 16) || parent_id.bytes().all(|b| b == b'0') {
            return None;
        }
        if !hex_of_len(flags, 2) {
            return None;
        }
        if !carries_no_identity_number(trace_id) || !carries_no_identity_number(parent_id) {
            return None;
        }
        Some(Self {
            trace_id: trace_id.to_owned(),
            parent_id: Some(parent_id.to_owned()),
            state: None,
            // Only the sampled bit is defined; the rest is not passed on.
            flags: if u8::from_str_radix(flags, 16).is_ok_and(|f| f & 1 == 1) {
                "01".into()
            } else {
                "00".into()
            },
        })
    }

    /// A new trace for a request that came without one: its id is the Korrelationsid.
    pub fn start(korrelationsid: Uuid) -> Self {
        let id = korrelationsid.simple().to_string();
        Self {
            trace_id: if id.bytes().all(|b| b == b'0') || !carries_no_identity_number(&id) {
                random_trace_id()
            } else {
                id
            },
            parent_id: None,
            flags: "01".into(),
            state: None,
        }
    }

    /// The trace of a request's headers: exactly one valid `traceparent` (two or more
    /// restart the trace, as the recommendation says), with its `tracestate` (several headers
    /// joined) when that is printable ASCII of at most 512 bytes and spells no identity
    /// number; otherwise the state is dropped and the trace kept.
    pub fn from_headers(headers: &http::HeaderMap) -> Option<Self> {
        let mut parents = headers.get_all("traceparent").iter();
        let (Some(only), None) = (parents.next(), parents.next()) else {
            return None;
        };
        let mut context = Self::parse(only.to_str().ok()?)?;
        let states: Option<Vec<&str>> = headers
            .get_all("tracestate")
            .iter()
            .map(|v| v.to_str().ok())
            .collect();
        context.state = states.map(|s| s.join(",")).filter(|s| {
            !s.trim().is_empty()
                && s.len() <= MAX_TRACESTATE
                && s.bytes().all(|b| (0x20..=0x7e).contains(&b))
                && carries_no_identity_number(s)
        });
        Some(context)
    }

    /// The `traceparent` brygga sends on: this trace, naming brygga's `span_id`.
    pub fn header(&self, span_id: &str) -> String {
        format!("00-{}-{span_id}-{}", self.trace_id, self.flags)
    }

    /// What goes to AF: the `traceparent` naming `span_id`, and the caller's `tracestate`.
    pub fn outgoing(&self, span_id: &str) -> Outgoing {
        Outgoing {
            traceparent: self.header(span_id),
            tracestate: self.state.clone(),
        }
    }
}

/// A new span id: 16 hex digits, not all zero.
pub fn new_span_id() -> String {
    loop {
        let bytes = Uuid::new_v4().as_u128() as u64;
        if bytes != 0 {
            let id = format!("{bytes:016x}");
            if carries_no_identity_number(&id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_give_one_trace_and_a_clean_state() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut h = http::HeaderMap::new();
        h.append("traceparent", parent.parse().unwrap());
        h.append("tracestate", "af=1".parse().unwrap());
        h.append("tracestate", "kommun=x".parse().unwrap());
        let t = TraceContext::from_headers(&h).unwrap();
        assert_eq!(t.state.as_deref(), Some("af=1,kommun=x"));
        // A state carrying a personnummer, or too long, is dropped; the trace stays.
        for bad in ["p=198507099805", &"a".repeat(600)] {
            let mut h = http::HeaderMap::new();
            h.append("traceparent", parent.parse().unwrap());
            h.append("tracestate", bad.parse().unwrap());
            let t = TraceContext::from_headers(&h).unwrap();
            assert_eq!(t.state, None, "{bad}");
        }
        // Two traceparents: no trace.
        h.append("traceparent", parent.parse().unwrap());
        assert_eq!(TraceContext::from_headers(&h), None);
    }

    #[test]
    fn parses_what_the_recommendation_allows_and_nothing_else() {
        let ok =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(ok.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ok.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(ok.flags, "01");
        // A later version may carry more fields.
        assert!(
            TraceContext::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-xyz")
                .is_some_and(|t| t.flags == "01")
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-198507099805198507099805abcdefab-00f067aa0ba902b7-zz",
            // A valid personnummer in the trace id.
            "00-aaaa198507099805aaaaaaaaaaaaaaaa-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_child_keeps_the_trace_and_names_a_new_span() {
        let parent =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        let child = TraceContext::parse(&parent.header(&new_span_id())).unwrap();
        assert_eq!(child.trace_id, parent.trace_id);
        assert_ne!(child.parent_id, parent.parent_id);
        assert_eq!(child.flags, "00");
        let k = Uuid::parse_str("5b3e2c1a-9d4f-4e8a-b7c6-0123456789ab").unwrap();
        assert_eq!(
            TraceContext::start(k).trace_id,
            "5b3e2c1a9d4f4e8ab7c60123456789ab"
        );
        // A Korrelationsid whose digits, without the hyphens, spell a personnummer.
        let k = Uuid::parse_str("19850709-9805-4e8a-b7c6-0123456789ab").unwrap();
        let t = TraceContext::start(k).trace_id;
        assert!(!t.contains("198507099805"), "{t}");
        assert_eq!(t.len(), 32);
    }
}
