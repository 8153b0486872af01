//! brygga: a hardened data-exchange gateway between Arbetsförmedlingen (AF) and the case
//! systems Swedish municipalities use for ekonomiskt bistånd.
//!
//! Folders by layer, lowest first; a module uses only those below it (ARCHITECTURE.md). A
//! request's path reads top to bottom in [`gateway::exchange`].

pub mod access;
pub mod cli;
pub mod config;
pub mod contract;
#[cfg(feature = "devkit")]
pub mod devkit;
pub mod error;
#[cfg(feature = "devkit")]
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod model;
pub mod ops;
pub mod store;
