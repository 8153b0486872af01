//! Integration tests: the real gateway and AF simulator on loopback with real certificates,
//! spoken to as a case system would. One binary, so the 2-core machine links once.

mod architecture;
mod audit;
mod cli;

mod conformance;
mod connections;
mod contracts;
mod delivery;
mod dpo_edges;
mod events;
mod evidence;
mod exchange;
mod flood;
mod fuzz_replay;
mod harness;
mod identity;
mod limits;
mod operations;
mod ops;
mod policy;
mod properties;
mod protocol;
mod reload;
mod revocation;
mod subscriptions;
mod threats;
mod tls_scan;
mod tokens;
mod upstream;
