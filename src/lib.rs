//! brygga: a hardened data-exchange gateway between Arbetsförmedlingen (AF) and the case
//! systems Swedish municipalities use for ekonomiskt bistånd.
//!
//! A request's path reads top to bottom in [`exchange`]; each stage has its own module.

pub mod admission;
pub mod audit;
pub mod bench;
pub mod breaker;
pub mod certs;
pub mod client;
pub mod codec;
pub mod config;
pub mod crl;
pub mod crl_fetch;
pub mod delivery;
pub mod demo;
pub mod dpo;
pub mod error;
pub mod events;
pub mod example_keys;
pub mod exchange;
pub mod extract;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod gateway_tls;
pub mod identity;
pub mod kommun_sim;
pub mod limit;
pub mod metrics;
pub mod model;
pub mod operator;
pub mod ops;
pub mod outbox;
pub mod pdf;
pub mod pending;
pub mod policy;
pub mod pseudo;
pub mod server;
pub mod sim;
pub mod soak;
pub mod subscriptions;
pub mod telemetry;
pub mod tls;
pub mod tracectx;
pub mod translate;
pub mod trust;
pub mod upstream;
pub mod validate;
