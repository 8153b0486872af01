//! What a developer or integrator runs, never production: the simulators, the demo, the bench and
//! soak, the example PKI, the case-system client.

pub mod bench;
pub mod certs;
pub mod client;
pub mod demo;
pub mod load;
pub mod sim_af;
pub mod sim_kommun;
pub mod soak;
