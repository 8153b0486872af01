//! The `brygga` command line: parses arguments, sets up logging and calls into the library.

use std::process::ExitCode;

use clap::Parser;

use brygga::cli::args::*;

// Each exchange allocates many small, short-lived strings (XML tree, JSON, headers); mimalloc
// serves those with less CPU than glibc's malloc (measured with `brygga bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    match runtime.block_on(brygga::cli::run(cli.command, apply_log_level)) {
        Ok(code) => code,
        Err(e) => {
            // The last line of defence: an error quoting what an operator typed.
            let text = brygga::model::ident::mask_identity_numbers(&format!("{e:#}"));
            eprintln!("error: {text}");
            ExitCode::FAILURE
        }
    }
}
