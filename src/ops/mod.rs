//! What operators see: metrics, the readiness answer and the status page (which
//! `gateway::admin` serves from the running gateway), trace context, telemetry.

pub mod metrics;
pub mod status_page;
pub mod telemetry;
pub mod tracectx;
