//! What must survive a restart: the audit chain, subscriptions, the event outbox and the log
//! extract.

pub mod audit;
pub mod extract;
pub mod outbox;
pub mod schema;
pub mod subscriptions;
