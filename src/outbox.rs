//! The event outbox: every AF event accepted, once, and one delivery per subscriber, stored
//! durably before AF hears `202`. A delivery holds the event (with the person's number, which
//! the law lets travel to that case system) only until it is delivered or given up; then the
//! payload is erased (`secure_delete`), and what stays names the person by pseudonym only.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, params};
use time::OffsetDateTime;

use crate::model::lexical::format_tidpunkt;
use crate::subscriptions::{self, StoreError};

/// One event as the `af` listener validated it, ready to store.
pub struct Incoming {
    pub handelse_id: uuid::Uuid,
    pub typ: &'static str,
    pub tidpunkt: OffsetDateTime,
    /// The person's pseudonyms in the `subscriptions` domain, under every key.
    pub subjects: Vec<String>,
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
        let conn = crate::audit::open(path).map_err(|e| StoreError::new(e.to_string()))?;
        subscriptions::create_schema(&conn)?;
        conn.execute_batch(
            "PRAGMA secure_delete = ON;
             CREATE TABLE IF NOT EXISTS events (
                 id TEXT PRIMARY KEY, typ TEXT NOT NULL, tidpunkt TEXT NOT NULL,
                 received TEXT NOT NULL, recipients INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS outbox (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 event_id TEXT NOT NULL, subscription_id TEXT NOT NULL,
                 client TEXT NOT NULL, arende TEXT NOT NULL, subject TEXT NOT NULL,
                 payload TEXT, state TEXT NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0, next_attempt TEXT NOT NULL,
                 last_error TEXT, done TEXT,
                 UNIQUE (event_id, subscription_id));
             CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt);",
        )
        .map_err(StoreError::from)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Stores a batch in one durable transaction: each event not seen before, with one
    /// pending delivery per active subscription whose period holds the event's day. Blocks on
    /// SQLite: run it off the async workers.
    pub fn accept(
        &self,
        batch: &[Incoming],
        now: OffsetDateTime,
    ) -> Result<Vec<Accepted>, StoreError> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| StoreError::new("a writer panicked"))?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let received = format_tidpunkt(now);
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
            let subscribers = subscriptions::active_on(&tx, &e.subjects, day)?;
            tx.execute(
                "INSERT INTO events (id, typ, tidpunkt, received, recipients) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, e.typ, format_tidpunkt(e.tidpunkt), received, subscribers.len() as i64],
            )
            .map_err(StoreError::from)?;
            for s in &subscribers {
                tx.execute(
                    "INSERT INTO outbox (event_id, subscription_id, client, arende, subject, payload, state, next_attempt)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7)",
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
    /// When the event arrived, for the maximum age.
    pub received: OffsetDateTime,
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

    /// Up to `limit` deliveries due at `now`, oldest first; per client and person only the
    /// oldest pending one, so a case system gets one person's events in order.
    pub fn due(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<Due>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT o.seq, o.event_id, o.client, o.arende, s.syfte, o.payload, o.attempts, e.received
                 FROM outbox o
                 JOIN events e ON e.id = o.event_id
                 LEFT JOIN subscriptions s ON s.id = o.subscription_id
                 WHERE o.state = 'pending' AND o.next_attempt <= ?1
                   AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.state = 'pending'
                                   AND p.client = o.client AND p.subject = o.subject AND p.seq < o.seq)
                 ORDER BY o.seq LIMIT ?2",
            )
            .map_err(StoreError::from)?;
        let rows = stmt
            .query_map(params![format_tidpunkt(now), limit as i64], |r| {
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
            let (seq, event_id, client, arende, syfte, payload, attempts, received) =
                row.map_err(StoreError::from)?;
            let received = crate::model::lexical::parse_tidpunkt(&received)
                .map_err(|_| StoreError::new(format!("outbox {seq}: arrival time unreadable")))?;
            out.push(Due {
                seq,
                event_id,
                client,
                arende,
                syfte,
                payload,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                received,
            });
        }
        Ok(out)
    }

    /// The case system has it: erase the payload, keep the fact.
    pub fn delivered(&self, seq: i64, now: OffsetDateTime) -> Result<(), StoreError> {
        self.finish(seq, "delivered", now, None)
    }

    /// Given up: erase the payload, keep why.
    pub fn dead(&self, seq: i64, now: OffsetDateTime, why: &str) -> Result<(), StoreError> {
        self.finish(seq, "dead", now, Some(why))
    }

    fn finish(
        &self,
        seq: i64,
        state: &str,
        now: OffsetDateTime,
        why: Option<&str>,
    ) -> Result<(), StoreError> {
        self.lock()?
            .execute(
                "UPDATE outbox SET state = ?2, payload = NULL, done = ?3,
                     last_error = coalesce(?4, last_error), attempts = attempts + 1
                 WHERE seq = ?1",
                params![seq, state, format_tidpunkt(now), why],
            )
            .map_err(StoreError::from)?;
        Ok(())
    }

    /// Not yet: try again at `next`.
    pub fn retry(&self, seq: i64, next: OffsetDateTime, why: &str) -> Result<(), StoreError> {
        self.lock()?
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?2, last_error = ?3
                 WHERE seq = ?1",
                params![seq, format_tidpunkt(next), why],
            )
            .map_err(StoreError::from)?;
        Ok(())
    }

    /// The outbox's depth, for metrics and the operator.
    pub fn depth(&self) -> Result<Depth, StoreError> {
        let conn = self.lock()?;
        let (pending, dead, oldest): (i64, i64, Option<String>) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM outbox WHERE state = 'pending'),
                        (SELECT count(*) FROM outbox WHERE state = 'dead'),
                        (SELECT min(e.received) FROM outbox o JOIN events e ON e.id = o.event_id
                         WHERE o.state = 'pending')",
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
