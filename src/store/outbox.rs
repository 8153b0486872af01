//! The event outbox: every AF event accepted, once, and one delivery per subscriber, stored
//! durably before AF hears `202`. A delivery holds the event (with the person's number, which
//! the law lets travel to that case system) only until it is delivered or given up; then the
//! payload is erased (`secure_delete`), and what stays names the person by pseudonym only.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, params};
use time::OffsetDateTime;

use crate::store::schema::{StoreError, create_schema};
use crate::store::subscriptions;

/// Times in the outbox: UTC with milliseconds always, so text order is time order.
fn stamp(t: OffsetDateTime) -> String {
    crate::store::audit::format_time(t)
}

/// One event as the `af` listener validated it, ready to store.
pub struct Incoming {
    pub handelse_id: uuid::Uuid,
    pub typ: &'static str,
    pub tidpunkt: OffsetDateTime,
    /// The person's pseudonyms in the `subscriptions` domain, under every key.
    pub subjects: Vec<String>,
    /// The data category the event carries: a subscription whose purpose may not see it
    /// gets no delivery.
    pub kategori: crate::model::Datakategori,
    /// The event as AF's JSON, for delivery.
    pub payload: String,
}

/// What became of one incoming event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// False when the event id was seen before: acknowledged, not stored again.
    pub new: bool,
    /// The (client, case) pairs it is to be delivered to.
    pub recipients: Vec<(String, String)>,
}

pub struct Outbox {
    conn: Mutex<Connection>,
}

impl Outbox {
    /// Opens (creating if needed) the outbox tables in the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = crate::store::audit::open(path).map_err(|e| StoreError::new(e.to_string()))?;
        create_schema(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }
}

impl Outbox {
    /// Stores a batch in one durable transaction: each event not seen before, with one
    /// pending delivery per active subscription whose period holds the event's day. Blocks on
    /// SQLite: run it off the async workers.
    pub fn accept(
        &self,
        batch: &[Incoming],
        now: OffsetDateTime,
        may_see: impl Fn(&str, crate::model::Datakategori) -> bool,
    ) -> Result<Vec<Accepted>, StoreError> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| StoreError::new("a writer panicked"))?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let received = stamp(now);
        let mut out = Vec::with_capacity(batch.len());
        for e in batch {
            let id = e.handelse_id.to_string();
            let seen: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM events WHERE id = ?1)",
                    params![id],
                    |r| r.get(0),
                )
                .map_err(StoreError::from)?;
            if seen {
                out.push(Accepted {
                    new: false,
                    recipients: Vec::new(),
                });
                continue;
            }
            let day = e.tidpunkt.date();
            // Only subscriptions whose purpose may see what the event carries.
            let subscribers: Vec<_> = subscriptions::active_on(&tx, &e.subjects, day)?
                .into_iter()
                .filter(|s| may_see(&s.syfte, e.kategori))
                .collect();
            tx.execute(
                "INSERT INTO events (id, typ, tidpunkt, received, recipients) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, e.typ, stamp(e.tidpunkt), received, subscribers.len() as i64],
            )
            .map_err(StoreError::from)?;
            for s in &subscribers {
                tx.execute(
                    "INSERT INTO outbox (event_id, subscription_id, client, arende, subject, payload, state, next_attempt, since)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)",
                    params![id, s.id, s.client, s.arende, s.subject, e.payload, received],
                )
                .map_err(StoreError::from)?;
            }
            out.push(Accepted {
                new: true,
                recipients: subscribers
                    .into_iter()
                    .map(|s| (s.client, s.arende))
                    .collect(),
            });
        }
        // synchronous=FULL: on disk before the caller answers AF.
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }
}

/// A delivery whose turn it is: the oldest pending one of its client and person.
#[derive(Debug, Clone)]
pub struct Due {
    pub seq: i64,
    pub event_id: String,
    pub client: String,
    pub arende: String,
    pub syfte: Option<String>,
    pub payload: Option<String>,
    pub attempts: u32,
    /// Since when it has waited (its arrival, or an operator's retry), for the maximum age.
    pub since: OffsetDateTime,
}

/// How many deliveries wait, and since when the oldest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Depth {
    pub pending: u64,
    pub dead: u64,
    pub oldest_pending: Option<OffsetDateTime>,
}

impl Outbox {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn
            .lock()
            .map_err(|_| StoreError::new("a writer panicked"))
    }

    /// Whether the store takes writes now: takes the write lock and lets it go.
    pub fn probe_writable(&self) -> Result<(), StoreError> {
        let conn = self.lock()?;
        conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(StoreError::from)
    }

    /// Up to `limit` deliveries due at `now`, oldest first; per subscription (one client, case
    /// and person) only the oldest undelivered one, so a case system gets one person's events
    /// in order: a dead letter holds the later ones back until an operator retries or drops
    /// it.
    pub fn due(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<Due>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT o.seq, o.event_id, o.client, o.arende, s.syfte, o.payload, o.attempts, o.since
                 FROM outbox o
                 LEFT JOIN subscriptions s ON s.id = o.subscription_id
                 WHERE o.state = 'pending' AND o.next_attempt <= ?1
                   AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.subscription_id = o.subscription_id
                                   AND p.state IN ('pending', 'dead') AND p.seq < o.seq)
                 ORDER BY o.seq LIMIT ?2",
            )
            .map_err(StoreError::from)?;
        let rows = stmt
            .query_map(params![stamp(now), limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, String>(7)?,
                ))
            })
            .map_err(StoreError::from)?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, event_id, client, arende, syfte, payload, attempts, since) =
                row.map_err(StoreError::from)?;
            let since = crate::model::lexical::parse_tidpunkt(&since)
                .map_err(|_| StoreError::new(format!("outbox {seq}: its time is unreadable")))?;
            out.push(Due {
                seq,
                event_id,
                client,
                arende,
                syfte,
                payload,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                since,
            });
        }
        Ok(out)
    }

    /// The case system has it: erase the payload, keep the fact. False when the delivery
    /// was no longer pending (an operator dropped it meanwhile).
    pub fn delivered(&self, seq: i64, now: OffsetDateTime) -> Result<bool, StoreError> {
        let n = self
            .lock()?
            .execute(
                "UPDATE outbox SET state = 'delivered', payload = NULL, done = ?2,
                     attempts = attempts + 1
                 WHERE seq = ?1 AND state = 'pending'",
                params![seq, stamp(now)],
            )
            .map_err(StoreError::from)?;
        Ok(n == 1)
    }

    /// Given up: a dead letter, kept (with its payload) until an operator retries or drops it.
    /// False when it was no longer pending.
    pub fn dead(&self, seq: i64, now: OffsetDateTime, why: &str) -> Result<bool, StoreError> {
        let n = self
            .lock()?
            .execute(
                "UPDATE outbox SET state = 'dead', done = ?2, last_error = ?3,
                     attempts = attempts + 1
                 WHERE seq = ?1 AND state = 'pending'",
                params![seq, stamp(now), why],
            )
            .map_err(StoreError::from)?;
        Ok(n == 1)
    }

    /// Not yet: try again at `next`. False when it was no longer pending.
    pub fn retry(&self, seq: i64, next: OffsetDateTime, why: &str) -> Result<bool, StoreError> {
        let n = self
            .lock()?
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?2, last_error = ?3
                 WHERE seq = ?1 AND state = 'pending'",
                params![seq, stamp(next), why],
            )
            .map_err(StoreError::from)?;
        Ok(n == 1)
    }

    /// Which of these event ids were stored before (for the audit record of a batch).
    pub fn seen(&self, ids: &[uuid::Uuid]) -> Result<Vec<bool>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM events WHERE id = ?1)")
            .map_err(StoreError::from)?;
        ids.iter()
            .map(|id| {
                stmt.query_row(params![id.to_string()], |r| r.get(0))
                    .map_err(StoreError::from)
            })
            .collect()
    }

    /// The outbox's depth, for metrics and the operator.
    pub fn depth(&self) -> Result<Depth, StoreError> {
        let conn = self.lock()?;
        let (pending, dead, oldest): (i64, i64, Option<String>) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM outbox WHERE state = 'pending'),
                        (SELECT count(*) FROM outbox WHERE state = 'dead'),
                        (SELECT min(since) FROM outbox WHERE state = 'pending')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(StoreError::from)?;
        Ok(Depth {
            pending: pending.max(0) as u64,
            dead: dead.max(0) as u64,
            oldest_pending: oldest.and_then(|t| crate::model::lexical::parse_tidpunkt(&t).ok()),
        })
    }
}

/// One delivery as an operator sees it (no payload, no person).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listed {
    pub seq: i64,
    pub event_id: String,
    pub typ: String,
    pub client: String,
    pub arende: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt: String,
    pub since: String,
    pub last_error: Option<String>,
}

const LISTED: &str = "SELECT o.seq, o.event_id, e.typ, o.client, o.arende, o.state, o.attempts,
        o.next_attempt, o.since, o.last_error
     FROM outbox o JOIN events e ON e.id = o.event_id";

fn listed(r: &rusqlite::Row<'_>) -> rusqlite::Result<Listed> {
    Ok(Listed {
        seq: r.get(0)?,
        event_id: r.get(1)?,
        typ: r.get(2)?,
        client: r.get(3)?,
        arende: r.get(4)?,
        state: r.get(5)?,
        attempts: r.get(6)?,
        next_attempt: r.get(7)?,
        since: r.get(8)?,
        last_error: r.get(9)?,
    })
}

impl Outbox {
    /// The deliveries in `states` (all when empty), oldest first, at most `limit`.
    pub fn list(&self, states: &[&str], limit: usize) -> Result<Vec<Listed>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare(&format!("{LISTED} ORDER BY o.seq"))
            .map_err(StoreError::from)?;
        let rows = stmt.query_map([], listed).map_err(StoreError::from)?;
        let mut out = Vec::new();
        for row in rows {
            let row = row.map_err(StoreError::from)?;
            if states.is_empty() || states.contains(&row.state.as_str()) {
                out.push(row);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// One delivery by its number.
    pub fn get(&self, seq: i64) -> Result<Option<Listed>, StoreError> {
        use rusqlite::OptionalExtension;
        self.lock()?
            .query_row(&format!("{LISTED} WHERE o.seq = ?1"), params![seq], listed)
            .optional()
            .map_err(StoreError::from)
    }

    /// An operator's retry: a pending delivery is tried now, a dead letter is pending again
    /// with its maximum age counted from now. Returns the delivery, or `None` when there is no
    /// such pending or dead one.
    pub fn retry_now(&self, seq: i64, now: OffsetDateTime) -> Result<Option<Listed>, StoreError> {
        let t = stamp(now);
        let changed = self
            .lock()?
            .execute(
                "UPDATE outbox SET state = 'pending', next_attempt = ?2,
                     since = CASE WHEN state = 'dead' THEN ?2 ELSE since END
                 WHERE seq = ?1 AND state IN ('pending', 'dead') AND payload IS NOT NULL",
                params![seq, t],
            )
            .map_err(StoreError::from)?;
        self.found(seq, changed)
    }

    /// An operator's drop: the delivery will not be made; its payload is erased.
    pub fn drop_delivery(
        &self,
        seq: i64,
        now: OffsetDateTime,
    ) -> Result<Option<Listed>, StoreError> {
        let changed = self
            .lock()?
            .execute(
                "UPDATE outbox SET state = 'dropped', payload = NULL, done = ?2
                 WHERE seq = ?1 AND state IN ('pending', 'dead')",
                params![seq, stamp(now)],
            )
            .map_err(StoreError::from)?;
        self.found(seq, changed)
    }

    /// Makes erasures reach the files. `secure_delete` zeroes an erased payload in the page,
    /// but the write-ahead log still holds the page as it was: this copies the log into the
    /// database and truncates the log to nothing. False when another connection was reading
    /// an older state, so the log could not be emptied yet (try again).
    pub fn erase_from_files(&self) -> Result<bool, StoreError> {
        let (busy, log): (i64, i64) = self
            .lock()?
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(StoreError::from)?;
        Ok(busy == 0 && log <= 0)
    }

    fn found(&self, seq: i64, changed: usize) -> Result<Option<Listed>, StoreError> {
        if changed == 0 {
            return Ok(None);
        }
        self.get(seq)
    }
}
