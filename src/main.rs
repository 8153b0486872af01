//! The `brygga` command line: parses arguments, sets up logging and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand, ValueEnum};

use brygga::config::Config;

// Each exchange allocates many small, short-lived strings (XML tree, JSON, headers); mimalloc
// serves those with less CPU than glibc's malloc (measured with `brygga bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use brygga::devkit::demo::{self, DemoFiles};

#[derive(Parser)]
#[command(
    name = "brygga",
    version,
    about = "Hardened data-exchange gateway between Arbetsförmedlingen and municipal case systems"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "BRYGGA_LOG_FORMAT"
    )]
    log_format: LogFormat,
    /// Worker threads of the async runtime (default: one per core).
    #[arg(long, global = true, env = "BRYGGA_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    worker_threads: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, env = "BRYGGA_CONFIG")]
        config: PathBuf,
        /// Start even though a key is one of certs-example/'s public ones outside a test
        /// environment (U1, I1, T1, T2): for a test that must look like production.
        #[arg(long)]
        allow_example_keys: bool,
    },
    /// Run the AF simulator, the gateway and a case-system client on loopback with the example
    /// certificates, and report every step.
    Demo {
        /// Keep the simulator and gateway running on the configured ports and print one JSON
        /// line describing them.
        #[arg(long)]
        serve: bool,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        sim_config: Option<PathBuf>,
        #[arg(long)]
        certs: Option<PathBuf>,
        /// Keep the demo's audit store in this directory (created if needed) instead of a
        /// temporary one.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// With --serve: the example case systems send this many requests a second (some
        /// refused), so /status and /metrics show live numbers.
        #[arg(long, requires = "serve", value_parser = parse_traffic)]
        traffic: Option<f64>,
    },
    /// Check a configuration file and report every problem with its key.
    CheckConfig {
        #[arg(long, env = "BRYGGA_CONFIG")]
        config: PathBuf,
    },
    /// Validate messages (SOAP XML or AF JSON) with the gateway's own code: exit 0 when all
    /// are valid, 1 with one line per problem otherwise.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Measure the full secure path against a direct call to AF and against nginx as a bare
    /// mTLS proxy, interleaved in one run; prints a table and, last, one JSON line.
    Bench {
        /// Keep-alive connections per scenario.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Measured time per scenario per round, e.g. 3s (at most 1h).
        #[arg(long, default_value = "3s", value_parser = parse_bench_duration)]
        duration: Duration,
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
        rounds: u32,
        #[arg(long, default_value = "2s", value_parser = parse_bench_duration)]
        warmup: Duration,
        /// Fixed total rate (requests per second per scenario) instead of the peak.
        #[arg(long)]
        rate: Option<f64>,
        /// Leave out the nginx scenario even when nginx is on PATH.
        #[arg(long)]
        no_nginx: bool,
        /// Print only the JSON line.
        #[arg(long)]
        json: bool,
        /// Instead of the comparison, a soak: the gateway alone at 80 % of its peak (measured
        /// first for --duration, closed loop) for this long, AF failing now and then; a line
        /// of figures per --window, then the audit chain verified and counted. At most 24h.
        #[arg(long, value_parser = parse_soak_duration)]
        soak: Option<Duration>,
        /// The soak's window: one line of figures each, the same faults in each.
        #[arg(long, default_value = "60s", value_parser = parse_bench_duration, requires = "soak")]
        window: Duration,
    },
    /// Print the pseudonym of a personal identity number in a domain (e.g. for a log extract
    /// by hand). The number is read as 12 digits, or as YYYYMMDD-NNNN.
    /// Print a person's pseudonym; the number is read from standard input (never the command
    /// line, which other users and the shell's history can see).
    Pseudonymise {
        #[arg(long, default_value = "audit")]
        domain: String,
        /// Every key's pseudonym, newest first, instead of the newest only.
        #[arg(long)]
        all: bool,
        /// The gateway's configuration, whose keys make the pseudonyms (required: the
        /// example's keys say nothing of a real gateway's).
        #[arg(long, env = "BRYGGA_CONFIG")]
        config: PathBuf,
        /// Caught only to be refused without echoing it (clap's own error would quote it).
        #[arg(hide = true)]
        number: Option<String>,
    },
    /// The audit chain.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The outbox of AF's events waiting for delivery to the case systems.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Development PKI.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Simulators of the other parties.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Print a development JWT signed with an example municipality's identity-provider key.
    Token {
        /// The municipality's kommunkod, e.g. 0180.
        #[arg(long)]
        kommun: String,
        /// The case worker's HSA-id.
        #[arg(long)]
        sub: String,
        /// The purpose code.
        #[arg(long)]
        syfte: String,
        #[arg(long)]
        config: Option<PathBuf>,
        /// The ES256 key (default: certs-example/idp-KOMMUN.key).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Bind the token to this client certificate (RFC 8705 `cnf.x5t#S256`).
        #[arg(long)]
        bind_cert: Option<PathBuf>,
        /// Lifetime, e.g. 5m (at most 24h).
        #[arg(long, default_value = "5m", value_parser = parse_lifetime)]
        lifetime: Duration,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Write a development PKI like certs-example/ (public, for development only).
    Generate {
        #[arg(long)]
        out: PathBuf,
        /// Validity in days (1 to 36500) of the CAs, client certificates and CRLs.
        #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(i64).range(1..=36500))]
        days: i64,
        /// Validity in days of the server certificates (at most --days). Mozilla's intermediate
        /// TLS profile wants at most 366.
        #[arg(long, default_value_t = brygga::devkit::certs::SERVER_CERT_DAYS, value_parser = clap::value_parser!(i64).range(1..=36500))]
        server_days: i64,
    },
    /// Write a CRL signed by a CA, revoking the given certificates (none: an empty CRL).
    Crl {
        #[arg(long)]
        ca_cert: PathBuf,
        #[arg(long)]
        ca_key: PathBuf,
        /// Certificates (PEM) to revoke.
        #[arg(long)]
        revoke: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Days until the next update.
        #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(i64).range(1..=36500))]
        days: i64,
    },
}

/// Where the audit store is: `--store`, or the store of a gateway configuration.
#[derive(clap::Args)]
struct StoreArgs {
    /// The audit store: the SQLite file.
    #[arg(long)]
    store: Option<String>,
    /// A gateway configuration: its audit store, pseudonym keys and checkpoint key.
    #[arg(long, env = "BRYGGA_CONFIG")]
    config: Option<PathBuf>,
    /// Who runs the command, for its own record in the chain (default: $USER).
    #[arg(long)]
    operator: Option<String>,
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// The deliveries waiting (pending) and given up (dead), or those in --state.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// pending, dead, delivered or dropped; repeat for several.
        #[arg(long)]
        state: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Try a pending delivery now, or a dead one again (its maximum age counted from now).
    Retry {
        #[command(flatten)]
        store: StoreArgs,
        /// The delivery's number (`seq` in the list).
        seq: i64,
    },
    /// Do not deliver it; its stored event is erased.
    Drop {
        #[command(flatten)]
        store: StoreArgs,
        seq: i64,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every record's hash and link and every checkpoint's signature; exit 1 naming the
    /// first record that was changed, removed, reordered or inserted.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// The gateway's checkpoint public keys (Ed25519, PEM), the current one and those
        /// that signed before it (give it once per key); with --config, the signing key's and
        /// `audit.previous_public_keys`.
        #[arg(long)]
        public_key: Vec<PathBuf>,
        /// The witness file the gateway appends each signed checkpoint to (default with
        /// --config: `audit.witness`): the store must still hold every head it witnessed.
        #[arg(long)]
        witness: Option<PathBuf>,
        /// Check this file instead of the store: an `audit export` (the whole chain) or an
        /// `audit query --format json` extract (its records and their proof).
        #[arg(long)]
        export: Option<PathBuf>,
        /// Show progress on stderr even when it is not a terminal.
        #[arg(long)]
        progress: bool,
    },
    /// The log extract for a person or a case: who, organisation, when, which operation,
    /// which data categories, purpose and legal basis.
    Query {
        #[command(flatten)]
        store: StoreArgs,
        /// The person (12 digits or YYYYMMDD-NNNN); needs --config for the pseudonym keys.
        #[arg(long, required_unless_present = "arende")]
        personnummer: Option<String>,
        /// The case id (Arendeidentitet).
        #[arg(long)]
        arende: Option<String>,
        /// From this date (2026-11-01) or RFC 3339 time, inclusive.
        #[arg(long)]
        from: Option<String>,
        /// To this date or RFC 3339 time, inclusive.
        #[arg(long)]
        to: Option<String>,
        /// text (default), html, pdf, or json (with the proof `audit verify --export` checks).
        #[arg(long, value_enum, default_value = "text")]
        format: brygga::store::extract::Format,
        /// The same as --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Write to this file instead of stdout (a PDF is not written to a terminal).
        #[arg(long)]
        output: Option<PathBuf>,
        /// The checkpoint public keys the chain is verified with for the header (default with
        /// --config: the signing key's and `audit.previous_public_keys`).
        #[arg(long)]
        public_key: Vec<PathBuf>,
        /// Why the extract is made (recorded with it), e.g. a data subject's request.
        #[arg(long)]
        syfte: Option<String>,
    },
    /// Every record as JSON Lines (each record's canonical fields and its hash).
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// Write to this file instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// A random sample of the accesses in a period, for systematic follow-up (loggkontroll);
    /// the draw is recorded in the chain before it is shown.
    Sample {
        #[command(flatten)]
        store: StoreArgs,
        /// From this date (2026-11-01) or RFC 3339 time, inclusive.
        #[arg(long)]
        from: String,
        /// To this date or RFC 3339 time, inclusive.
        #[arg(long)]
        to: String,
        /// How many accesses to draw (all of them when the period holds fewer).
        #[arg(long)]
        n: u64,
        #[arg(long, value_enum, default_value = "text")]
        format: brygga::store::extract::Format,
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Record a reviewer's verdict on one access in the chain.
    Review {
        #[command(flatten)]
        store: StoreArgs,
        /// The record reviewed.
        #[arg(long)]
        record: u64,
        #[arg(long, value_enum)]
        verdict: brygga::store::audit::Verdict,
        /// The sample it was drawn in (its id), checked against the recorded draw.
        #[arg(long)]
        sample: Option<String>,
        /// Where the follow-up is kept (a case number), not a description.
        #[arg(long)]
        reference: Option<String>,
    },
}

#[derive(Subcommand)]
enum SimCommand {
    /// Run the AF simulator.
    Af {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the case-system simulator: receives AF's events as the gateway delivers them,
    /// lists them at GET /mottaget, and can be told to fail or be slow at POST /styr.
    Kommun {
        #[arg(long)]
        config: PathBuf,
    },
}

fn parse_bench_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d > Duration::from_secs(3600) {
        return Err("must be at most 1h".into());
    }
    Ok(d)
}

fn parse_soak_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() || d > Duration::from_secs(86_400) {
        return Err("must be from 1s to 24h".into());
    }
    Ok(d)
}

fn parse_traffic(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.1..=1000.0).contains(&r) => Ok(r),
        _ => Err("must be a number of requests per second from 0.1 to 1000".into()),
    }
}

fn parse_lifetime(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() || d > Duration::from_secs(86_400) {
        return Err("must be longer than zero and at most 24h".into());
    }
    Ok(d)
}

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
    let quiet = matches!(
        cli.command,
        Command::Demo { serve: false, .. }
            | Command::Token { .. }
            | Command::CheckConfig { .. }
            | Command::Certs { .. }
            | Command::Validate { .. }
            | Command::Bench { .. }
            | Command::Pseudonymise { .. }
            | Command::Audit { .. }
            | Command::Outbox { .. }
    );
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
            demo::wait_for_signal().await;
            tracing::info!("signal received; draining");
            gw.shutdown().await;
        }
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
                    () = brygga::devkit::demo::wait_for_signal() => return Err(anyhow!("interrupted")),
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
                () = brygga::devkit::demo::wait_for_signal() => return Err(anyhow!("interrupted")),
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
            demo::wait_for_signal().await;
            sim.shutdown().await;
        }
        Command::Sim {
            command: SimCommand::Kommun { config },
        } => {
            let settings = brygga::devkit::sim_kommun::KommunSimSettings::load(&config)
                .map_err(|e| anyhow!(e))?;
            let sim = brygga::devkit::sim_kommun::start(&settings, None)
                .await
                .map_err(|e| anyhow!(e))?;
            println!("{}", serde_json::json!({ "kommun_sim_url": sim.url() }));
            demo::wait_for_signal().await;
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
