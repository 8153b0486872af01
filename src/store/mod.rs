//! What must survive a restart: the audit chain, subscriptions and the event outbox.

pub mod audit;
pub mod outbox;
pub mod schema;
pub mod subscriptions;
