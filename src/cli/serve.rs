//! `brygga serve`: the gateway, until SIGTERM or Ctrl-C, then drained.

use std::path::Path;
use std::process::ExitCode;

use anyhow::anyhow;

use crate::config::Config;

/// Starts the gateway from `config`, prints the readiness line, and runs until a signal.
/// `apply_log_level` applies the configuration's `[log] level` to the running logger.
pub async fn serve(
    config: &Path,
    allow_example_keys: bool,
    apply_log_level: fn(Option<&str>),
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config).map_err(|e| anyhow!("{e}"))?;
    crate::config::example_keys::refuse_in_production(&config, allow_example_keys)
        .map_err(|e| anyhow!(e))?;
    apply_log_level(config.log_level.as_deref());
    let gw = crate::gateway::start::start(config)
        .await
        .map_err(|e| anyhow!(e))?;
    // One line on stdout once every listener is bound: the readiness signal for tools.
    println!(
        "{}",
        serde_json::json!({
            "kommun_url": format!("https://{}/kommun/v1", gw.kommun_addr),
            "af_url": format!("https://{}{}", gw.af_addr, crate::gateway::events::EVENTS_PATH),
            "admin_url": format!("http://{}", gw.admin_addr),
        })
    );
    crate::gateway::signal::wait_for_signal().await;
    tracing::info!("signal received; draining");
    gw.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
