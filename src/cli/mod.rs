//! The operator's and the data-protection officer's commands over the store.

pub mod args;
pub mod dpo;
pub mod outbox;
pub mod pdf;
