//! The running gateway: its shared state, start, stop and reload, the listeners, the request's
//! path (exchange), AF's events and their delivery, the client towards AF, the admin listener.

pub mod admin;
pub mod admission;
pub mod body;
pub mod breaker;
pub mod delivery;
pub mod events;
pub mod exchange;
pub mod pending;
pub mod server;
pub mod signal;
pub mod start;
pub mod state;
pub mod tls;
pub mod upstream;
