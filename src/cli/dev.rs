//! The development commands: `brygga demo`, `bench`, `certs`, `sim` and `token` (built with
//! the `devkit` feature only).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};

use crate::cli::args::{CertsCommand, Command, SimCommand};
use crate::config::Config;
use crate::devkit::demo::{self, DemoFiles};

/// Runs one development command.
pub async fn command(command: Command) -> anyhow::Result<ExitCode> {
    let defaults = DemoFiles::default();
    match command {
        Command::Demo {
            serve,
            config,
            sim_config,
            certs,
            data_dir,
            traffic,
        } => {
            let files = DemoFiles {
                config: config.unwrap_or(defaults.config),
                sim_config: sim_config.unwrap_or(defaults.sim_config),
                certs: certs.unwrap_or(defaults.certs),
            };
            if serve {
                demo::serve(&files, data_dir.as_deref(), traffic)
                    .await
                    .map_err(|e| anyhow!(e))?;
            } else if !demo::run(&files, data_dir.as_deref())
                .await
                .map_err(|e| anyhow!(e))?
            {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Bench {
            connections,
            duration,
            rounds,
            warmup,
            rate,
            no_nginx,
            json,
            soak,
            window,
        } => {
            if let Some(soak) = soak {
                let opts = crate::devkit::soak::SoakOptions {
                    duration: soak,
                    window: window.max(Duration::from_secs(1)),
                    connections: connections.max(1),
                    warmup,
                    peak_duration: duration,
                    rate: rate.filter(|r| *r > 0.0),
                    files: defaults,
                };
                // Interrupted, the run is dropped: its child processes are stopped with it.
                let result = tokio::select! {
                    r = crate::devkit::soak::run(&opts, !json) => r.map_err(|e| anyhow!(e))?,
                    () = crate::gateway::signal::wait_for_signal() => return Err(anyhow!("interrupted")),
                };
                println!("{result}");
                return Ok(ExitCode::SUCCESS);
            }
            let opts = crate::devkit::bench::BenchOptions {
                connections: connections.max(1),
                duration,
                rounds: rounds.max(1),
                warmup,
                rate: rate.filter(|r| *r > 0.0),
                nginx: !no_nginx,
                files: defaults,
            };
            let result = tokio::select! {
                r = crate::devkit::bench::run(&opts, !json) => r.map_err(|e| anyhow!(e))?,
                () = crate::gateway::signal::wait_for_signal() => return Err(anyhow!("interrupted")),
            };
            println!("{result}");
        }
        Command::Certs {
            command:
                CertsCommand::Crl {
                    ca_cert,
                    ca_key,
                    revoke,
                    out,
                    days,
                },
        } => {
            let mut revoked = Vec::new();
            for cert in &revoke {
                revoked.extend(crate::access::tls::load_certs(cert).map_err(|e| anyhow!("{e}"))?);
            }
            crate::devkit::certs::write_crl(&ca_cert, &ca_key, &revoked, &out, days)
                .map_err(|e| anyhow!(e))?;
            println!(
                "wrote {} revoking {} certificate(s)",
                out.display(),
                revoked.len()
            );
        }
        Command::Certs {
            command:
                CertsCommand::Generate {
                    out,
                    days,
                    server_days,
                },
        } => {
            let files = crate::devkit::certs::generate_with(&out, days, server_days)
                .map_err(|e| anyhow!(e))?;
            println!(
                "wrote {} files to {}: {}",
                files.len(),
                out.display(),
                files.join(", ")
            );
        }
        Command::Sim {
            command: SimCommand::Af { config },
        } => {
            let settings =
                crate::devkit::sim_af::SimSettings::load(&config).map_err(|e| anyhow!(e))?;
            let sim = crate::devkit::sim_af::start(settings)
                .await
                .map_err(|e| anyhow!(e))?;
            println!(
                "{}",
                serde_json::json!({ "af_sim_url": format!("https://localhost:{}", sim.addr.port()) })
            );
            crate::gateway::signal::wait_for_signal().await;
            sim.shutdown().await;
        }
        Command::Sim {
            command: SimCommand::Kommun { config },
        } => {
            let settings = crate::devkit::sim_kommun::KommunSimSettings::load(&config)
                .map_err(|e| anyhow!(e))?;
            let sim = crate::devkit::sim_kommun::start(&settings, None)
                .await
                .map_err(|e| anyhow!(e))?;
            println!("{}", serde_json::json!({ "kommun_sim_url": sim.url() }));
            crate::gateway::signal::wait_for_signal().await;
            sim.shutdown().await;
        }
        Command::Token {
            kommun,
            sub,
            syfte,
            config,
            key,
            bind_cert,
            lifetime,
        } => {
            let config_path = config.unwrap_or(defaults.config);
            let config = Config::load(&config_path).map_err(|e| anyhow!("{e}"))?;
            let client = config
                .clients
                .iter()
                .find(|c| c.kommunkod.to_string() == kommun)
                .with_context(|| {
                    format!(
                        "no client with kommunkod {kommun} in {}",
                        config_path.display()
                    )
                })?;
            let key = key.unwrap_or_else(|| defaults.certs.join(format!("idp-{kommun}.key")));
            let minter = crate::devkit::client::TokenMinter::load(
                &key,
                &client.idp.issuer,
                &config.token_rules.audience,
            )
            .map_err(|e| anyhow!(e))?;
            let mut claims = minter.claims(&sub, &kommun, &syfte, lifetime);
            if let Some(cert) = bind_cert {
                let chain = crate::access::tls::load_certs(&cert).map_err(|e| anyhow!("{e}"))?;
                let thumbprint = crate::access::identity::certificate_thumbprint(&chain[0]);
                claims.cnf = Some(serde_json::json!({ "x5t#S256": thumbprint }));
            }
            let token = minter.sign(&claims).map_err(|e| anyhow!(e))?;
            println!("{token}");
        }
        _ => return Err(anyhow!("not a development command")),
    }
    Ok(ExitCode::SUCCESS)
}
