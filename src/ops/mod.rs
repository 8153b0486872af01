//! What operators see: the admin listener (health, readiness, metrics, status page), metrics,
//! trace context, telemetry.

pub mod admin;
pub mod metrics;
pub mod telemetry;
pub mod tracectx;
