//! The command line's shape: every command, its arguments and their checks (clap). `main.rs`
//! parses it, sets up logging and calls the library.

use std::path::PathBuf;
#[cfg(feature = "devkit")]
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "brygga",
    version,
    about = "Hardened data-exchange gateway between Arbetsförmedlingen and municipal case systems"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "BRYGGA_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Worker threads of the async runtime (default: one per core).
    #[arg(long, global = true, env = "BRYGGA_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_threads: Option<u16>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
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
    #[cfg(feature = "devkit")]
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
    #[cfg(feature = "devkit")]
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
    #[cfg(feature = "devkit")]
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Simulators of the other parties.
    #[cfg(feature = "devkit")]
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Print a development JWT signed with an example municipality's identity-provider key.
    #[cfg(feature = "devkit")]
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

impl Command {
    /// Whether the command's own output is what the user reads, so logging stays at warnings.
    pub fn is_quiet(&self) -> bool {
        match self {
            #[cfg(feature = "devkit")]
            Command::Demo { serve, .. } => !serve,
            #[cfg(feature = "devkit")]
            Command::Token { .. } | Command::Certs { .. } | Command::Bench { .. } => true,
            Command::CheckConfig { .. }
            | Command::Validate { .. }
            | Command::Pseudonymise { .. }
            | Command::Audit { .. }
            | Command::Outbox { .. } => true,
            _ => false,
        }
    }
}

#[cfg(feature = "devkit")]
#[derive(Subcommand)]
pub enum CertsCommand {
    /// Write a development PKI like certs-example/ (public, for development only).
    Generate {
        #[arg(long)]
        out: PathBuf,
        /// Validity in days (1 to 36500) of the CAs, client certificates and CRLs.
        #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(i64).range(1..=36500))]
        days: i64,
        /// Validity in days of the server certificates (at most --days). Mozilla's intermediate
        /// TLS profile wants at most 366.
        #[arg(long, default_value_t = crate::devkit::certs::SERVER_CERT_DAYS, value_parser = clap::value_parser!(i64).range(1..=36500))]
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
pub struct StoreArgs {
    /// The audit store: the SQLite file.
    #[arg(long)]
    pub store: Option<String>,
    /// A gateway configuration: its audit store, pseudonym keys and checkpoint key.
    #[arg(long, env = "BRYGGA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Who runs the command, for its own record in the chain (default: $USER).
    #[arg(long)]
    pub operator: Option<String>,
}

#[derive(Subcommand)]
pub enum OutboxCommand {
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
pub enum AuditCommand {
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
        format: crate::cli::extract::Format,
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
        format: crate::cli::extract::Format,
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
        verdict: crate::store::audit::Verdict,
        /// The sample it was drawn in (its id), checked against the recorded draw.
        #[arg(long)]
        sample: Option<String>,
        /// Where the follow-up is kept (a case number), not a description.
        #[arg(long)]
        reference: Option<String>,
    },
}

#[cfg(feature = "devkit")]
#[derive(Subcommand)]
pub enum SimCommand {
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

#[cfg(feature = "devkit")]
fn parse_bench_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d > Duration::from_secs(3600) {
        return Err("must be at most 1h".into());
    }
    Ok(d)
}

#[cfg(feature = "devkit")]
fn parse_soak_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() || d > Duration::from_secs(86_400) {
        return Err("must be from 1s to 24h".into());
    }
    Ok(d)
}

#[cfg(feature = "devkit")]
fn parse_traffic(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.1..=1000.0).contains(&r) => Ok(r),
        _ => Err("must be a number of requests per second from 0.1 to 1000".into()),
    }
}

#[cfg(feature = "devkit")]
fn parse_lifetime(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() || d > Duration::from_secs(86_400) {
        return Err("must be longer than zero and at most 24h".into());
    }
    Ok(d)
}
