//! The `brygga` command line: parses arguments, sets up logging and calls into the library.

use std::process::ExitCode;
#[cfg(feature = "devkit")]
use std::time::Duration;

#[cfg(feature = "devkit")]
use anyhow::Context;
use anyhow::anyhow;
use clap::Parser;

use brygga::cli::args::*;

use brygga::config::Config;

// Each exchange allocates many small, short-lived strings (XML tree, JSON, headers); mimalloc
// serves those with less CPU than glibc's malloc (measured with `brygga bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(feature = "devkit")]
use brygga::devkit::demo::{self, DemoFiles};

type FilterHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// Set once logging starts: lets `serve` apply the configuration's `[log] level`.
static LOG_FILTER: std::sync::OnceLock<FilterHandle> = std::sync::OnceLock::new();

fn init_logging(format: LogFormat, default: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer, fmt};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let output = match format {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => fmt::layer()
            .compact()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .init();
    let _ = LOG_FILTER.set(handle);
}

/// The configuration's log filter, unless `RUST_LOG` is set (it wins).
fn apply_log_level(level: Option<&str>) {
    let Some(level) = level else { return };
    if std::env::var_os("RUST_LOG").is_some() {
        tracing::info!("RUST_LOG is set; [log] level is not applied");
        return;
    }
    // check-config has parsed it already.
    match (
        tracing_subscriber::EnvFilter::try_new(level),
        LOG_FILTER.get(),
    ) {
        (Ok(filter), Some(handle)) => {
            if let Err(e) = handle.reload(filter) {
                tracing::warn!(error = %e, "the [log] level could not be applied");
            }
        }
        (Err(e), _) => tracing::warn!(error = %e, "[log] level is not a log filter"),
        (Ok(_), None) => {}
    }
}

fn main() -> ExitCode {
    // A value refused on the command line is quoted back by clap: never an identity number.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let text = brygga::model::ident::mask_identity_numbers(&e.render().to_string());
            if e.use_stderr() {
                eprint!("{text}");
            } else {
                print!("{text}");
            }
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let quiet = cli.command.is_quiet();
    init_logging(cli.log_format, if quiet { "warn" } else { "info" });
    // A panic's message may quote data; only where it happened goes to the log.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(location = %at, "internal error (panic); the message is withheld");
    }));
    brygga::access::tls::provider();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.worker_threads {
        builder.worker_threads(usize::from(n));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            // The last line of defence: an error quoting what an operator typed.
            let text = brygga::model::ident::mask_identity_numbers(&format!("{e:#}"));
            eprintln!("error: {text}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    #[cfg(feature = "devkit")]
    let defaults = DemoFiles::default();
    match command {
        Command::Serve {
            config,
            allow_example_keys,
        } => {
            let config = Config::load(&config).map_err(|e| anyhow!("{e}"))?;
            brygga::config::example_keys::refuse_in_production(&config, allow_example_keys)
                .map_err(|e| anyhow!(e))?;
            apply_log_level(config.log_level.as_deref());
            let gw = brygga::gateway::state::start(config)
                .await
                .map_err(|e| anyhow!(e))?;
            // One line on stdout once every listener is bound: the readiness signal for tools.
            println!(
                "{}",
                serde_json::json!({
                    "kommun_url": format!("https://{}/kommun/v1", gw.kommun_addr),
                    "af_url": format!("https://{}{}", gw.af_addr, brygga::gateway::events::EVENTS_PATH),
                    "admin_url": format!("http://{}", gw.admin_addr),
                })
            );
            brygga::gateway::signal::wait_for_signal().await;
            tracing::info!("signal received; draining");
            gw.shutdown().await;
        }
        #[cfg(feature = "devkit")]
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
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(c) => {
                if let Err(e) = brygga::config::example_keys::refuse_in_production(&c, false) {
                    println!("{}: {e}", config.display());
                    return Ok(ExitCode::FAILURE);
                }
                println!(
                    "{}: valid ({} client(s), {} purpose(s))",
                    config.display(),
                    c.clients.len(),
                    c.syften.len()
                )
            }
            Err(e) => {
                print!("{e}");
                return Ok(ExitCode::FAILURE);
            }
        },
        #[cfg(feature = "devkit")]
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
                let opts = brygga::devkit::soak::SoakOptions {
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
                    r = brygga::devkit::soak::run(&opts, !json) => r.map_err(|e| anyhow!(e))?,
                    () = brygga::gateway::signal::wait_for_signal() => return Err(anyhow!("interrupted")),
                };
                println!("{result}");
                return Ok(ExitCode::SUCCESS);
            }
            let opts = brygga::devkit::bench::BenchOptions {
                connections: connections.max(1),
                duration,
                rounds: rounds.max(1),
                warmup,
                rate: rate.filter(|r| *r > 0.0),
                nginx: !no_nginx,
                files: defaults,
            };
            let result = tokio::select! {
                r = brygga::devkit::bench::run(&opts, !json) => r.map_err(|e| anyhow!(e))?,
                () = brygga::gateway::signal::wait_for_signal() => return Err(anyhow!("interrupted")),
            };
            println!("{result}");
        }
        Command::Pseudonymise {
            domain,
            all,
            config,
            number,
        } => {
            if number.is_some() {
                return Err(anyhow!(
                    "the number is never given on the command line (the process list and the shell's history would keep it); give it on standard input"
                ));
            }
            let config = Config::load(&config).map_err(|e| anyhow!("{e}"))?;
            let mut number = String::new();
            std::io::stdin()
                .read_line(&mut number)
                .map_err(|e| anyhow!("standard input: {e}"))?;
            let number = number.trim();
            if number.is_empty() {
                return Err(anyhow!(
                    "give the number on standard input (e.g. from a file or a prompt), never on the command line"
                ));
            }
            // The number is never echoed, not even in an error.
            let person = brygga::model::Personnummer::parse_written(number).map_err(|e| {
                anyhow!("the number is not a valid personnummer or samordningsnummer: {e}")
            })?;
            let found = if all {
                config.pseudonyms.all(&domain, &person)
            } else {
                config
                    .pseudonyms
                    .pseudonym(&domain, &person)
                    .into_iter()
                    .collect()
            };
            if found.is_empty() {
                return Err(anyhow!(
                    "no key for the domain '{domain}' in the configuration"
                ));
            }
            for p in found {
                println!("{p}");
            }
        }
        Command::Outbox { command } => {
            let resolve = |a: StoreArgs| {
                brygga::cli::dpo::Store::resolve(
                    a.store.as_deref(),
                    a.config.as_deref(),
                    a.operator,
                )
                .map_err(|e| anyhow!(e))
            };
            match command {
                OutboxCommand::List { store, state, json } => {
                    for s in &state {
                        if !["pending", "dead", "delivered", "dropped"].contains(&s.as_str()) {
                            return Err(anyhow!(
                                "--state {s}: must be pending, dead, delivered or dropped"
                            ));
                        }
                    }
                    brygga::cli::outbox::list(&resolve(store)?, &state, json)
                        .await
                        .map_err(|e| anyhow!(e))?;
                }
                OutboxCommand::Retry { store, seq } => {
                    let d = brygga::cli::outbox::act(
                        &resolve(store)?,
                        seq,
                        brygga::cli::outbox::Action::Retry,
                    )
                    .await
                    .map_err(|e| anyhow!(e))?;
                    println!(
                        "delivery {seq} of event {} to {} is pending again",
                        d.event_id, d.client
                    );
                }
                OutboxCommand::Drop { store, seq } => {
                    let d = brygga::cli::outbox::act(
                        &resolve(store)?,
                        seq,
                        brygga::cli::outbox::Action::Drop,
                    )
                    .await
                    .map_err(|e| anyhow!(e))?;
                    println!(
                        "delivery {seq} of event {} to {} is dropped",
                        d.event_id, d.client
                    );
                }
            }
        }
        Command::Audit { command } => {
            let resolve = |a: StoreArgs| {
                brygga::cli::dpo::Store::resolve(
                    a.store.as_deref(),
                    a.config.as_deref(),
                    a.operator,
                )
                .map_err(|e| anyhow!(e))
            };
            match command {
                AuditCommand::Verify {
                    store,
                    public_key,
                    witness,
                    export,
                    progress,
                } => {
                    // 0 verifies, 1 tampered, 2 could not check: a nightly job tells an
                    // attack from a missing file.
                    let progress = progress || std::io::IsTerminal::is_terminal(&std::io::stderr());
                    let verdict = match export {
                        Some(file) => brygga::cli::dpo::verify_export(
                            &file,
                            &public_key,
                            store.config.as_deref(),
                        ),
                        None => match resolve(store) {
                            Ok(store) => {
                                brygga::cli::dpo::verify(
                                    &store,
                                    &public_key,
                                    witness.as_deref(),
                                    progress,
                                )
                                .await
                            }
                            Err(e) => Err(e.to_string()),
                        },
                    };
                    match verdict {
                        Ok(true) => {}
                        Ok(false) => return Ok(ExitCode::from(1)),
                        Err(e) => {
                            let e = brygga::model::ident::mask_identity_numbers(&e);
                            eprintln!("error: could not check the chain: {e}");
                            return Ok(ExitCode::from(2));
                        }
                    }
                }
                AuditCommand::Query {
                    store,
                    personnummer,
                    arende,
                    from,
                    to,
                    format,
                    json,
                    output,
                    public_key,
                    syfte,
                } => {
                    let store = resolve(store)?;
                    let q = brygga::cli::dpo::Query {
                        personnummer,
                        arende,
                        from,
                        to,
                        format: if json {
                            brygga::store::extract::Format::Json
                        } else {
                            format
                        },
                        output,
                        public_keys: public_key,
                        syfte,
                    };
                    brygga::cli::dpo::query(&store, q)
                        .await
                        .map_err(|e| anyhow!(e))?;
                }
                AuditCommand::Sample {
                    store,
                    from,
                    to,
                    n,
                    format,
                    output,
                } => {
                    let store = resolve(store)?;
                    let q = brygga::cli::dpo::SampleQuery {
                        from,
                        to,
                        n,
                        format,
                        output,
                    };
                    brygga::cli::dpo::sample(&store, q)
                        .await
                        .map_err(|e| anyhow!(e))?;
                }
                AuditCommand::Review {
                    store,
                    record,
                    verdict,
                    sample,
                    reference,
                } => {
                    let store = resolve(store)?;
                    let seq = brygga::cli::dpo::review(&store, record, verdict, sample, reference)
                        .await
                        .map_err(|e| anyhow!(e))?;
                    println!(
                        "the review of record {record} ({}) is record {seq} of the chain",
                        verdict.as_str()
                    );
                }
                AuditCommand::Export { store, output } => {
                    let store = resolve(store)?;
                    let n = brygga::cli::dpo::export(&store, output.as_deref())
                        .await
                        .map_err(|e| anyhow!(e))?;
                    eprintln!("{n} record(s) exported");
                }
            }
        }
        Command::Validate { files } => {
            let mut all_valid = true;
            for f in files {
                let verdict = match std::fs::read(&f) {
                    Ok(bytes) => brygga::contract::validate::validate(&bytes),
                    Err(e) => brygga::contract::validate::Verdict {
                        message_type: "file".into(),
                        problems: vec![format!("(file): cannot read: {e}")],
                    },
                };
                if verdict.is_valid() {
                    println!("{}: valid {}", f.display(), verdict.message_type);
                }
                for p in &verdict.problems {
                    println!("{}: {} {p}", f.display(), verdict.message_type);
                }
                all_valid &= verdict.is_valid();
            }
            if !all_valid {
                return Ok(ExitCode::FAILURE);
            }
        }
        #[cfg(feature = "devkit")]
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
                revoked.extend(brygga::access::tls::load_certs(cert).map_err(|e| anyhow!("{e}"))?);
            }
            brygga::devkit::certs::write_crl(&ca_cert, &ca_key, &revoked, &out, days)
                .map_err(|e| anyhow!(e))?;
            println!(
                "wrote {} revoking {} certificate(s)",
                out.display(),
                revoked.len()
            );
        }
        #[cfg(feature = "devkit")]
        Command::Certs {
            command:
                CertsCommand::Generate {
                    out,
                    days,
                    server_days,
                },
        } => {
            let files = brygga::devkit::certs::generate_with(&out, days, server_days)
                .map_err(|e| anyhow!(e))?;
            println!(
                "wrote {} files to {}: {}",
                files.len(),
                out.display(),
                files.join(", ")
            );
        }
        #[cfg(feature = "devkit")]
        Command::Sim {
            command: SimCommand::Af { config },
        } => {
            let settings =
                brygga::devkit::sim_af::SimSettings::load(&config).map_err(|e| anyhow!(e))?;
            let sim = brygga::devkit::sim_af::start(settings)
                .await
                .map_err(|e| anyhow!(e))?;
            println!(
                "{}",
                serde_json::json!({ "af_sim_url": format!("https://localhost:{}", sim.addr.port()) })
            );
            brygga::gateway::signal::wait_for_signal().await;
            sim.shutdown().await;
        }
        #[cfg(feature = "devkit")]
        Command::Sim {
            command: SimCommand::Kommun { config },
        } => {
            let settings = brygga::devkit::sim_kommun::KommunSimSettings::load(&config)
                .map_err(|e| anyhow!(e))?;
            let sim = brygga::devkit::sim_kommun::start(&settings, None)
                .await
                .map_err(|e| anyhow!(e))?;
            println!("{}", serde_json::json!({ "kommun_sim_url": sim.url() }));
            brygga::gateway::signal::wait_for_signal().await;
            sim.shutdown().await;
        }
        #[cfg(feature = "devkit")]
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
            let minter = brygga::devkit::client::TokenMinter::load(
                &key,
                &client.idp.issuer,
                &config.token_rules.audience,
            )
            .map_err(|e| anyhow!(e))?;
            let mut claims = minter.claims(&sub, &kommun, &syfte, lifetime);
            if let Some(cert) = bind_cert {
                let chain = brygga::access::tls::load_certs(&cert).map_err(|e| anyhow!("{e}"))?;
                let thumbprint = brygga::access::identity::certificate_thumbprint(&chain[0]);
                claims.cnf = Some(serde_json::json!({ "x5t#S256": thumbprint }));
            }
            let token = minter.sign(&claims).map_err(|e| anyhow!(e))?;
            println!("{token}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
