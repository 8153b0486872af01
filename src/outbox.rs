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
