//! The tables of subscriptions, AF's events and the outbox, which live in one SQLite file
//! beside the audit chain, and the one rule that joins them: a subscription that ends drops
//! its pending deliveries, in the same transaction. `subscriptions` and `outbox` each write
//! their own rows; both are built on this module.

use rusqlite::{Connection, params};
use time::OffsetDateTime;

/// The store (subscriptions, outbox) could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(String);

impl StoreError {
    pub fn new(why: impl Into<String>) -> Self {
        Self(why.into())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

pub(crate) fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// Creates the tables of subscriptions, events and the outbox, and their indexes, if they are
/// missing.
pub fn create_schema(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS subscriptions (
             id TEXT PRIMARY KEY, client TEXT NOT NULL, arende TEXT NOT NULL,
             syfte TEXT NOT NULL, subject TEXT NOT NULL,
             from_date TEXT NOT NULL, tom_date TEXT NOT NULL,
             registered TEXT NOT NULL, ended TEXT);
         CREATE INDEX IF NOT EXISTS subscriptions_subject ON subscriptions (subject);
         CREATE INDEX IF NOT EXISTS subscriptions_case ON subscriptions (client, arende);
         CREATE UNIQUE INDEX IF NOT EXISTS subscriptions_one_active
             ON subscriptions (client, arende, subject) WHERE ended IS NULL;",
    )
    .map_err(err)?;
    create_outbox_schema(conn)
}

/// The events and outbox tables.
fn create_outbox_schema(conn: &Connection) -> Result<(), StoreError> {
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
                 since TEXT NOT NULL, last_error TEXT, done TEXT,
                 UNIQUE (event_id, subscription_id));
             CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt);
             CREATE INDEX IF NOT EXISTS outbox_order ON outbox (subscription_id, state, seq);",
    )
    .map_err(StoreError::from)
}

/// Drops the undelivered deliveries of a subscription that ended (within the caller's
/// transaction); returns how many.
pub fn drop_for_subscription(
    conn: &Connection,
    subscription_id: &str,
    now: OffsetDateTime,
) -> Result<usize, StoreError> {
    conn.execute(
        "UPDATE outbox SET state = 'dropped', payload = NULL, done = ?2,
             last_error = 'the subscription ended'
         WHERE subscription_id = ?1 AND state IN ('pending', 'dead')",
        params![subscription_id, crate::store::audit::format_time(now)],
    )
    .map_err(StoreError::from)
}
