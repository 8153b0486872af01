//! Commands over the configuration: `brygga check-config` and `brygga pseudonymise`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::anyhow;

use crate::config::Config;

/// `brygga check-config`: every problem at once, and the example keys refused as `serve`
/// would refuse them.
pub fn check_config(config: &Path) -> anyhow::Result<ExitCode> {
    match Config::load(config) {
        Ok(c) => {
            if let Err(e) = crate::config::example_keys::refuse_in_production(&c, false) {
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
    }
    Ok(ExitCode::SUCCESS)
}

/// `brygga pseudonymise`: the pseudonym of a number read from standard input, never from
/// the command line.
pub fn pseudonymise(
    domain: &str,
    all: bool,
    config: &Path,
    number: Option<String>,
) -> anyhow::Result<ExitCode> {
    if number.is_some() {
        return Err(anyhow!(
            "the number is never given on the command line (the process list and the shell's history would keep it); give it on standard input"
        ));
    }
    let config = Config::load(config).map_err(|e| anyhow!("{e}"))?;
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
    let person = crate::model::Personnummer::parse_written(number)
        .map_err(|e| anyhow!("the number is not a valid personnummer or samordningsnummer: {e}"))?;
    let found = if all {
        config.pseudonyms.all(domain, &person)
    } else {
        config
            .pseudonyms
            .pseudonym(domain, &person)
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
    Ok(ExitCode::SUCCESS)
}
