//! The operator's commands over the event outbox: `brygga outbox list|retry|drop`. Each is
//! recorded in the audit chain (direction `drift`): a listing before it is shown, a change
//! with its outcome right after it is made (neither discloses personal data).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::anyhow;

use crate::cli::args::{OutboxCommand, StoreArgs};
use crate::cli::dpo::Store;
use crate::store::outbox::{Listed, Outbox};

/// `brygga outbox list`: the deliveries in `states` (pending and dead when empty).
pub async fn list(store: &Store, states: &[String], json: bool) -> Result<(), String> {
    let mut entry = store.entry("outbox list", Instant::now());
    entry.direction = "drift".into();
    store.record(entry).await?;
    let outbox = Outbox::open(&store.path).map_err(|e| e.to_string())?;
    let wanted: Vec<&str> = if states.is_empty() {
        vec!["pending", "dead"]
    } else {
        states.iter().map(String::as_str).collect()
    };
    // AF's event ids are AF's words: masked should one ever spell an identity number.
    let rows: Vec<Listed> = outbox
        .list(&wanted, 10_000)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|r| Listed {
            event_id: crate::model::ident::mask_identity_numbers(&r.event_id),
            ..r
        })
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return Ok(());
    }
    println!(
        "{:<6} {:<36} {:<22} {:<12} {:<16} {:<9} {:>8}  {:<24}  last error",
        "seq", "event", "type", "client", "case", "state", "attempts", "waiting since"
    );
    for r in &rows {
        println!(
            "{:<6} {:<36} {:<22} {:<12} {:<16} {:<9} {:>8}  {:<24}  {}",
            r.seq,
            r.event_id,
            r.typ,
            r.client,
            r.arende,
            r.state,
            r.attempts,
            r.since,
            r.last_error.as_deref().unwrap_or("-")
        );
    }
    println!("{} delivery(ies)", rows.len());
    Ok(())
}

/// What an operator does to one delivery.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    Retry,
    Drop,
}

/// `brygga outbox retry|drop SEQ`.
pub async fn act(store: &Store, seq: i64, action: Action) -> Result<Listed, String> {
    let outbox = Outbox::open(&store.path).map_err(|e| e.to_string())?;
    let before = outbox
        .get(seq)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("there is no delivery {seq} in the outbox"))?;
    let name = match action {
        Action::Retry => "outbox retry",
        Action::Drop => "outbox drop",
    };
    let mut entry = store.entry(name, Instant::now());
    entry.direction = "drift".into();
    entry.arende = Some(before.arende.clone());
    entry.operation = format!("{name} {seq}");
    // Recorded with its outcome, right after the change (it discloses nothing).
    let now = time::OffsetDateTime::now_utc();
    let done = match action {
        Action::Retry => outbox.retry_now(seq, now),
        Action::Drop => outbox.drop_delivery(seq, now),
    }
    .map_err(|e| e.to_string())?;
    entry.outcome = if done.is_some() { "OK" } else { "EJ_MOJLIG" }.into();
    store.record(entry).await?;
    // A dropped payload is erased from the store's files too; a running gateway reading the
    // store may hold its log for a moment.
    if matches!(action, Action::Drop) && done.is_some() {
        let mut emptied = false;
        for _ in 0..50 {
            if outbox.erase_from_files().map_err(|e| e.to_string())? {
                emptied = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        if !emptied {
            return Err(format!(
                "delivery {seq} was dropped and its payload erased in the database, but the store's write-ahead log, which may still hold it, could not be emptied within 5 s (a reader held it); the gateway empties it when it next erases a payload or starts"
            ));
        }
    }
    done.ok_or_else(|| {
        format!(
            "delivery {seq} is {}: only a pending or dead one can be retried (and only while its event is kept) or dropped",
            before.state
        )
    })
}

/// Runs one `brygga outbox` command.
pub async fn command(command: OutboxCommand) -> anyhow::Result<ExitCode> {
    let resolve = |a: StoreArgs| {
        crate::cli::dpo::Store::resolve(a.store.as_deref(), a.config.as_deref(), a.operator)
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
            list(&resolve(store)?, &state, json)
                .await
                .map_err(|e| anyhow!(e))?;
        }
        OutboxCommand::Retry { store, seq } => {
            let d = act(&resolve(store)?, seq, Action::Retry)
                .await
                .map_err(|e| anyhow!(e))?;
            println!(
                "delivery {seq} of event {} to {} is pending again",
                d.event_id, d.client
            );
        }
        OutboxCommand::Drop { store, seq } => {
            let d = act(&resolve(store)?, seq, Action::Drop)
                .await
                .map_err(|e| anyhow!(e))?;
            println!(
                "delivery {seq} of event {} to {} is dropped",
                d.event_id, d.client
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
