//! The data-protection officer's commands over the audit chain: verify it, extract what
//! happened about a person or a case, export it all. Each command is itself recorded in the
//! chain; a command that shows personal data is recorded before it shows anything.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::model::Personnummer;
use crate::store::audit::{self, Action, Entry, Filter};

/// Where the store is and what else the command knows: from `--store`, or from a gateway
/// configuration (which also gives the pseudonym keys and the checkpoint key).
pub struct Store {
    pub path: PathBuf,
    pub config: Option<Config>,
    /// Who runs the command, for its own audit record.
    pub operator: String,
}

impl Store {
    /// `--store` wins over the configuration's store; one of them is needed.
    pub fn resolve(
        store: Option<&str>,
        config: Option<&Path>,
        operator: Option<String>,
    ) -> Result<Self, String> {
        let config = config
            .map(|c| Config::load(c).map_err(|e| e.to_string()))
            .transpose()?;
        let path = match (store, &config) {
            (Some(s), _) => {
                audit::open_existing(s).map_err(|e| e.to_string())?;
                PathBuf::from(s)
            }
            (None, Some(c)) => {
                let p = c.audit.store.clone();
                audit::open_existing(&p.to_string_lossy()).map_err(|e| e.to_string())?;
                p
            }
            (None, None) => {
                return Err("give the audit store: --store FILE or --config FILE".into());
            }
        };
        let operator = operator
            .or_else(|| std::env::var("USER").ok())
            .or_else(|| std::env::var("LOGNAME").ok())
            .unwrap_or_else(|| "okand".into());
        let operator = kept_operator_text("--operator", &operator)?;
        Ok(Self {
            path,
            config,
            operator,
        })
    }

    /// Appends this command's own record and waits until it is durable. The command signs no
    /// checkpoint (it may have just found the chain tampered with, and a DPO's tool should not
    /// vouch for a head): the gateway's next checkpoint covers the record.
    pub(crate) async fn record(&self, entry: Entry) -> Result<u64, String> {
        let policy = audit::CheckpointPolicy {
            every_records: u64::MAX,
            every: Duration::from_secs(3600),
            witness: None,
            retention: None,
        };
        let log = audit::AuditLog::start(&self.path, None, policy).map_err(|e| e.to_string())?;
        let seq = log.append(entry).await.map_err(|e| e.to_string())?;
        // Dropping the writer waits for its thread.
        tokio::task::spawn_blocking(move || drop(log))
            .await
            .map_err(|e| e.to_string())?;
        Ok(seq)
    }

    pub(crate) fn entry(&self, command: &str, started: Instant) -> Entry {
        Entry {
            time: audit::now(),
            korrelationsid: uuid::Uuid::new_v4().to_string(),
            direction: "dpo".into(),
            operation: command.into(),
            action: Action::Read,
            organisation: self
                .config
                .as_ref()
                .map(|c| c.system_id.clone())
                .unwrap_or_else(|| "-".into()),
            handlaggare: Some(self.operator.clone()),
            arende: None,
            subject: None,
            syfte: None,
            lagrum: None,
            kategorier: Vec::new(),
            outcome: "OK".into(),
            af_status: None,
            duration_ms: started.elapsed().as_millis() as u64,
            genesis: None,
            enhet: None,
            funktion: None,
            personuppgiftsbitrade: None,
            skyddad_identitet: false,
            pruned: None,
            sample: None,
            review: None,
        }
    }
}

/// `brygga audit verify`. Returns whether the chain (and the witness, when one is given or
/// configured) verified, and prints the verdict; an error means it could not be checked at
/// all (an unreadable store or witness, a bad key file), which a nightly job must tell apart
/// from an attack.
pub async fn verify(
    store: &Store,
    public_keys: &[std::path::PathBuf],
    witness: Option<&Path>,
    progress: bool,
) -> Result<bool, String> {
    let started = Instant::now();
    let public = public_keys_of(public_keys, store.config.as_ref())?;
    let public: Vec<&[u8]> = public.iter().map(Vec::as_slice).collect();
    // Read as it is: a tool never makes an audit store of what is not one.
    let conn = audit::open_existing(&store.path.to_string_lossy()).map_err(|e| e.to_string())?;
    let witness = witness.map(Path::to_path_buf).or_else(|| {
        store
            .config
            .as_ref()
            .and_then(|c| c.audit.policy.witness.clone())
    });
    let witness_text = witness
        .as_ref()
        .map(|w| {
            std::fs::read_to_string(w).map_err(|e| format!("the witness {}: {e}", w.display()))
        })
        .transpose()?;
    let mut last_shown = Instant::now();
    let mut bar = |done: u64, total: u64| {
        if progress && (last_shown.elapsed() >= Duration::from_millis(100) || done == total) {
            last_shown = Instant::now();
            let pct = (done * 100).checked_div(total).unwrap_or(100).min(100);
            let filled = (pct / 5) as usize;
            eprint!(
                "\rverifying [{}{}] {done}/{total} records ({pct} %)",
                "#".repeat(filled),
                ".".repeat(20 - filled)
            );
            if done == total {
                eprintln!();
            }
        }
    };
    // An unreadable store or a bad key file is an error, not a verdict on the chain.
    let mut verdict = audit::verify(&conn, &public, &mut bar).map_err(|e| e.to_string())?;
    // The witness proves the store was not cut below, or replaced behind, what left the host.
    let mut witnessed = None;
    if let (Some(text), Ok(v)) = (&witness_text, &verdict) {
        match audit::verify_witness(&conn, text, &public, v.pruned.as_ref()).map_err(|e| {
            format!(
                "the witness {}: {e}",
                witness
                    .as_ref()
                    .map_or_else(String::new, |w| w.display().to_string())
            )
        })? {
            Ok(n) => witnessed = Some(n),
            Err(t) => verdict = Err(t),
        }
    }
    drop(conn);
    let shown = store.path.display();
    let mut entry = store.entry("audit verify", started);
    let ok = match &verdict {
        Ok(v) => {
            let signed = match v.signed_through {
                0 => "no checkpoint signs them yet".to_owned(),
                n if n == v.records => format!("signed through record {n}"),
                n => format!(
                    "signed through record {n}, the {} after it linked but not yet signed",
                    v.records - n
                ),
            };
            println!(
                "{shown}: the chain verifies: {} record(s), {} signed checkpoint(s), {signed}; head {}",
                v.records, v.checkpoints, v.head
            );
            println!("chain {} (genesis key {})", v.chain, v.genesis_key);
            if let Some(p) = &v.pruned {
                println!(
                    "pruned (gallring): records 1 through {} removed, all older than {} (retention {}); the chain starts at the checkpoint there",
                    p.through,
                    p.before,
                    humantime::format_duration(Duration::from_secs(p.retention_seconds))
                );
            }
            if let Some(w) = witnessed {
                println!(
                    "the witness holds {} checkpoint(s); the store holds every head it witnessed{}",
                    w.held + w.pruned,
                    if w.pruned > 0 {
                        format!(" ({} before the pruned start)", w.pruned)
                    } else {
                        String::new()
                    }
                );
            }
            true
        }
        Err(t) => {
            println!("{shown}: TAMPERED: {t}");
            entry.outcome = "MANIPULERAD".into();
            false
        }
    };
    // The verdict stands whether or not it can be recorded (a read-only copy, say).
    if let Err(e) = store.record(entry).await {
        eprintln!("warning: this verification could not be recorded in the chain: {e}");
    }
    Ok(ok)
}

/// The checkpoint public keys: the files given, or the configuration's (the key that signs
/// now, and those that signed before it).
fn public_keys_of(given: &[PathBuf], config: Option<&Config>) -> Result<Vec<Vec<u8>>, String> {
    match (given, config) {
        ([_, ..], _) => given
            .iter()
            .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
            .collect(),
        ([], Some(c)) => Ok(std::iter::once(c.audit.public_key_pem()?.into_bytes())
            .chain(c.audit.previous_public_keys.iter().cloned())
            .collect()),
        ([], None) => Err("give the checkpoint public key: --public-key FILE (or --config)".into()),
    }
}

/// `brygga audit verify --export FILE`: checks an `audit export` (the whole chain, as the
/// store would be verified) or a JSON extract (each record's body and hash, the links from
/// it to a signed checkpoint), away from the store. Nothing is recorded: there is no store.
pub fn verify_export(
    file: &Path,
    public_keys: &[PathBuf],
    config: Option<&Path>,
) -> Result<bool, String> {
    let config = config
        .map(|c| Config::load(c).map_err(|e| e.to_string()))
        .transpose()?;
    let public = public_keys_of(public_keys, config.as_ref())?;
    let public: Vec<&[u8]> = public.iter().map(Vec::as_slice).collect();
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let shown = file.display();
    // An extract is one JSON document with its header; an export is JSON Lines.
    if let Ok(x) = serde_json::from_str::<crate::cli::extract::Extract>(&text) {
        let proof = x.proof.as_ref().ok_or(
            "the extract carries no proof: the chain could not be proven when it was made (its header says why)",
        )?;
        let proven = audit::check_proof(proof, &public).map_err(|e| e.to_string())?;
        let verdict = proven.and_then(|p| {
            shows_what_was_proven(&x.records, &p)?;
            // The header is the maker's word, but the chain it names must be the proof's.
            match &x.extract.chain_id {
                Some(named) if *named != p.chain => Err(format!(
                    "the header names chain {named}, the proof chain {}",
                    p.chain
                )),
                _ => Ok(p),
            }
        });
        // Records shown, none proven: not a verdict either way.
        if let Ok(p) = &verdict
            && p.records.is_empty()
            && !x.records.is_empty()
        {
            return Err(format!(
                "{shown}: none of its {} record(s) is proven: no checkpoint signed them when it was made; make it again after the gateway's next checkpoint",
                x.records.len()
            ));
        }
        return Ok(match verdict {
            Ok(p) => {
                println!(
                    "{shown}: the extract verifies: {} record(s) proven against {} signed checkpoint(s) of chain {}{}",
                    p.records.len(),
                    p.checkpoints,
                    p.chain,
                    if p.unsigned.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; {} record(s) after the last checkpoint are not signed yet, so not proven",
                            p.unsigned.len()
                        )
                    }
                );
                true
            }
            Err(why) => {
                println!("{shown}: TAMPERED: {why}");
                false
            }
        });
    }
    match audit::verify_export_lines(&text, &public).map_err(|e| format!("{shown}: {e}"))? {
        Ok(v) => {
            println!(
                "{shown}: the export verifies: {} record(s), {} signed checkpoint(s), signed through record {}; chain {}",
                v.records, v.checkpoints, v.signed_through, v.chain
            );
            Ok(true)
        }
        Err(t) => {
            println!("{shown}: TAMPERED: {t}");
            Ok(false)
        }
    }
}

/// An extract's rows must be the records its proof holds, each once, in order; the ones no
/// checkpoint signs yet (listed as such) only after the last checkpoint the proof holds.
fn shows_what_was_proven(
    rows: &[crate::cli::extract::Row],
    p: &audit::Proven,
) -> Result<(), String> {
    if !rows.windows(2).all(|w| w[0].seq < w[1].seq) {
        return Err(
            "the extract's records are not in the chain's order, or one is repeated".into(),
        );
    }
    let last_signed = p.last_checkpoint.unwrap_or(0);
    let mut unsigned = p.unsigned.iter().peekable();
    let mut proven = 0;
    for row in rows {
        match p.records.get(&row.seq) {
            Some(r) if r.entry == row.entry => proven += 1,
            Some(_) => {
                return Err(format!(
                    "record {} as the extract shows it is not the record the proof holds",
                    row.seq
                ));
            }
            None if unsigned.peek() == Some(&&row.seq) && row.seq > last_signed => {
                unsigned.next();
            }
            None => {
                return Err(format!(
                    "record {} is in the extract but not in its proof",
                    row.seq
                ));
            }
        }
    }
    if proven != p.records.len() || unsigned.next().is_some() {
        return Err("the proof holds other records than the extract shows".into());
    }
    Ok(())
}

/// Text an operator gives that is kept in the chain (who they are, why they ran the
/// command): short, printable, and never an identity number, which is not echoed.
fn kept_operator_text(flag: &str, s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty()
        || s.chars().count() > 128
        || crate::model::lexical::hidden_character(s).is_some()
    {
        return Err(format!("{flag} must be 1 to 128 printable characters"));
    }
    if crate::model::ident::embeds_identity_number(s) {
        return Err(format!(
            "{flag} embeds a personnummer or samordningsnummer, which the audit chain never holds"
        ));
    }
    Ok(s.to_owned())
}

/// What `brygga audit query` selects.
pub struct Query {
    pub personnummer: Option<String>,
    pub arende: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub format: crate::cli::extract::Format,
    /// Where it is written (stdout when None).
    pub output: Option<PathBuf>,
    /// The checkpoint public keys for the header's verification (else the configuration's).
    pub public_keys: Vec<PathBuf>,
    /// Why the extract is made, for its own record (e.g. a data subject's request).
    pub syfte: Option<String>,
}

/// `brygga audit query`: the log extract for a person or a case.
pub async fn query(store: &Store, q: Query) -> Result<(), String> {
    let started = Instant::now();
    let mut filter = Filter {
        from: q.from.as_deref().map(|s| bound(s, false)).transpose()?,
        to: q.to.as_deref().map(|s| bound(s, true)).transpose()?,
        arende: q.arende.clone(),
        ..Filter::default()
    };
    let mut entry = store.entry("audit query", started);
    if let Some(number) = &q.personnummer {
        let typed;
        let number = if number == "-" {
            // From standard input: kept out of the process list and the shell's history.
            typed = std::io::read_to_string(std::io::Read::take(std::io::stdin(), 64))
                .map_err(|e| format!("--personnummer -: reading standard input: {e}"))?;
            typed.trim()
        } else {
            number.as_str()
        };
        // The number is never echoed, not even in an error.
        let person = Personnummer::parse_written(number).map_err(|e| {
            format!("--personnummer is not a valid personnummer or samordningsnummer: {e}")
        })?;
        let config = store.config.as_ref().ok_or(
            "--personnummer needs the audit pseudonym keys: give --config (with or without --store)",
        )?;
        filter.subjects = config.pseudonyms.all("audit", &person);
        if filter.subjects.is_empty() {
            return Err("the configuration has no key for the domain 'audit'".into());
        }
        entry.subject = config.pseudonyms.pseudonym("audit", &person);
    }
    if filter.subjects.is_empty() && filter.arende.is_none() {
        return Err("give --personnummer N or --arende ID".into());
    }
    entry.arende = q
        .arende
        .as_deref()
        .map(|a| kept_operator_text("--arende", a))
        .transpose()?;
    entry.syfte = q
        .syfte
        .as_deref()
        .map(|s| kept_operator_text("--syfte", s))
        .transpose()?;
    let format = q.format;
    if format == crate::cli::extract::Format::Pdf
        && q.output.is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
    {
        return Err("a PDF is not written to a terminal: give --output FILE".into());
    }
    let made_at = entry.time.clone();
    let reason = entry.syfte.clone();
    // Recorded before anything is shown: the extract itself is an access.
    store.record(entry).await?;
    let conn = audit::open_existing(&store.path.to_string_lossy()).map_err(|e| e.to_string())?;
    // The header says whether the chain verified when the extract was made.
    let (chain_verified, chain, chain_id, pruned) = match public_keys_of(
        &q.public_keys,
        store.config.as_ref(),
    ) {
        Ok(public) => {
            let public: Vec<&[u8]> = public.iter().map(Vec::as_slice).collect();
            match audit::verify(&conn, &public, &mut |_, _| {}) {
                Ok(Ok(v)) => (
                    true,
                    format!(
                        "verified when this extract was made: {} record(s), signed through record {}",
                        v.records, v.signed_through
                    ),
                    Some(v.chain),
                    v.pruned,
                ),
                Ok(Err(t)) => (false, format!("TAMPERED: {t}"), None, None),
                Err(e) => (false, format!("could not be verified: {e}"), None, None),
            }
        }
        Err(e) => (false, format!("not verified: {e}"), None, None),
    };
    let records = audit::query(&conn, &filter).map_err(|e| e.to_string())?;
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    // A chain that cannot be proven (its genesis gone) still gives its extract, saying so.
    let proof = audit::prove(&conn, &seqs).ok();
    drop(conn);
    let describe = |kod: &Option<String>| {
        let config = store.config.as_ref()?;
        config
            .syften
            .get(kod.as_deref()?)
            .map(|s| s.beskrivning.clone())
    };
    let mut concerns = Vec::new();
    if q.personnummer.is_some() {
        let keys: Vec<&str> = filter
            .subjects
            .iter()
            .filter_map(|s| s.split_once(':').map(|(k, _)| k))
            .collect();
        concerns.push(format!(
            "the person whose personnummer was given to the command (it is not shown here), searched under every audit pseudonym key ({})",
            keys.join(", ")
        ));
    }
    if let Some(a) = &q.arende {
        concerns.push(format!("the case (ärende) {a}"));
    }
    let mut period = match (&filter.from, &filter.to) {
        (None, None) => "the whole chain".to_owned(),
        (Some(f), None) => format!("from {f}"),
        (None, Some(t)) => format!("before {t}"),
        (Some(f), Some(t)) => format!("from {f}, before {t}"),
    };
    if let Some(p) = pruned {
        period.push_str(&format!(
            "; records older than {} were pruned (gallring) and are not in the chain",
            p.before
        ));
    }
    let extract = crate::cli::extract::Extract {
        extract: crate::cli::extract::Header {
            title: crate::cli::extract::EXTRACT_TITLE.into(),
            concerns: concerns.join("; "),
            period,
            made_by: store.operator.clone(),
            made_at,
            reason,
            chain_verified,
            chain,
            chain_id,
        },
        records: records
            .into_iter()
            .map(|r| crate::cli::extract::Row {
                seq: r.seq,
                syfte_beskrivning: describe(&r.entry.syfte),
                entry: r.entry,
            })
            .collect(),
        proof,
    };
    let bytes = crate::cli::extract::render(&extract, format);
    match &q.output {
        Some(p) => std::fs::write(p, &bytes).map_err(|e| format!("{}: {e}", p.display())),
        None => std::io::stdout()
            .lock()
            .write_all(&bytes)
            .map_err(|e| e.to_string()),
    }
}

/// What `brygga audit sample` draws.
pub struct SampleQuery {
    pub from: String,
    pub to: String,
    pub n: u64,
    pub format: crate::cli::extract::Format,
    pub output: Option<PathBuf>,
}

/// The most a sample may draw: a review is read by a person.
pub const MAX_SAMPLE: u64 = 10_000;

/// `brygga audit sample`: a random sample of the accesses in a period, for systematic
/// follow-up (loggkontroll). The draw is recorded (which records, from how many) before it is
/// shown, so a reviewer cannot draw until the sample suits them without it showing.
pub async fn sample(store: &Store, q: SampleQuery) -> Result<(), String> {
    let started = Instant::now();
    if !(1..=MAX_SAMPLE).contains(&q.n) {
        return Err(format!("--n must be 1 to {MAX_SAMPLE}"));
    }
    let from = bound(&q.from, false)?;
    let to = bound(&q.to, true)?;
    if from >= to {
        return Err("--from must be before --to".into());
    }
    let conn = audit::open_existing(&store.path.to_string_lossy()).map_err(|e| e.to_string())?;
    let population = audit::accesses_between(&conn, &from, &to).map_err(|e| e.to_string())?;
    let drawn = draw(&population, q.n as usize)?;
    let id = uuid::Uuid::new_v4().to_string();
    let mut entry = store.entry("audit sample", started);
    entry.sample = Some(audit::Sample {
        id: id.clone(),
        from: from.clone(),
        to: to.clone(),
        population: population.len() as u64,
        records: drawn.clone(),
    });
    let made_at = entry.time.clone();
    store.record(entry).await?;
    let records = audit::records_by_seq(&conn, &drawn).map_err(|e| e.to_string())?;
    let proof = audit::prove(&conn, &drawn).ok();
    drop(conn);
    let extract = crate::cli::extract::Extract {
        extract: crate::cli::extract::Header {
            title: crate::cli::extract::SAMPLE_TITLE.into(),
            concerns: format!(
                "sample {id} for review (loggkontroll): {} of the {} access(es) in the period, drawn at random; record each verdict with `brygga audit review --sample {id} --record N --verdict godkand|avvikelse|utreds`",
                drawn.len(),
                population.len()
            ),
            period: format!("from {from}, before {to}"),
            made_by: store.operator.clone(),
            made_at,
            reason: Some("loggkontroll".into()),
            chain_verified: false,
            chain: "not verified by the sample: run `brygga audit verify`".into(),
            chain_id: None,
        },
        records: records
            .into_iter()
            .map(|r| crate::cli::extract::Row {
                seq: r.seq,
                syfte_beskrivning: store
                    .config
                    .as_ref()
                    .and_then(|c| c.syften.get(r.entry.syfte.as_deref()?))
                    .map(|s| s.beskrivning.clone()),
                entry: r.entry,
            })
            .collect(),
        proof,
    };
    let bytes = crate::cli::extract::render(&extract, q.format);
    match &q.output {
        Some(p) => std::fs::write(p, &bytes).map_err(|e| format!("{}: {e}", p.display())),
        None => std::io::stdout()
            .lock()
            .write_all(&bytes)
            .map_err(|e| e.to_string()),
    }
}

/// `n` of `population` drawn uniformly without replacement (all of them when it holds fewer),
/// ascending; the randomness is the TLS provider's CSPRNG.
fn draw(population: &[u64], n: usize) -> Result<Vec<u64>, String> {
    let mut pool = population.to_vec();
    let n = n.min(pool.len());
    let random = rustls::crypto::aws_lc_rs::default_provider().secure_random;
    // A partial Fisher–Yates shuffle: the first n places end up a uniform sample.
    for i in 0..n {
        let span = (pool.len() - i) as u64;
        // Rejection sampling: no bias towards small numbers.
        let zone = u64::MAX - (u64::MAX % span);
        let pick = loop {
            let mut b = [0u8; 8];
            random
                .fill(&mut b)
                .map_err(|_| "no randomness from the operating system".to_owned())?;
            let v = u64::from_le_bytes(b);
            if v < zone {
                break v % span;
            }
        };
        pool.swap(i, i + pick as usize);
    }
    pool.truncate(n);
    pool.sort_unstable();
    Ok(pool)
}

/// `brygga audit review`: the reviewer's verdict on one access, recorded in the chain. The
/// record must exist; with `--sample`, it must have been drawn in that sample.
pub async fn review(
    store: &Store,
    record: u64,
    verdict: audit::Verdict,
    sample: Option<String>,
    reference: Option<String>,
) -> Result<u64, String> {
    let started = Instant::now();
    let reference = reference
        .map(|r| {
            let ok = (1..=64).contains(&r.len())
                && r.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:".contains(&b))
                && !crate::model::ident::embeds_identity_number(&r);
            ok.then_some(r).ok_or_else(|| {
                "--reference must be a reference (1 to 64 of A-Z, a-z, 0-9 and -_./:, no identity number), not a description".to_owned()
            })
        })
        .transpose()?;
    let conn = audit::open_existing(&store.path.to_string_lossy()).map_err(|e| e.to_string())?;
    let reviewed = audit::records_by_seq(&conn, &[record]).map_err(|e| e.to_string())?;
    let Some(reviewed) = reviewed.first() else {
        return Err(format!("--record {record}: the chain holds no such record"));
    };
    if reviewed.entry.subject.is_none()
        || matches!(reviewed.entry.direction.as_str(), "dpo" | "kedja")
    {
        return Err(format!(
            "--record {record}: not an access to a person's data ({} {})",
            reviewed.entry.direction, reviewed.entry.operation
        ));
    }
    if let Some(id) = &sample {
        let drawn = audit::find_sample(&conn, id).map_err(|e| e.to_string())?;
        match drawn {
            None => return Err(format!("--sample {id}: the chain holds no such sample")),
            Some(s) if !s.records.contains(&record) => {
                return Err(format!("--record {record} was not drawn in sample {id}"));
            }
            Some(_) => {}
        }
    }
    drop(conn);
    let mut entry = store.entry("audit review", started);
    entry.outcome = verdict.as_str().into();
    entry.review = Some(audit::Review {
        record,
        sample,
        verdict,
        reference,
    });
    store.record(entry).await
}

/// `brygga audit export`: every record as JSON Lines, to `output` or stdout.
pub async fn export(store: &Store, output: Option<&Path>) -> Result<u64, String> {
    let started = Instant::now();
    store.record(store.entry("audit export", started)).await?;
    let conn = audit::open(&store.path).map_err(|e| e.to_string())?;
    match output {
        Some(p) => {
            let file = std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let mut w = std::io::BufWriter::new(file);
            let n = audit::export(&conn, &mut w).map_err(|e| e.to_string())?;
            w.flush().map_err(|e| e.to_string())?;
            Ok(n)
        }
        None => {
            let mut w = std::io::BufWriter::new(std::io::stdout().lock());
            let n = audit::export(&conn, &mut w).map_err(|e| e.to_string())?;
            w.flush().map_err(|e| e.to_string())?;
            Ok(n)
        }
    }
}

/// A `--from`/`--to` bound as record-time text: a date (`--to` includes the whole day) or an
/// RFC 3339 time (`--to` includes that millisecond).
fn bound(s: &str, upper: bool) -> Result<String, String> {
    use time::format_description::well_known::Rfc3339;
    let flag = if upper { "--to" } else { "--from" };
    // A number pasted into the wrong flag is not echoed.
    let shown = crate::model::ident::redact_digit_runs(s);
    let out_of_range = || format!("{flag}: {shown} is outside the years a record can have");
    let at = if let Ok(d) =
        time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
    {
        let d = if upper {
            d.next_day().ok_or_else(out_of_range)?
        } else {
            d
        };
        d.midnight().assume_utc()
    } else {
        let t = time::OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
            format!("{flag}: '{shown}' is neither a date (2026-11-25) nor an RFC 3339 time (2026-11-25T10:00:00Z)")
        })?;
        let t = t
            .checked_to_offset(time::UtcOffset::UTC)
            .ok_or_else(out_of_range)?;
        if upper {
            t.checked_add(time::Duration::milliseconds(1))
                .ok_or_else(out_of_range)?
        } else {
            t
        }
    };
    Ok(audit::format_time(at))
}

#[cfg(test)]
mod tests {
    use super::bound;

    #[test]
    fn bounds_are_record_time_text() {
        assert_eq!(
            bound("2026-11-25", false).unwrap(),
            "2026-11-25T00:00:00.000Z"
        );
        assert_eq!(
            bound("2026-11-25", true).unwrap(),
            "2026-11-26T00:00:00.000Z"
        );
        assert_eq!(
            bound("2026-11-25T10:00:00+01:00", true).unwrap(),
            "2026-11-25T09:00:00.001Z"
        );
        assert!(bound("25/11/2026", false).unwrap_err().contains("--from"));
        // The edges of time are errors, not panics.
        assert!(bound("9999-12-31", true).unwrap_err().contains("outside"));
        assert!(
            bound("9999-12-31T23:59:59.999Z", true)
                .unwrap_err()
                .contains("outside")
        );
        assert!(
            bound("9999-12-31T23:30:00-01:00", false)
                .unwrap_err()
                .contains("outside")
        );
        let err = bound("198507099805", false).unwrap_err();
        assert!(!err.contains("9805"), "{err}");
    }
}
