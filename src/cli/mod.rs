//! The command line's commands, one file per group; `main.rs` parses the arguments, sets up
//! logging and calls [`run`].

pub mod args;
pub mod audit;
pub mod config;
#[cfg(feature = "devkit")]
pub mod dev;
pub mod dpo;
pub mod extract;
pub mod outbox;
pub mod pdf;
pub mod serve;
pub mod validate;

use std::process::ExitCode;

use args::Command;

/// Runs one command; `apply_log_level` lets `serve` apply the configuration's `[log] level`.
pub async fn run(command: Command, apply_log_level: fn(Option<&str>)) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve {
            config,
            allow_example_keys,
        } => serve::serve(&config, allow_example_keys, apply_log_level).await,
        Command::CheckConfig { config } => config::check_config(&config),
        Command::Pseudonymise {
            domain,
            all,
            config,
            number,
        } => config::pseudonymise(&domain, all, &config, number),
        Command::Outbox { command } => outbox::command(command).await,
        Command::Audit { command } => audit::command(command).await,
        Command::Validate { files } => Ok(validate::command(files)),
        #[cfg(feature = "devkit")]
        dev @ (Command::Demo { .. }
        | Command::Bench { .. }
        | Command::Certs { .. }
        | Command::Sim { .. }
        | Command::Token { .. }) => dev::command(dev).await,
    }
}
