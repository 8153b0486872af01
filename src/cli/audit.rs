//! `brygga audit verify|query|sample|review|export`: the data-protection officer's commands
//! over the chain (the work is in `dpo.rs`).

use std::process::ExitCode;

use anyhow::anyhow;

use crate::cli::args::{AuditCommand, StoreArgs};

/// Runs one audit command. `verify` exits 0 when the chain verifies, 1 when it is tampered
/// with, 2 when it could not be checked.
pub async fn command(command: AuditCommand) -> anyhow::Result<ExitCode> {
    let resolve = |a: StoreArgs| {
        crate::cli::dpo::Store::resolve(a.store.as_deref(), a.config.as_deref(), a.operator)
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
                Some(file) => {
                    crate::cli::dpo::verify_export(&file, &public_key, store.config.as_deref())
                }
                None => match resolve(store) {
                    Ok(store) => {
                        crate::cli::dpo::verify(&store, &public_key, witness.as_deref(), progress)
                            .await
                    }
                    Err(e) => Err(e.to_string()),
                },
            };
            match verdict {
                Ok(true) => {}
                Ok(false) => return Ok(ExitCode::from(1)),
                Err(e) => {
                    let e = crate::model::ident::mask_identity_numbers(&e);
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
            let q = crate::cli::dpo::Query {
                personnummer,
                arende,
                from,
                to,
                format: if json {
                    crate::cli::extract::Format::Json
                } else {
                    format
                },
                output,
                public_keys: public_key,
                syfte,
            };
            crate::cli::dpo::query(&store, q)
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
            let q = crate::cli::dpo::SampleQuery {
                from,
                to,
                n,
                format,
                output,
            };
            crate::cli::dpo::sample(&store, q)
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
            let seq = crate::cli::dpo::review(&store, record, verdict, sample, reference)
                .await
                .map_err(|e| anyhow!(e))?;
            println!(
                "the review of record {record} ({}) is record {seq} of the chain",
                verdict.as_str()
            );
        }
        AuditCommand::Export { store, output } => {
            let store = resolve(store)?;
            let n = crate::cli::dpo::export(&store, output.as_deref())
                .await
                .map_err(|e| anyhow!(e))?;
            eprintln!("{n} record(s) exported");
        }
    }
    Ok(ExitCode::SUCCESS)
}
