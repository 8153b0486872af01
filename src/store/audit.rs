//! The audit chain: one record per access or refusal, each holding the SHA-256 of the one
//! before, stored in SQLite (WAL) and committed in groups; signed checkpoints (Ed25519, as
//! compact JWS) over the head let anyone with the public key verify that nothing was changed,
//! removed, reordered or inserted — without trusting the database.
//!
//! Records hold no personal data in clear: the subject is a pseudonym.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// What was done with the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Read,
    Disclose,
    Receive,
    Deny,
    /// The chain's first record (sequence 0): it names the chain and its signing key.
    Genesis,
    /// Records older than the retention period were removed (gallring); the record says
    /// through which one, and the checkpoint there is where the chain now starts.
    Prune,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Disclose => "disclose",
            Action::Receive => "receive",
            Action::Deny => "deny",
            Action::Genesis => "genesis",
            Action::Prune => "prune",
        }
    }
}

/// One access or refusal, as the exchange reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// UTC, RFC 3339.
    pub time: String,
    pub korrelationsid: String,
    pub direction: String,
    pub operation: String,
    pub action: Action,
    pub organisation: String,
    pub handlaggare: Option<String>,
    /// The case worker's unit (HSA-id) and function, when the token names them.
    #[serde(default)]
    pub enhet: Option<String>,
    #[serde(default)]
    pub funktion: Option<String>,
    pub arende: Option<String>,
    /// The subject's pseudonym (domain `audit`), never the number.
    pub subject: Option<String>,
    pub syfte: Option<String>,
    pub lagrum: Option<String>,
    /// The processor (personuppgiftsbiträde) the request named, when there is one.
    #[serde(default)]
    pub personuppgiftsbitrade: Option<String>,
    pub kategorier: Vec<String>,
    /// AF marked the person's identity as protected (sekretessmarkering).
    #[serde(default)]
    pub skyddad_identitet: bool,
    /// `OK` or the Felkod.
    pub outcome: String,
    pub af_status: Option<u16>,
    pub duration_ms: u64,
    /// Only in the genesis record: what chain this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis: Option<Genesis>,
    /// Only in a pruning record: what was removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned: Option<Pruned>,
    /// Only in the record of a sample drawn for review (loggkontroll): what was drawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<Sample>,
    /// Only in the record of a review: which record, and the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
}

/// A random sample of accesses drawn for review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// The sample's id, which each review of it names.
    pub id: String,
    /// The period drawn from (UTC, RFC 3339: `from <= time < to`).
    pub from: String,
    pub to: String,
    /// How many accesses the period held.
    pub population: u64,
    /// The records drawn, ascending.
    pub records: Vec<u64>,
}

/// A reviewer's verdict on one access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub record: u64,
    /// The sample it was drawn in, when it was.
    pub sample: Option<String>,
    pub verdict: Verdict,
    /// Where the follow-up is kept (a case number in the reviewer's own system), when there
    /// is one: a reference, not a description.
    pub reference: Option<String>,
}

/// What a review found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// The access had a legitimate need (godkänd).
    Godkand,
    /// It did not, or the record does not show that it did: a deviation to follow up.
    Avvikelse,
    /// Under investigation.
    Utreds,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Godkand => "GODKAND",
            Verdict::Avvikelse => "AVVIKELSE",
            Verdict::Utreds => "UTREDS",
        }
    }
}

/// What a pruning record says of the records it removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// Records 1 through this one were removed; the genesis stays.
    pub through: u64,
    /// Its hash, which the checkpoint kept at `through` signs and the next record links to.
    pub head: String,
    /// They were all older than this (UTC, RFC 3339) …
    pub before: String,
    /// … the configured retention, in seconds.
    pub retention_seconds: u64,
    /// How many records went.
    pub removed: u64,
}

/// What the first record of a chain says of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// The chain's id (a UUID), named in each of its checkpoints and witness lines.
    pub chain: String,
    /// The id of the key that signed its first checkpoints (see [`key_id`]).
    pub key_id: String,
}

/// A stored record, as read back. Its canonical encoding is its JSON with the fields in this
/// order and no whitespace (see [`canonical`]); its hash is the hex SHA-256 of that encoding.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub entry: Entry,
    /// The previous record's hash (64 zeros for the first).
    pub prev: String,
}

impl Record {
    pub fn canonical(&self) -> String {
        canonical(self.seq, &self.entry, &self.prev)
    }
    pub fn hash(&self) -> String {
        record_hash(
            self.seq,
            &sha256_hex(&encode_entry(&self.entry)),
            &self.prev,
        )
    }
}

/// A record's hash: over its number, its predecessor's hash and the SHA-256 of its entry's
/// canonical encoding (`entry_digest`). An extract proves a record is in the chain by showing
/// only the entry digests of the records between it and a checkpoint, not their content.
pub fn record_hash(seq: u64, entry_digest: &str, prev: &str) -> String {
    sha256_hex(&format!(
        "{{\"seq\":{seq},\"entry_sha256\":\"{entry_digest}\",\"prev\":\"{prev}\"}}"
    ))
}

/// The canonical encoding: `{"seq":…,"entry":{…},"prev":"…"}`, serde_json's compact form with
/// the entry's fields in their declared order.
pub fn canonical(seq: u64, entry: &Entry, prev: &str) -> String {
    canonical_of_encoded(seq, &encode_entry(entry), prev)
}

/// An entry's part of the canonical encoding. Strings, numbers and enums only: serialisation
/// cannot fail.
fn encode_entry(entry: &Entry) -> String {
    serde_json::to_string(entry).unwrap_or_default()
}

/// The canonical encoding around an entry already encoded (on the caller's thread, so the
/// single writer only chains and stores). The same bytes serde_json writes for the whole
/// record: `seq` is a number and `prev` is hex, which needs no escaping.
fn canonical_of_encoded(seq: u64, entry_json: &str, prev: &str) -> String {
    let mut out = String::with_capacity(entry_json.len() + prev.len() + 40);
    out.push_str("{\"seq\":");
    out.push_str(&seq.to_string());
    out.push_str(",\"entry\":");
    out.push_str(entry_json);
    out.push_str(",\"prev\":\"");
    out.push_str(prev);
    out.push_str("\"}");
    out
}

fn sha256_hex(text: &str) -> String {
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a checkpoint signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointClaims {
    pub seq: u64,
    pub head: String,
    pub iat: u64,
    /// The chain's id (from its genesis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
}

pub use crate::config::CheckpointPolicy;

/// One line of a witness file: a checkpoint as it was signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessLine {
    pub chain: String,
    pub seq: u64,
    pub head: String,
    pub jws: String,
}

/// Checkpoints kept for a witness that cannot be written, at most.
const MAX_WITNESS_BACKLOG: usize = 1024;

/// Appends lines to the witness file and makes them durable.
fn witness(path: &Path, lines: &[WitnessLine]) -> Result<(), String> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    for l in lines {
        text.push_str(&serde_json::to_string(l).map_err(|e| e.to_string())?);
        text.push('\n');
    }
    // A write cut short (a full disk) is taken back, so the retry does not follow a torn line.
    let before = f
        .metadata()
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| {
            let _ = f.set_len(before).and_then(|()| f.sync_data());
            format!("{}: {e}", path.display())
        })
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store: {0}")]
    Store(String),
    #[error("the audit writer has stopped")]
    Stopped,
}

fn store_err(e: rusqlite::Error) -> AuditError {
    AuditError::Store(e.to_string())
}

/// Opens (creating if needed) an audit store.
///
/// `body` is the record's canonical encoding; `subject` and `arende` repeat two of its fields
/// so extracts can use an index, and verification checks that they still agree with the body.
pub fn open(path: &Path) -> Result<Connection, AuditError> {
    let conn = Connection::open(path).map_err(store_err)?;
    restrict(path);
    // Another process (a DPO's command beside the gateway) may hold the write lock briefly.
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(store_err)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         PRAGMA synchronous=FULL;
         -- Pruned records are zeroed, not only unlinked (their pseudonyms must not stay in
         -- free space), and so are the stale copies a page split leaves behind.
         PRAGMA secure_delete=ON;
         CREATE TABLE IF NOT EXISTS records (
             seq INTEGER PRIMARY KEY, body TEXT NOT NULL, hash TEXT NOT NULL,
             subject TEXT, arende TEXT);
         CREATE INDEX IF NOT EXISTS records_subject ON records (subject);
         CREATE INDEX IF NOT EXISTS records_arende ON records (arende);
         CREATE TABLE IF NOT EXISTS checkpoints (seq INTEGER PRIMARY KEY, jws TEXT NOT NULL);",
    )
    .map_err(store_err)?;
    Ok(conn)
}

/// Opens an existing store named on the command line: a file path (a `postgres://` URL is
/// refused until that backend exists).
pub fn open_existing(store: &str) -> Result<Connection, AuditError> {
    if store.starts_with("postgres://") || store.starts_with("postgresql://") {
        return Err(AuditError::Store(
            "PostgreSQL audit stores are not supported yet; give the SQLite file".into(),
        ));
    }
    let path = Path::new(store);
    if !path.is_file() {
        return Err(AuditError::Store(format!("{store}: no such audit store")));
    }
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| AuditError::Store(format!("{store}: {e}")))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(store_err)?;
    // A tool never makes an audit store of what is not one.
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('records', 'checkpoints')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| AuditError::Store(format!("{store}: not an SQLite database ({e})")))?;
    if tables != 2 {
        return Err(AuditError::Store(format!(
            "{store}: not an audit store (it has no records and checkpoints tables)"
        )));
    }
    Ok(conn)
}

/// The chain's genesis (record 0), when the store has one.
fn read_genesis(conn: &Connection) -> Result<Option<Genesis>, AuditError> {
    let body: Option<String> = conn
        .query_row("SELECT body FROM records WHERE seq = 0", [], |r| r.get(0))
        .optional()
        .map_err(store_err)?;
    Ok(body
        .and_then(|b| serde_json::from_str::<Record>(&b).ok())
        .and_then(|r| r.entry.genesis))
}

/// Starts a chain in an empty store: record 0, naming the chain and its signing key.
fn write_genesis(conn: &mut Connection, key_id: &str) -> Result<Genesis, AuditError> {
    let genesis = Genesis {
        chain: uuid::Uuid::new_v4().to_string(),
        key_id: key_id.to_owned(),
    };
    let entry = Entry {
        time: now(),
        korrelationsid: genesis.chain.clone(),
        direction: "kedja".into(),
        operation: "genesis".into(),
        action: Action::Genesis,
        organisation: "brygga".into(),
        handlaggare: None,
        arende: None,
        subject: None,
        syfte: None,
        lagrum: None,
        kategorier: Vec::new(),
        outcome: "OK".into(),
        af_status: None,
        duration_ms: 0,
        genesis: Some(genesis.clone()),
        enhet: None,
        funktion: None,
        personuppgiftsbitrade: None,
        skyddad_identitet: false,
        pruned: None,
        sample: None,
        review: None,
    };
    let entry_json = encode_entry(&entry);
    let body = canonical_of_encoded(0, &entry_json, GENESIS);
    let hash = record_hash(0, &sha256_hex(&entry_json), GENESIS);
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(store_err)?;
    tx.execute(
        "INSERT INTO records (seq, body, hash, subject, arende) VALUES (0, ?1, ?2, NULL, NULL)",
        params![body, hash],
    )
    .map_err(store_err)?;
    tx.commit().map_err(store_err)?;
    Ok(genesis)
}

/// Appending to a chain that ends before its last checkpoint would fill the gap with new
/// records and hide that the old ones were removed: fail closed instead.
fn refuse_truncated(conn: &Connection) -> Result<(), AuditError> {
    let signed: Option<i64> = conn
        .query_row("SELECT max(seq) FROM checkpoints", [], |r| r.get(0))
        .map_err(store_err)?;
    let (head, _) = read_head(conn).map_err(store_err)?;
    match signed {
        Some(signed) if signed > head as i64 => Err(AuditError::Store(format!(
            "the chain ends at record {head} but checkpoint {signed} was signed: records were removed; \
             run `brygga audit verify` and restore the store from a copy before writing to it"
        ))),
        _ => Ok(()),
    }
}

/// The store's directory, readable by the gateway's user only: the records are pseudonymous,
/// not anonymous.
fn make_private_dir(dir: &Path) -> Result<(), AuditError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| AuditError::Store(format!("{}: {e}", dir.display())))
}

/// A new store file gets mode 0600 (SQLite creates it with the umask's).
fn restrict(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
            && meta.len() == 0
        {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
    }
}

type Reply = tokio::sync::oneshot::Sender<Result<u64, String>>;

/// An entry on its way to the writer: encoded already, with the columns extracts search.
struct Pending {
    entry_json: String,
    subject: Option<String>,
    arende: Option<String>,
    reply: Reply,
}

/// The writer: appends in groups, one durable commit for every record waiting.
pub struct AuditLog {
    tx: Option<mpsc::Sender<Pending>>,
    writer: Option<std::thread::JoinHandle<()>>,
    pub stats: Arc<AuditStats>,
    /// The key checkpoints are signed with, swapped on reload.
    signing: Arc<std::sync::RwLock<Option<SigningKey>>>,
}

/// A checkpoint key and its id (named in each checkpoint's JWS header, so a verifier holding
/// several public keys knows which one to use).
pub struct SigningKey {
    key: jsonwebtoken::EncodingKey,
    pub kid: String,
}

impl SigningKey {
    /// An Ed25519 key in PKCS#8 PEM.
    pub fn from_pem(pem: &[u8]) -> Result<Self, AuditError> {
        let key = jsonwebtoken::EncodingKey::from_ed_pem(pem)
            .map_err(|e| AuditError::Store(format!("checkpoint key: {e}")))?;
        let text = std::str::from_utf8(pem)
            .map_err(|_| AuditError::Store("checkpoint key: not PEM text".into()))?;
        let pair = rcgen::KeyPair::from_pem(text)
            .map_err(|e| AuditError::Store(format!("checkpoint key: {e}")))?;
        Ok(Self {
            key,
            kid: key_id(pair.public_key_pem().as_bytes())?,
        })
    }
}

/// A key's id: the first 16 hex digits of the SHA-256 of its SubjectPublicKeyInfo.
fn key_id_of_spki(spki: &[u8]) -> String {
    sha256_hex_bytes(spki)[..16].to_owned()
}

fn sha256_hex_bytes(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// The id of a public key in PEM (`PUBLIC KEY`), as checkpoints name it.
pub fn key_id(public_pem: &[u8]) -> Result<String, AuditError> {
    use rustls_pki_types::pem::PemObject;
    let spki = rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(public_pem)
        .map_err(|e| AuditError::Store(format!("not a public key in PEM: {e}")))?;
    Ok(key_id_of_spki(spki.as_ref()))
}

/// What the writer has done, for metrics and tests.
#[derive(Debug)]
pub struct AuditStats {
    /// Time of each durable commit.
    pub commit_seconds: prometheus_client::metrics::histogram::Histogram,
    /// The sequence number the last checkpoint signed.
    pub checkpoint: AtomicU64,
    /// The latest commit failed (until one succeeds): the store does not take records.
    pub failing: std::sync::atomic::AtomicBool,
    /// Records made durable.
    pub records: AtomicU64,
    /// Durable commits (each one fsync for a whole group).
    pub commits: AtomicU64,
    /// Groups that could not be written (their requests failed closed).
    pub failures: AtomicU64,
    /// The sequence number of the last durable record.
    pub head: AtomicU64,
    /// Checkpoints that could not be written to the witness.
    pub witness_failures: AtomicU64,
    /// The latest write to the witness failed (until one succeeds).
    pub witness_failing: std::sync::atomic::AtomicBool,
    /// Records pruned past the retention period.
    pub pruned: AtomicU64,
    /// Prunings that failed (retried at the next interval).
    pub prune_failures: AtomicU64,
}

impl Default for AuditStats {
    fn default() -> Self {
        Self {
            // 0.1 ms to about 3 s.
            commit_seconds: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 15),
            ),
            checkpoint: AtomicU64::new(0),
            failing: std::sync::atomic::AtomicBool::new(false),
            records: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            head: AtomicU64::new(0),
            witness_failures: AtomicU64::new(0),
            witness_failing: std::sync::atomic::AtomicBool::new(false),
            pruned: AtomicU64::new(0),
            prune_failures: AtomicU64::new(0),
        }
    }
}

impl Drop for AuditLog {
    /// Waits for the writer to finish what it holds and write the last checkpoint.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl AuditLog {
    /// Starts the writer thread on the store at `path`, signing checkpoints with
    /// `signing_key` (an Ed25519 key in PKCS#8 PEM). Without a key (a DPO's command beside the
    /// gateway) records are chained but not checkpointed; the gateway's next checkpoint covers
    /// them.
    pub fn start(
        path: &Path,
        signing_key: Option<&[u8]>,
        policy: CheckpointPolicy,
    ) -> Result<Self, AuditError> {
        if let Some(dir) = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !d.exists())
        {
            make_private_dir(dir)?;
        }
        let mut conn = open(path)?;
        refuse_truncated(&conn)?;
        let key = signing_key.map(SigningKey::from_pem).transpose()?;
        // A chain starts with its genesis; a store without one is not written to.
        let records: i64 = conn
            .query_row("SELECT count(*) FROM records", [], |r| r.get(0))
            .map_err(store_err)?;
        let genesis = match (read_genesis(&conn)?, records, &key) {
            (Some(g), _, _) => g,
            (None, 0, Some(k)) => write_genesis(&mut conn, &k.kid)?,
            (None, 0, None) => {
                return Err(AuditError::Store(
                    "the store holds no chain yet; the gateway starts one".into(),
                ));
            }
            (None, _, _) => {
                return Err(AuditError::Store(
                    "not a brygga audit chain: its first record is not a genesis (record 0); run `brygga audit verify`".into(),
                ));
            }
        };
        let signing = Arc::new(std::sync::RwLock::new(key));
        let key = signing.clone();
        let (tx, rx) = mpsc::channel::<Pending>();
        let stats = Arc::new(AuditStats::default());
        // Where the chain stands before this writer adds to it.
        let (head, _) = read_head(&conn).map_err(store_err)?;
        let signed: Option<i64> = conn
            .query_row("SELECT max(seq) FROM checkpoints", [], |r| r.get(0))
            .map_err(store_err)?;
        stats.head.store(head, Ordering::Relaxed);
        stats
            .checkpoint
            .store(signed.unwrap_or(0).max(0) as u64, Ordering::Relaxed);
        let counted = stats.clone();
        let writer = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                let mut signer = Signer {
                    key,
                    chain: genesis.chain,
                    witness_due: Vec::new(),
                    witness_backlog: Vec::new(),
                    wal_purge_due: false,
                    stats: counted.clone(),
                    policy,
                    since: 0,
                    last: Instant::now(),
                    signed: signed.unwrap_or(0).max(0) as u64,
                };
                let prune_interval = signer.policy.prune_interval();
                let mut next_prune = Instant::now();
                loop {
                    if signer.wal_purge_due {
                        signer.purge_wal(&conn);
                    }
                    if let Some(interval) = prune_interval
                        && Instant::now() >= next_prune
                    {
                        next_prune = Instant::now() + interval;
                        match signer.prune(&mut conn) {
                            Ok(Some(p)) => {
                                counted.checkpoint.store(signer.signed, Ordering::Relaxed);
                                counted.head.store(p.seq, Ordering::Relaxed);
                                counted.pruned.fetch_add(p.removed, Ordering::Relaxed);
                                tracing::info!(through = p.through, removed = p.removed, "audit records past the retention period pruned");
                            }
                            Ok(None) => {}
                            Err(e) => {
                                counted.prune_failures.fetch_add(1, Ordering::Relaxed);
                                tracing::error!(error = %e, "pruning the audit chain failed");
                            }
                        }
                    }
                    // Unsigned records wait at most `every` after the last checkpoint.
                    let every = signer.policy.every;
                    let mut wait = if signer.since == 0 {
                        every
                    } else {
                        (signer.last + every).saturating_duration_since(Instant::now())
                    };
                    if prune_interval.is_some() {
                        wait = wait.min(next_prune.saturating_duration_since(Instant::now()));
                    }
                    if signer.wal_purge_due {
                        wait = wait.min(WAL_PURGE_RETRY);
                    }
                    let first = match rx.recv_timeout(wait) {
                        Ok(first) => first,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            // Quiet for a while: sign what is not signed yet.
                            if let Err(e) = signer.checkpoint_if_due(&mut conn, true) {
                                tracing::error!(error = %e, "audit checkpoint failed");
                            }
                            counted.checkpoint.store(signer.signed, Ordering::Relaxed);
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    };
                    let mut batch = vec![first];
                    while batch.len() < 512 {
                        match rx.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    let started = Instant::now();
                    let result = write_batch(&mut conn, &batch, &mut signer);
                    match &result {
                        Ok(first) => {
                            counted
                                .commit_seconds
                                .observe(started.elapsed().as_secs_f64());
                            counted.failing.store(false, Ordering::Relaxed);
                            counted.checkpoint.store(signer.signed, Ordering::Relaxed);
                            let n = batch.len() as u64;
                            counted.records.fetch_add(n, Ordering::Relaxed);
                            counted.commits.fetch_add(1, Ordering::Relaxed);
                            counted.head.store(first + n - 1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            counted.failures.fetch_add(1, Ordering::Relaxed);
                            counted.failing.store(true, Ordering::Relaxed);
                            tracing::error!(error = %e, records = batch.len(), "audit append failed; the requests fail closed");
                        }
                    }
                    for (i, pending) in batch.into_iter().enumerate() {
                        let _ = pending.reply.send(match &result {
                            Ok(first_seq) => Ok(first_seq + i as u64),
                            Err(e) => Err(e.clone()),
                        });
                    }
                }
                // Shutting down: the last records get their checkpoint.
                if let Err(e) = signer.checkpoint_if_due(&mut conn, true) {
                    tracing::error!(error = %e, "final audit checkpoint failed");
                }
            })
            .map_err(|e| AuditError::Store(e.to_string()))?;
        Ok(Self {
            tx: Some(tx),
            writer: Some(writer),
            stats,
            signing,
        })
    }

    /// Signs checkpoints from now on with this key (PKCS#8 PEM); the ones already written keep
    /// their key's id. The new key's id when it is another key, None when it is the same.
    pub fn set_signing_key(&self, pem: &[u8]) -> Result<Option<String>, AuditError> {
        let new = SigningKey::from_pem(pem)?;
        let mut current = self.signing.write().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|k| k.kid == new.kid) {
            return Ok(None);
        }
        let kid = new.kid.clone();
        *current = Some(new);
        Ok(Some(kid))
    }

    /// The id of the key that signs now.
    pub fn signing_key_id(&self) -> Option<String> {
        self.signing
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|k| k.kid.clone())
    }

    /// Appends one entry; returns its sequence number once it is durable (fsync'd).
    pub async fn append(&self, entry: Entry) -> Result<u64, AuditError> {
        let (reply, done) = tokio::sync::oneshot::channel();
        let pending = Pending {
            entry_json: encode_entry(&entry),
            subject: entry.subject,
            arende: entry.arende,
            reply,
        };
        self.tx
            .as_ref()
            .ok_or(AuditError::Stopped)?
            .send(pending)
            .map_err(|_| AuditError::Stopped)?;
        done.await
            .map_err(|_| AuditError::Stopped)?
            .map_err(AuditError::Store)
    }
}

/// How long the write-ahead log's truncation after a pruning may wait for readers each try.
const WAL_PURGE_WAIT: Duration = Duration::from_millis(20);
/// How soon it is tried again.
const WAL_PURGE_RETRY: Duration = Duration::from_millis(200);

/// A pruning done: its record's number, and what it removed.
struct PruneDone {
    seq: u64,
    through: u64,
    removed: u64,
}

/// Signs checkpoints every N records or T seconds.
struct Signer {
    key: Arc<std::sync::RwLock<Option<SigningKey>>>,
    /// The chain's id, named in each checkpoint.
    chain: String,
    /// Checkpoints signed in the transaction under way, for the witness once it commits.
    witness_due: Vec<WitnessLine>,
    /// Committed checkpoints the witness has not taken yet (it failed).
    witness_backlog: Vec<WitnessLine>,
    /// A pruning's write-ahead log is still to be emptied (a reader held it).
    wal_purge_due: bool,
    stats: Arc<AuditStats>,
    policy: CheckpointPolicy,
    /// Records since the last checkpoint.
    since: u64,
    last: Instant,
    /// The sequence number the last checkpoint signed.
    signed: u64,
}

impl Signer {
    /// Within `tx`: a checkpoint over `head` when one is due.
    fn maybe_sign(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        head: &(u64, String),
        force: bool,
    ) -> Result<(), String> {
        let key = self.key.read().unwrap_or_else(|p| p.into_inner());
        let Some(key) = key.as_ref() else {
            return Ok(());
        };
        let due =
            self.since >= self.policy.every_records || self.last.elapsed() >= self.policy.every;
        if head.0 == 0 || self.since == 0 || !(due || force) {
            return Ok(());
        }
        let claims = CheckpointClaims {
            seq: head.0,
            head: head.1.clone(),
            iat: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            chain: Some(self.chain.clone()),
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        let jws = jsonwebtoken::encode(&header, &claims, &key.key).map_err(|e| e.to_string())?;
        // A checkpoint never replaces another: one already at this number signed another head
        // (the chain was cut and refilled), and verification must still see it.
        tx.execute(
            "INSERT OR IGNORE INTO checkpoints (seq, jws) VALUES (?1, ?2)",
            params![head.0 as i64, jws],
        )
        .map_err(|e| e.to_string())?;
        self.witness_due.push(WitnessLine {
            chain: self.chain.clone(),
            seq: head.0,
            head: head.1.clone(),
            jws,
        });
        self.since = 0;
        self.last = Instant::now();
        self.signed = head.0;
        Ok(())
    }

    /// A checkpoint on its own, when records are waiting for one: this writer's, or another
    /// process's (a DPO's sample or review written beside an idle gateway).
    fn checkpoint_if_due(&mut self, conn: &mut Connection, force: bool) -> Result<(), String> {
        if self.key.read().unwrap_or_else(|p| p.into_inner()).is_none() {
            return Ok(());
        }
        let (head, _) = read_head(conn).map_err(|e| e.to_string())?;
        if head <= self.signed {
            return Ok(());
        }
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| e.to_string())?;
        let head = read_head(&tx).map_err(|e| e.to_string())?;
        // Records another process appended count as waiting too.
        self.since = self.since.max(head.0.saturating_sub(self.signed));
        self.maybe_sign(&tx, &head, force)?;
        let committed = tx.commit().map_err(|e| e.to_string());
        self.witness(committed.is_ok());
        committed
    }

    /// Gallring: removes the records older than the retention period, through the newest
    /// checkpoint among them, in one transaction that appends the pruning record and signs a
    /// checkpoint over it (so verification accepts this cut and no other). Nothing without a
    /// signing key: the cut must be signed.
    fn prune(&mut self, conn: &mut Connection) -> Result<Option<PruneDone>, String> {
        let Some(retention) = self.policy.retention else {
            return Ok(None);
        };
        if self.key.read().unwrap_or_else(|p| p.into_inner()).is_none() {
            return Ok(None);
        }
        let before = format_time(time::OffsetDateTime::now_utc() - retention);
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| e.to_string())?;
        let cut: Option<(i64, String)> = tx
            .query_row(
                "SELECT c.seq, r.hash FROM checkpoints c JOIN records r ON r.seq = c.seq
                 WHERE c.seq > 0 AND json_extract(r.body, '$.entry.time') < ?1
                 ORDER BY c.seq DESC LIMIT 1",
                params![before],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| e.to_string())?;
        let Some((through, through_hash)) = cut else {
            return Ok(None);
        };
        let removed: i64 = tx
            .query_row(
                "SELECT count(*) FROM records WHERE seq > 0 AND seq <= ?1",
                params![through],
                |r| r.get(0),
            )
            .map_err(|e| e.to_string())?;
        if removed == 0 {
            return Ok(None);
        }
        let head = read_head(&tx).map_err(|e| e.to_string())?;
        let seq = head.0 + 1;
        let entry = Entry {
            time: now(),
            korrelationsid: uuid::Uuid::new_v4().to_string(),
            direction: "kedja".into(),
            operation: "gallring".into(),
            action: Action::Prune,
            organisation: "brygga".into(),
            handlaggare: None,
            arende: None,
            subject: None,
            syfte: None,
            lagrum: None,
            kategorier: Vec::new(),
            outcome: "OK".into(),
            af_status: None,
            duration_ms: 0,
            genesis: None,
            enhet: None,
            funktion: None,
            personuppgiftsbitrade: None,
            skyddad_identitet: false,
            pruned: Some(Pruned {
                through: through as u64,
                head: through_hash,
                before,
                retention_seconds: retention.as_secs(),
                removed: removed as u64,
            }),
            sample: None,
            review: None,
        };
        let entry_json = encode_entry(&entry);
        let body = canonical_of_encoded(seq, &entry_json, &head.1);
        let hash = record_hash(seq, &sha256_hex(&entry_json), &head.1);
        tx.execute(
            "INSERT INTO records (seq, body, hash, subject, arende) VALUES (?1, ?2, ?3, NULL, NULL)",
            params![seq as i64, body, hash],
        )
        .map_err(|e| e.to_string())?;
        self.since += 1;
        self.maybe_sign(&tx, &(seq, hash), true)?;
        tx.execute(
            "DELETE FROM records WHERE seq > 0 AND seq <= ?1",
            params![through],
        )
        .map_err(|e| e.to_string())?;
        // The checkpoint at the cut stays: it is where the chain now starts.
        tx.execute("DELETE FROM checkpoints WHERE seq < ?1", params![through])
            .map_err(|e| e.to_string())?;
        let committed = tx.commit().map_err(|e| e.to_string());
        self.witness(committed.is_ok());
        committed?;
        // Out of the write-ahead log too, as soon as no reader holds an older snapshot.
        self.wal_purge_due = true;
        self.purge_wal(conn);
        Ok(Some(PruneDone {
            seq,
            through: through as u64,
            removed: removed as u64,
        }))
    }

    /// Copies the write-ahead log into the store and empties it, so what a pruning zeroed is
    /// gone from both files. A reader holding an older snapshot (a DPO's verify) makes it wait;
    /// it waits briefly, since it holds back every record meanwhile, and is tried again later.
    fn purge_wal(&mut self, conn: &Connection) {
        let _ = conn.busy_timeout(WAL_PURGE_WAIT);
        let busy = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_or(1);
        let _ = conn.busy_timeout(Duration::from_secs(10));
        self.wal_purge_due = busy != 0;
    }

    /// After a commit: the checkpoints it held go to the witness (none when it failed), after
    /// those an earlier write could not deliver.
    fn witness(&mut self, committed: bool) {
        let due = std::mem::take(&mut self.witness_due);
        let Some(path) = &self.policy.witness else {
            return;
        };
        if committed {
            self.witness_backlog.extend(due);
        }
        if self.witness_backlog.is_empty() {
            return;
        }
        match witness(path, &self.witness_backlog) {
            Ok(()) => {
                self.witness_backlog.clear();
                self.stats.witness_failing.store(false, Ordering::Relaxed);
            }
            Err(e) => {
                // The records are durable; what failed is the copy outside the store. The
                // lines wait for the next checkpoint (bounded: the newest checkpoint covers
                // the heads before it, so the oldest are let go first).
                tracing::error!(error = %e, "a checkpoint could not be written to the witness");
                self.stats.witness_failures.fetch_add(1, Ordering::Relaxed);
                self.stats.witness_failing.store(true, Ordering::Relaxed);
                let over = self
                    .witness_backlog
                    .len()
                    .saturating_sub(MAX_WITNESS_BACKLOG);
                self.witness_backlog.drain(..over);
            }
        }
    }
}

/// The last record's sequence number and hash (0 and zeros for an empty chain).
fn read_head(conn: &Connection) -> Result<(u64, String), rusqlite::Error> {
    Ok(conn
        .prepare_cached("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .optional()?
        .unwrap_or((0, GENESIS.to_owned())))
}

fn write_batch(
    conn: &mut Connection,
    batch: &[Pending],
    signer: &mut Signer,
) -> Result<u64, String> {
    // The write lock first, then the head: another process may have appended since.
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| e.to_string())?;
    let mut head = read_head(&tx).map_err(|e| e.to_string())?;
    let first = head.0 + 1;
    {
        // Parsed once per connection, not once per record.
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO records (seq, body, hash, subject, arende) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(|e| e.to_string())?;
        for p in batch {
            let seq = head.0 + 1;
            let body = canonical_of_encoded(seq, &p.entry_json, &head.1);
            let hash = record_hash(seq, &sha256_hex(&p.entry_json), &head.1);
            insert
                .execute(params![seq as i64, body, hash, p.subject, p.arende])
                .map_err(|e| e.to_string())?;
            head = (seq, hash);
        }
    }
    signer.since += batch.len() as u64;
    signer.maybe_sign(&tx, &head, false)?;
    // One fsync for the whole group: the answers wait for it.
    let committed = tx.commit().map_err(|e| e.to_string());
    signer.witness(committed.is_ok());
    committed?;
    Ok(first)
}

/// The first thing wrong in a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tamper {
    #[error("record {0} was changed: its content does not match its hash")]
    Changed(u64),
    #[error(
        "record {0} was changed: its search columns (subject, case) do not match its content, which hides it from extracts or adds it to others"
    )]
    IndexChanged(u64),
    #[error("record {0} is missing")]
    Removed(u64),
    #[error("record {0} is out of order")]
    Reordered(u64),
    #[error(
        "record {0} does not link to the record before it: that one was changed and its hash recomputed, or this one was inserted"
    )]
    Inserted(u64),
    #[error("checkpoint at record {0} has a bad signature")]
    BadSignature(u64),
    #[error(
        "the chain up to record {0} is not the one its checkpoint signed: a record up to {0} was changed and the chain re-hashed"
    )]
    CheckpointMismatch(u64),
    #[error("records after checkpoint {0} were removed: the chain ends at {1}")]
    Truncated(u64, u64),
    #[error("the store holds no record, not even the chain's genesis: it was emptied")]
    Empty,
    #[error(
        "the first record is not the chain's genesis (record 0): the chain was cut at its start or replaced"
    )]
    NoGenesis,
    #[error("record {0} claims to start a chain: only record 0 may")]
    SecondGenesis(u64),
    #[error("checkpoint at record {0} was signed for another chain")]
    OtherChain(u64),
    #[error(
        "records 1 through {0} are missing and no pruning record accounts for them: the chain was cut at its start"
    )]
    Cut(u64),
    #[error(
        "the pruning record {0} is not signed by any checkpoint: a pruning is accepted only once the gateway signed it"
    )]
    PruningUnsigned(u64),
    #[error(
        "the witness holds checkpoint {0} (head {1}), but the store {2}: it was cut below a published checkpoint, or replaced"
    )]
    WitnessedHeadMissing(u64, String, &'static str),
}

/// The outcome of a verification that found nothing wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The chain's id, from its genesis.
    pub chain: String,
    /// The key id its genesis names.
    pub genesis_key: String,
    /// Records after the genesis (the last one's sequence number).
    pub records: u64,
    /// Records the store holds, the genesis included (fewer than `records + 1` once pruned).
    pub held: u64,
    /// The pruning the chain now starts behind, when it was pruned.
    pub pruned: Option<Pruned>,
    pub checkpoints: u64,
    /// The last record a checkpoint signs (0: none yet); the records after it are linked but
    /// not yet signed.
    pub signed_through: u64,
    pub head: String,
}

/// Verifies every record and every checkpoint signature (public keys: Ed25519
/// SubjectPublicKeyInfo PEM, the current one and those that signed before it; each checkpoint
/// is checked with the key its header names). The outer error means the chain could not be
/// checked at all (a bad key file, an unreadable store); the inner one is the first thing
/// wrong with the chain. Records are read as a stream, so memory stays flat on long chains;
/// `progress` hears (records checked, records in all) every few thousand records.
pub fn verify(
    conn: &Connection,
    public_keys_pem: &[&[u8]],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Result<Verified, Tamper>, AuditError> {
    let keys = CheckpointKeys::new(public_keys_pem)?;
    // One snapshot: a gateway may append while this runs.
    let conn = conn.unchecked_transaction().map_err(store_err)?;
    let stored: Vec<(i64, String)> = conn
        .prepare("SELECT seq, jws FROM checkpoints ORDER BY seq")
        .map_err(store_err)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(store_err)?
        .collect::<Result<_, _>>()
        .map_err(store_err)?;
    let stored = stored
        .into_iter()
        .map(|(seq, jws)| (u64::try_from(seq).unwrap_or(0), jws));
    let mut check = match ChainCheck::new(&keys, stored) {
        Ok(c) => c,
        Err(t) => return Ok(Err(t)),
    };
    let total: i64 = conn
        .query_row("SELECT count(*) FROM records", [], |r| r.get(0))
        .map_err(store_err)?;
    let total = u64::try_from(total).unwrap_or(0);
    let mut stmt = conn
        .prepare("SELECT seq, body, hash, subject, arende FROM records ORDER BY seq")
        .map_err(store_err)?;
    let mut rows = stmt.query([]).map_err(store_err)?;
    while let Some(row) = rows.next().map_err(store_err)? {
        let seq: i64 = row.get(0).map_err(store_err)?;
        let seq = u64::try_from(seq).unwrap_or(0);
        // A value of another type than the store writes (a BLOB for a hash, say) is a change
        // to the record, not an unreadable store.
        let text = |i: usize| match row.get_ref(i) {
            Ok(rusqlite::types::ValueRef::Text(t)) => {
                std::str::from_utf8(t).ok().map(str::to_owned)
            }
            _ => None,
        };
        let (Some(body), Some(stored_hash)) = (text(1), text(2)) else {
            return Ok(Err(Tamper::Changed(seq)));
        };
        let column = |i: usize| match row.get_ref(i) {
            Ok(rusqlite::types::ValueRef::Null) => Ok(None),
            Ok(rusqlite::types::ValueRef::Text(t)) => std::str::from_utf8(t)
                .map(|t| Some(t.to_owned()))
                .map_err(|_| Tamper::IndexChanged(seq)),
            _ => Err(Tamper::IndexChanged(seq)),
        };
        let index = match (column(3), column(4)) {
            (Ok(subject), Ok(arende)) => (subject, arende),
            (Err(t), _) | (_, Err(t)) => return Ok(Err(t)),
        };
        match check.record(seq, &body, &stored_hash, Some(index)) {
            Ok(()) => {}
            Err(Tamper::Inserted(seq)) => {
                // Its predecessor exists elsewhere in the chain: moved; nowhere: inserted.
                let prev = serde_json::from_str::<Record>(&body)
                    .map(|r| r.prev)
                    .unwrap_or_default();
                let moved: bool = conn
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM records WHERE hash = ?1)",
                        params![prev],
                        |r| r.get(0),
                    )
                    .map_err(store_err)?;
                return Ok(Err(if moved {
                    Tamper::Reordered(seq)
                } else {
                    Tamper::Inserted(seq)
                }));
            }
            Err(t) => return Ok(Err(t)),
        }
        if check.checked.is_multiple_of(4096) {
            progress(check.checked, total);
        }
    }
    progress(check.checked, total);
    check.verdict()
}

/// The checks a chain must pass, fed its records in order: from the store, or from an
/// export read away from it.
pub(crate) struct ChainCheck {
    /// Each checkpoint's record number, the head it signs and the chain it names.
    checkpoints: std::collections::BTreeMap<u64, (String, Option<String>)>,
    /// Checkpoints signed with a key not given: their number and the key's id.
    unknown_keys: Vec<(u64, String)>,
    expected: u64,
    prev: String,
    checked: u64,
    genesis: Option<Genesis>,
    /// The chain was pruned: where it now starts (the record before the first kept one,
    /// and its hash, which the checkpoint there signs).
    start: Option<(u64, String)>,
    /// The pruning record that accounts for `start`.
    pruning: Option<(u64, Pruned)>,
}

impl ChainCheck {
    /// Checks the checkpoints (`(record number, JWS)`) first: each signature, and the head it
    /// vouches for.
    /// A checkpoint signed with a key not given is set aside: the chain is still checked, and
    /// only when nothing else is wrong does it make the verdict "could not check" (so no
    /// checkpoint an attacker adds turns "tampered" into that).
    fn new(
        keys: &CheckpointKeys,
        checkpoints: impl IntoIterator<Item = (u64, String)>,
    ) -> Result<Self, Tamper> {
        let mut signed = std::collections::BTreeMap::new();
        let mut unknown_keys = Vec::new();
        for (seq, jws) in checkpoints {
            let claims = match keys.claims(&jws) {
                Signed::Claims(c) => c,
                Signed::Bad => return Err(Tamper::BadSignature(seq)),
                Signed::UnknownKey(kid) => {
                    unknown_keys.push((seq, kid));
                    continue;
                }
            };
            if claims.seq != seq || seq == 0 {
                return Err(Tamper::BadSignature(seq));
            }
            signed.insert(seq, (claims.head, claims.chain));
        }
        Ok(Self {
            checkpoints: signed,
            unknown_keys,
            expected: 0,
            prev: GENESIS.to_owned(),
            checked: 0,
            genesis: None,
            start: None,
            pruning: None,
        })
    }

    /// Why the chain could not be checked, when nothing was found wrong with it.
    fn unchecked(&self) -> Option<AuditError> {
        let (seq, kid) = self.unknown_keys.first()?;
        Some(AuditError::Store(format!(
            "the checkpoint at record {seq} is signed with key {kid}, whose public key was not given (--public-key, or audit.previous_public_keys)"
        )))
    }

    /// The verdict once every record was fed: tampering first, then what could not be checked.
    fn verdict(self) -> Result<Result<Verified, Tamper>, AuditError> {
        let unchecked = self.unchecked();
        match (self.finish(), unchecked) {
            (Err(t), _) => Ok(Err(t)),
            (Ok(_), Some(why)) => Err(why),
            (Ok(v), None) => Ok(Ok(v)),
        }
    }

    /// The next record: its number, its stored body and hash, and (from a store) its search
    /// columns. `Inserted` also stands for a record moved from elsewhere, which only the
    /// caller can tell.
    fn record(
        &mut self,
        seq: u64,
        body: &str,
        stored_hash: &str,
        index: Option<(Option<String>, Option<String>)>,
    ) -> Result<(), Tamper> {
        let Ok(record) = serde_json::from_str::<Record>(body) else {
            return Err(self.gap(seq).unwrap_or(Tamper::Changed(seq)));
        };
        let entry_json = encode_entry(&record.entry);
        if canonical_of_encoded(record.seq, &entry_json, &record.prev) != body
            || record_hash(record.seq, &sha256_hex(&entry_json), &record.prev) != stored_hash
        {
            return Err(self.gap(seq).unwrap_or(Tamper::Changed(seq)));
        }
        if record.seq != seq {
            return Err(Tamper::Reordered(seq));
        }
        if seq != self.expected {
            // Only a signed pruning may cut the chain, and only right after its genesis, at a
            // checkpoint this record links to.
            let pruned_start = self.expected == 1
                && seq > 1
                && self
                    .checkpoints
                    .get(&(seq - 1))
                    .is_some_and(|(h, _)| *h == record.prev);
            if !pruned_start {
                return Err(self.gap(seq).unwrap_or(Tamper::Removed(self.expected)));
            }
            self.start = Some((seq - 1, record.prev.clone()));
            self.prev = record.prev.clone();
        }
        if record.prev != self.prev {
            return Err(Tamper::Inserted(seq));
        }
        if let Some((subject, arende)) = index
            && (subject != record.entry.subject || arende != record.entry.arende)
        {
            return Err(Tamper::IndexChanged(seq));
        }
        let starts = record.entry.action == Action::Genesis || record.entry.genesis.is_some();
        match (seq, starts) {
            (0, true) => self.genesis = record.entry.genesis.clone(),
            (0, false) => return Err(Tamper::NoGenesis),
            (_, true) => return Err(Tamper::SecondGenesis(seq)),
            _ => {}
        }
        if (record.entry.action == Action::Prune) != record.entry.pruned.is_some() {
            return Err(Tamper::Changed(seq));
        }
        if let Some(p) = &record.entry.pruned
            && self
                .start
                .as_ref()
                .is_some_and(|(through, head)| p.through == *through && p.head == *head)
        {
            self.pruning = Some((seq, p.clone()));
        }
        if let Some((h, chain)) = self.checkpoints.get(&seq) {
            if h != stored_hash {
                return Err(Tamper::CheckpointMismatch(seq));
            }
            if chain
                .as_ref()
                .is_some_and(|c| self.genesis.as_ref().is_none_or(|g| g.chain != *c))
            {
                return Err(Tamper::OtherChain(seq));
            }
        }
        self.prev = stored_hash.to_owned();
        self.expected = seq + 1;
        self.checked += 1;
        Ok(())
    }

    /// A chain whose first record is not its genesis says so, whatever else is wrong.
    fn gap(&self, seq: u64) -> Option<Tamper> {
        (self.expected == 0 && seq != 0).then_some(Tamper::NoGenesis)
    }

    fn finish(self) -> Result<Verified, Tamper> {
        let Some(genesis) = self.genesis else {
            return Err(if self.checked == 0 {
                Tamper::Empty
            } else {
                Tamper::NoGenesis
            });
        };
        let last = self.expected.saturating_sub(1);
        if let Some((&signed, _)) = self.checkpoints.range(last + 1..).next() {
            return Err(Tamper::Truncated(signed, last));
        }
        let signed_through = self.checkpoints.keys().next_back().copied().unwrap_or(0);
        // A cut is accepted only with its pruning record, and only once a checkpoint signs
        // that record: whoever cannot sign cannot prune.
        let pruned = match (self.start, self.pruning) {
            (None, _) => None,
            (Some((through, _)), None) => return Err(Tamper::Cut(through)),
            (Some(_), Some((seq, _))) if seq > signed_through => {
                return Err(Tamper::PruningUnsigned(seq));
            }
            (Some(_), Some((_, p))) => Some(p),
        };
        Ok(Verified {
            chain: genesis.chain,
            genesis_key: genesis.key_id,
            records: last,
            held: self.checked,
            pruned,
            checkpoints: self.checkpoints.len() as u64,
            signed_through,
            head: self.prev,
        })
    }
}

/// The public keys checkpoints are verified with, by key id.
struct CheckpointKeys {
    keys: Vec<(String, jsonwebtoken::DecodingKey)>,
    validation: jsonwebtoken::Validation,
}

impl CheckpointKeys {
    fn new(public_keys_pem: &[&[u8]]) -> Result<Self, AuditError> {
        let mut keys = Vec::new();
        for pem in public_keys_pem {
            let key = jsonwebtoken::DecodingKey::from_ed_pem(pem).map_err(|e| {
                AuditError::Store(format!("the public key is not an Ed25519 key in PEM: {e}"))
            })?;
            keys.push((key_id(pem)?, key));
        }
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        Ok(Self { keys, validation })
    }

    /// What a checkpoint signs, when its signature verifies with the key it names (one
    /// written before key ids, with any of them). A key id none of the keys has is told
    /// apart: the chain cannot be checked without that key, which is not a verdict on it.
    fn claims(&self, jws: &str) -> Signed {
        let named = jsonwebtoken::decode_header(jws).ok().and_then(|h| h.kid);
        if let Some(n) = &named
            && !self.keys.iter().any(|(kid, _)| kid == n)
        {
            return Signed::UnknownKey(n.clone());
        }
        self.keys
            .iter()
            .filter(|(kid, _)| named.as_ref().is_none_or(|n| n == kid))
            .find_map(|(_, key)| {
                jsonwebtoken::decode::<CheckpointClaims>(jws, key, &self.validation).ok()
            })
            .map_or(Signed::Bad, |d| Signed::Claims(d.claims))
    }
}

/// What a checkpoint's signature says.
enum Signed {
    Claims(CheckpointClaims),
    /// Signed with a key whose public half was not given.
    UnknownKey(String),
    /// It does not verify.
    Bad,
}

impl Signed {
    /// The claims, or why the chain cannot be checked (`Ok(None)`: the signature is bad).
    fn checkable(self, what: &str) -> Result<Option<CheckpointClaims>, AuditError> {
        match self {
            Signed::Claims(c) => Ok(Some(c)),
            Signed::Bad => Ok(None),
            Signed::UnknownKey(kid) => Err(AuditError::Store(format!(
                "{what} is signed with key {kid}, whose public key was not given (--public-key, or audit.previous_public_keys)"
            ))),
        }
    }
}

/// Checks a store against its witness (`witness_text`, the lines of the witness file): every
/// checkpoint the witness holds must verify, belong to this chain, and name a head the store
/// still holds at that record. The outer error: the witness could not be checked (unreadable,
/// signed with a key not given, another chain's); the inner: the store lost what was
/// witnessed. `pruned` is the pruning a verification of the store accepted: heads before it
/// are gone by design, the one at it is the chain's start.
pub fn verify_witness(
    conn: &Connection,
    witness_text: &str,
    public_keys_pem: &[&[u8]],
    pruned: Option<&Pruned>,
) -> Result<Result<Witnessed, Tamper>, AuditError> {
    let keys = CheckpointKeys::new(public_keys_pem)?;
    let chain = read_genesis(conn)?.map(|g| g.chain);
    let mut seen = Witnessed::default();
    for (i, line) in witness_text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |why: &str| AuditError::Store(format!("witness line {}: {why}", i + 1));
        let w: WitnessLine = serde_json::from_str(line).map_err(|_| at("not a witness line"))?;
        let claims = keys
            .claims(&w.jws)
            .checkable(&format!("witness line {}", i + 1))?
            .ok_or_else(|| at("its signature does not verify with the keys given"))?;
        if claims.seq != w.seq || claims.head != w.head || claims.chain.as_ref() != Some(&w.chain) {
            return Err(at("its line does not match what it signs"));
        }
        match &chain {
            Some(c) if *c == w.chain => {}
            // Signed by this gateway's key for another chain: the store was replaced.
            Some(_) => {
                return Ok(Err(Tamper::WitnessedHeadMissing(
                    w.seq,
                    w.head,
                    "is another chain (another genesis)",
                )));
            }
            None => {
                return Ok(Err(Tamper::WitnessedHeadMissing(
                    w.seq,
                    w.head,
                    "has no chain (no genesis)",
                )));
            }
        }
        let hash: Option<String> = match pruned {
            Some(p) if w.seq < p.through => {
                seen.pruned += 1;
                continue;
            }
            Some(p) if w.seq == p.through => Some(p.head.clone()),
            _ => conn
                .query_row(
                    "SELECT hash FROM records WHERE seq = ?1",
                    params![w.seq as i64],
                    |r| r.get(0),
                )
                .optional()
                .map_err(store_err)?,
        };
        match hash {
            Some(h) if h == w.head => seen.held += 1,
            Some(_) => {
                return Ok(Err(Tamper::WitnessedHeadMissing(
                    w.seq,
                    w.head,
                    "holds another record there",
                )));
            }
            None => {
                return Ok(Err(Tamper::WitnessedHeadMissing(
                    w.seq,
                    w.head,
                    "no longer holds that record",
                )));
            }
        }
    }
    Ok(Ok(seen))
}

/// What a witness showed of a store that holds every head it witnessed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Witnessed {
    /// Checkpoints whose heads the store holds.
    pub held: u64,
    /// Checkpoints before the chain's pruned start (their records are gone by design).
    pub pruned: u64,
}

/// The accesses (records about a person, whatever their outcome) from `from` to before `to`
/// (record-time text), by number: what a sample for review is drawn from. The DPO's own
/// records and the chain's are not accesses.
pub fn accesses_between(conn: &Connection, from: &str, to: &str) -> Result<Vec<u64>, AuditError> {
    let mut stmt = conn
        .prepare(
            "SELECT seq FROM records
             WHERE seq > 0 AND subject IS NOT NULL
               AND json_extract(body, '$.entry.time') >= ?1
               AND json_extract(body, '$.entry.time') < ?2
               AND json_extract(body, '$.entry.direction') NOT IN ('dpo', 'kedja')
             ORDER BY seq",
        )
        .map_err(store_err)?;
    let seqs = stmt
        .query_map(params![from, to], |r| r.get::<_, i64>(0))
        .map_err(store_err)?
        .map(|r| r.map(|s| s as u64))
        .collect::<Result<_, _>>()
        .map_err(store_err)?;
    Ok(seqs)
}

/// The records with these numbers, in order (those the store does not hold are left out).
pub fn records_by_seq(conn: &Connection, seqs: &[u64]) -> Result<Vec<Record>, AuditError> {
    let mut stmt = conn
        .prepare_cached("SELECT body FROM records WHERE seq = ?1")
        .map_err(store_err)?;
    let mut out = Vec::new();
    for seq in seqs {
        let body: Option<String> = stmt
            .query_row(params![*seq as i64], |r| r.get(0))
            .optional()
            .map_err(store_err)?;
        if let Some(body) = body {
            out.push(
                serde_json::from_str(&body)
                    .map_err(|e| AuditError::Store(format!("record {seq} cannot be read: {e}")))?,
            );
        }
    }
    Ok(out)
}

/// The sample record with this id, when the chain holds one.
pub fn find_sample(conn: &Connection, id: &str) -> Result<Option<Sample>, AuditError> {
    let body: Option<String> = conn
        .query_row(
            "SELECT body FROM records WHERE json_extract(body, '$.entry.sample.id') = ?1",
            params![id],
            |r| r.get(0),
        )
        .optional()
        .map_err(store_err)?;
    Ok(body
        .and_then(|b| serde_json::from_str::<Record>(&b).ok())
        .and_then(|r| r.entry.sample))
}

/// What an extract selects. Every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Any of these pseudonyms (one per key of the `audit` domain).
    pub subjects: Vec<String>,
    pub arende: Option<String>,
    /// RFC 3339 UTC bounds on the record's time: `from <= time < to`.
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The records an extract selects, oldest first. The filter is applied to the verified body,
/// not only to the index columns.
pub fn query(conn: &Connection, filter: &Filter) -> Result<Vec<Record>, AuditError> {
    let mut sql = String::from("SELECT body FROM records WHERE 1 = 1");
    let mut args: Vec<String> = Vec::new();
    if !filter.subjects.is_empty() {
        let marks: Vec<String> = filter
            .subjects
            .iter()
            .map(|s| {
                args.push(s.clone());
                format!("?{}", args.len())
            })
            .collect();
        sql.push_str(&format!(" AND subject IN ({})", marks.join(", ")));
    }
    if let Some(a) = &filter.arende {
        args.push(a.clone());
        sql.push_str(&format!(" AND arende = ?{}", args.len()));
    }
    sql.push_str(" ORDER BY seq");
    let mut stmt = conn.prepare(&sql).map_err(store_err)?;
    let bodies = stmt
        .query_map(rusqlite::params_from_iter(args.iter()), |r| {
            r.get::<_, String>(0)
        })
        .map_err(store_err)?;
    let mut out = Vec::new();
    for body in bodies {
        let body = body.map_err(store_err)?;
        let record: Record = serde_json::from_str(&body)
            .map_err(|e| AuditError::Store(format!("a record cannot be read: {e}")))?;
        let e = &record.entry;
        let subject_ok = filter.subjects.is_empty()
            || e.subject
                .as_ref()
                .is_some_and(|s| filter.subjects.contains(s));
        let arende_ok = filter.arende.is_none() || e.arende == filter.arende;
        let from_ok = filter
            .from
            .as_ref()
            .is_none_or(|f| e.time.as_str() >= f.as_str());
        let to_ok = filter
            .to
            .as_ref()
            .is_none_or(|t| e.time.as_str() < t.as_str());
        if subject_ok && arende_ok && from_ok && to_ok {
            out.push(record);
        }
    }
    Ok(out)
}

/// Writes every record, oldest first, as JSON Lines: each line the record's canonical
/// encoding with `"hash":"…"` added as its last member (drop it to get the hashed bytes back),
/// and after a record that a checkpoint signs, a line `{"checkpoint":{"jws":"…","seq":N}}`, so
/// the export can be checked without the store. Returns how many records.
pub fn export(conn: &Connection, out: &mut dyn std::io::Write) -> Result<u64, AuditError> {
    let conn = conn.unchecked_transaction().map_err(store_err)?;
    let checkpoints: std::collections::BTreeMap<i64, String> = conn
        .prepare("SELECT seq, jws FROM checkpoints")
        .map_err(store_err)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(store_err)?
        .collect::<Result<_, _>>()
        .map_err(store_err)?;
    let mut stmt = conn
        .prepare("SELECT seq, body, hash FROM records ORDER BY seq")
        .map_err(store_err)?;
    let mut rows = stmt.query([]).map_err(store_err)?;
    let mut n = 0;
    let io = |e: std::io::Error| AuditError::Store(format!("writing the export: {e}"));
    while let Some(row) = rows.next().map_err(store_err)? {
        let seq: i64 = row.get(0).map_err(store_err)?;
        let body: String = row.get(1).map_err(store_err)?;
        let hash: String = row.get(2).map_err(store_err)?;
        let open = body.strip_suffix('}').ok_or_else(|| {
            AuditError::Store(format!(
                "record {seq} is not a JSON object; verify the store"
            ))
        })?;
        writeln!(out, "{open},\"hash\":{}}}", serde_json::Value::String(hash)).map_err(io)?;
        if let Some(jws) = checkpoints.get(&seq) {
            let line = serde_json::json!({"checkpoint": {"seq": seq, "jws": jws}});
            writeln!(out, "{line}").map_err(io)?;
        }
        n += 1;
    }
    Ok(n)
}

/// Verifies an `audit export` (JSON Lines: each record's canonical body with its hash as the
/// last member, and checkpoint lines) as [`verify`] verifies a store, without the store.
pub fn verify_export_lines(
    text: &str,
    public_keys_pem: &[&[u8]],
) -> Result<Result<Verified, Tamper>, AuditError> {
    #[derive(Deserialize)]
    struct CheckpointLine {
        checkpoint: StoredCheckpoint,
    }
    #[derive(Deserialize)]
    struct StoredCheckpoint {
        seq: u64,
        jws: String,
    }
    let keys = CheckpointKeys::new(public_keys_pem)?;
    let line_error = |i: usize, why: &str| AuditError::Store(format!("line {}: {why}", i + 1));
    let mut checkpoints = Vec::new();
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with("{\"checkpoint\"") {
            let c: CheckpointLine =
                serde_json::from_str(line).map_err(|_| line_error(i, "not a checkpoint line"))?;
            checkpoints.push((c.checkpoint.seq, c.checkpoint.jws));
            continue;
        }
        // The line is the body with `,"hash":"…"` added as its last member.
        let (body, hash) = line
            .rsplit_once(",\"hash\":\"")
            .and_then(|(b, h)| Some((format!("{b}}}"), h.strip_suffix("\"}")?.to_owned())))
            .ok_or_else(|| line_error(i, "not a record line of an audit export"))?;
        let seq = serde_json::from_str::<Record>(&body)
            .map(|r| r.seq)
            .map_err(|_| line_error(i, "not a record line of an audit export"))?;
        records.push((seq, body, hash));
    }
    let mut check = match ChainCheck::new(&keys, checkpoints) {
        Ok(c) => c,
        Err(t) => return Ok(Err(t)),
    };
    for (seq, body, hash) in &records {
        if let Err(t) = check.record(*seq, body, hash, None) {
            return Ok(Err(t));
        }
    }
    check.verdict()
}

/// What proves an extract's records are in the chain, without the store: per group of
/// records, the entry digests of the records between them and the checkpoint after them, and
/// that checkpoint. Records after the last checkpoint are listed, not proven (nothing signs
/// them yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The chain's id, from its genesis.
    pub chain: String,
    pub segments: Vec<Segment>,
    /// Extracted records no checkpoint signs yet.
    pub unsigned: Vec<u64>,
}

/// A run of the chain from an extracted record to the checkpoint after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Every record of the run in order: an extracted one with its stored body, any other
    /// with only the SHA-256 of its entry.
    pub steps: Vec<Step>,
    pub checkpoint_seq: u64,
    pub checkpoint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_sha256: Option<String>,
}

/// The proof for `seqs` (records of the store, ascending).
pub fn prove(conn: &Connection, seqs: &[u64]) -> Result<Proof, AuditError> {
    let conn = conn.unchecked_transaction().map_err(store_err)?;
    let chain = read_genesis(&conn)?
        .map(|g| g.chain)
        .ok_or_else(|| AuditError::Store("the store has no genesis: verify it".into()))?;
    let checkpoints: std::collections::BTreeMap<u64, String> = conn
        .prepare("SELECT seq, jws FROM checkpoints")
        .map_err(store_err)?
        .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .map_err(store_err)?
        .collect::<Result<_, _>>()
        .map_err(store_err)?;
    let wanted: std::collections::BTreeSet<u64> = seqs.iter().copied().collect();
    let mut proof = Proof {
        chain,
        segments: Vec::new(),
        unsigned: Vec::new(),
    };
    let mut stmt = conn
        .prepare("SELECT seq, body FROM records WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq")
        .map_err(store_err)?;
    let mut next = wanted.iter().copied().peekable();
    while let Some(first) = next.next() {
        let Some((&at, jws)) = checkpoints.range(first..).next() else {
            proof.unsigned.push(first);
            proof.unsigned.extend(next.by_ref());
            break;
        };
        // Every extracted record up to that checkpoint shares the run.
        while next.peek().is_some_and(|s| *s <= at) {
            next.next();
        }
        let mut steps = Vec::new();
        let mut rows = stmt
            .query(params![first as i64, at as i64])
            .map_err(store_err)?;
        while let Some(row) = rows.next().map_err(store_err)? {
            let seq = row.get::<_, i64>(0).map_err(store_err)? as u64;
            let body: String = row.get(1).map_err(store_err)?;
            steps.push(if wanted.contains(&seq) {
                Step {
                    seq,
                    body: Some(body),
                    entry_sha256: None,
                }
            } else {
                let entry_json = entry_json_of(&body).ok_or_else(|| {
                    AuditError::Store(format!("record {seq} cannot be read: verify the store"))
                })?;
                Step {
                    seq,
                    body: None,
                    entry_sha256: Some(sha256_hex(entry_json)),
                }
            });
        }
        proof.segments.push(Segment {
            steps,
            checkpoint_seq: at,
            checkpoint: jws.clone(),
        });
    }
    Ok(proof)
}

/// The entry's bytes inside a stored canonical body.
fn entry_json_of(body: &str) -> Option<&str> {
    let (_, rest) = body.split_once(",\"entry\":")?;
    let (entry, _) = rest.rsplit_once(",\"prev\":\"")?;
    Some(entry)
}

/// What a proof showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven {
    pub chain: String,
    /// The extracted records, as they are in the chain, by number.
    pub records: std::collections::BTreeMap<u64, Record>,
    pub checkpoints: u64,
    /// The last record a checkpoint of the proof signs.
    pub last_checkpoint: Option<u64>,
    pub unsigned: Vec<u64>,
}

/// Checks a proof away from the store: each record's body and hash, each run's links up to
/// its checkpoint, each checkpoint's signature and chain. The outer error: it could not be
/// checked (a key not given); the inner: what does not hold.
pub fn check_proof(
    proof: &Proof,
    public_keys_pem: &[&[u8]],
) -> Result<Result<Proven, String>, AuditError> {
    let keys = CheckpointKeys::new(public_keys_pem)?;
    let mut records = std::collections::BTreeMap::new();
    for segment in &proof.segments {
        let Some(claims) = keys.claims(&segment.checkpoint).checkable(&format!(
            "the checkpoint at record {}",
            segment.checkpoint_seq
        ))?
        else {
            return Ok(Err(format!(
                "the checkpoint at record {} has a bad signature",
                segment.checkpoint_seq
            )));
        };
        if claims.seq != segment.checkpoint_seq || claims.chain.as_ref() != Some(&proof.chain) {
            return Ok(Err(format!(
                "the checkpoint at record {} signs another record or another chain",
                segment.checkpoint_seq
            )));
        }
        let mut running: Option<String> = None;
        let mut expected_seq: Option<u64> = None;
        for step in &segment.steps {
            if expected_seq.is_some_and(|e| e != step.seq) {
                return Ok(Err(format!(
                    "record {} is out of its place in the run",
                    step.seq
                )));
            }
            let hash = match (&step.body, &step.entry_sha256, &running) {
                (Some(body), _, _) => {
                    let Ok(record) = serde_json::from_str::<Record>(body) else {
                        return Ok(Err(format!("record {} is not a record", step.seq)));
                    };
                    let entry_json = encode_entry(&record.entry);
                    if record.seq != step.seq
                        || canonical_of_encoded(record.seq, &entry_json, &record.prev) != *body
                        || running.as_ref().is_some_and(|r| *r != record.prev)
                    {
                        return Ok(Err(format!(
                            "record {} was changed, or does not link to the one before it",
                            step.seq
                        )));
                    }
                    let hash = record_hash(record.seq, &sha256_hex(&entry_json), &record.prev);
                    records.insert(record.seq, record);
                    hash
                }
                (None, Some(digest), Some(prev)) => record_hash(step.seq, digest, prev),
                _ => {
                    return Ok(Err(format!(
                        "the run to checkpoint {} does not start with an extracted record",
                        segment.checkpoint_seq
                    )));
                }
            };
            running = Some(hash);
            expected_seq = Some(step.seq + 1);
        }
        if expected_seq != Some(segment.checkpoint_seq + 1)
            || running.as_deref() != Some(claims.head.as_str())
        {
            return Ok(Err(format!(
                "the records do not lead to the head checkpoint {} signed: one was changed, removed or inserted",
                segment.checkpoint_seq
            )));
        }
    }
    // Runs in order, none overlapping another, and the unsigned records after them all.
    let mut after = 0;
    for segment in &proof.segments {
        let first = segment.steps.first().map_or(0, |s| s.seq);
        if first <= after && after > 0 {
            return Ok(Err(format!(
                "the run to checkpoint {} overlaps the one before it",
                segment.checkpoint_seq
            )));
        }
        after = segment.checkpoint_seq;
    }
    if !proof.unsigned.windows(2).all(|w| w[0] < w[1])
        || proof.unsigned.first().is_some_and(|u| *u <= after)
    {
        return Ok(Err(
            "records said to be after the last checkpoint are not, or are repeated".into(),
        ));
    }
    Ok(Ok(Proven {
        chain: proof.chain.clone(),
        records,
        checkpoints: proof.segments.len() as u64,
        last_checkpoint: proof.segments.last().map(|s| s.checkpoint_seq),
        unsigned: proof.unsigned.clone(),
    }))
}

/// A Korrelationsid as a record keeps it: whole, so a DPO can match it with the case system's
/// own log, unless a caller made its digits spell an identity number (then those are masked).
pub fn recorded_korrelationsid(id: &uuid::Uuid) -> String {
    crate::model::ident::mask_identity_numbers(&id.to_string())
}

/// The time of a record: UTC, RFC 3339 with milliseconds, so text order is time order.
pub fn now() -> String {
    format_time(time::OffsetDateTime::now_utc())
}

/// A time as records write it (UTC, milliseconds).
pub fn format_time(t: time::OffsetDateTime) -> String {
    // Out of range only at the edges of year 9999: callers bring UTC times already.
    let t = t.checked_to_offset(time::UtcOffset::UTC).unwrap_or(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> Entry {
        Entry {
            time: "2026-11-25T10:00:00Z".into(),
            korrelationsid: format!("00000000-0000-4000-8000-{i:012}"),
            direction: "kommun-af".into(),
            operation: "HamtaArbetssokandeStatus".into(),
            action: Action::Disclose,
            organisation: "212000-0142".into(),
            handlaggare: Some("SE2120000142-HL01".into()),
            arende: Some("EB-2026-004711".into()),
            subject: Some("a1:iwKJo_Ja8C0fJvWvjcm_zg".into()),
            syfte: Some("EKB-BESLUT".into()),
            lagrum: Some("11 kap. 11 a § socialtjänstlagen".into()),
            kategorier: vec!["REGISTRERING".into()],
            outcome: "OK".into(),
            af_status: Some(200),
            duration_ms: i,
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

    struct Chain {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        public: Vec<u8>,
        private: String,
    }

    /// A chain of `n` records with a checkpoint every 4.
    fn chain(n: u64) -> Chain {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let log = AuditLog::start(
            &path,
            Some(key.serialize_pem().as_bytes()),
            CheckpointPolicy {
                every_records: 4,
                every: Duration::from_secs(3600),
                witness: None,
                retention: None,
            },
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            // Concurrent appends share commits and still get consecutive numbers.
            let mut handles = Vec::new();
            for i in 0..n {
                handles.push(log.append(entry(i)));
            }
            let mut seqs = Vec::new();
            for h in handles {
                seqs.push(h.await.unwrap());
            }
            seqs.sort();
            assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
        });
        Chain {
            path,
            public: key.public_key_pem().into_bytes(),
            private: key.serialize_pem(),
            _dir: dir,
        }
    }

    fn sql(c: &Chain, q: &str) {
        Connection::open(&c.path).unwrap().execute_batch(q).unwrap();
    }

    fn check(c: &Chain) -> Result<Verified, Tamper> {
        verify(
            &Connection::open(&c.path).unwrap(),
            &[&c.public],
            &mut |_, _| {},
        )
        .unwrap()
    }

    #[test]
    fn a_new_signing_key_signs_on_and_old_checkpoints_verify_with_the_old_public_key() {
        let c = chain(8);
        let log = writer(&c).unwrap();
        let new = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let old_kid = log.signing_key_id().unwrap();
        let new_kid = log
            .set_signing_key(new.serialize_pem().as_bytes())
            .unwrap()
            .unwrap();
        assert_ne!(old_kid, new_kid);
        assert_eq!(key_id(new.public_key_pem().as_bytes()).unwrap(), new_kid);
        assert_eq!(key_id(&c.public).unwrap(), old_kid);
        // The same key again changes nothing.
        assert_eq!(
            log.set_signing_key(new.serialize_pem().as_bytes()).unwrap(),
            None
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            for i in 0..3 {
                log.append(entry(100 + i)).await.unwrap();
            }
        });
        drop(log); // the last checkpoint, signed with the new key
        let conn = Connection::open(&c.path).unwrap();
        let kids: Vec<String> = conn
            .prepare("SELECT jws FROM checkpoints ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|j| {
                jsonwebtoken::decode_header(j.unwrap())
                    .unwrap()
                    .kid
                    .unwrap()
            })
            .collect();
        assert_eq!(kids, vec![old_kid.clone(), old_kid.clone(), new_kid]);
        let new_public = new.public_key_pem();
        let both: [&[u8]; 2] = [new_public.as_bytes(), &c.public];
        let verified = verify(&conn, &both, &mut |_, _| {}).unwrap().unwrap();
        assert_eq!(verified.signed_through, 11);
        // Without the old public key the old checkpoints cannot be checked, which is not a
        // verdict on the chain.
        let only_new: [&[u8]; 1] = [new_public.as_bytes()];
        let err = verify(&conn, &only_new, &mut |_, _| {}).unwrap_err();
        assert!(err.to_string().contains(&old_kid), "{err}");
    }

    /// A writer on a chain's store that prunes records older than a day (the test entries
    /// are from 2026-11-25), with a checkpoint every 4 records; returns once it pruned.
    fn pruning_writer(c: &Chain) -> AuditLog {
        let log = AuditLog::start(
            &c.path,
            Some(c.private.as_bytes()),
            CheckpointPolicy {
                every_records: 4,
                every: Duration::from_secs(3600),
                witness: None,
                retention: Some(Duration::from_secs(86_400)),
            },
        )
        .unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while log.stats.pruned.load(Ordering::Relaxed) == 0 {
            assert!(Instant::now() < until, "nothing was pruned");
            std::thread::sleep(Duration::from_millis(10));
        }
        log
    }

    fn seqs(c: &Chain, table: &str) -> Vec<u64> {
        let conn = Connection::open(&c.path).unwrap();
        let mut stmt = conn
            .prepare(&format!("SELECT seq FROM {table} ORDER BY seq"))
            .unwrap();
        stmt.query_map([], |r| r.get::<_, i64>(0))
            .unwrap()
            .map(|s| s.unwrap() as u64)
            .collect()
    }

    #[test]
    fn pruning_removes_what_is_past_retention_behind_a_signed_checkpoint() {
        let c = chain(10); // checkpoints at 4, 8 and (at shutdown) 10
        let log = pruning_writer(&c);
        // The newest checkpoint older than the retention period is 10: all ten go, in one
        // step that appends the pruning record and signs it.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut fresh = entry(100);
        fresh.time = now();
        fresh.subject = Some("a1:fresh".into());
        assert_eq!(rt.block_on(log.append(fresh)).unwrap(), 12);
        drop(log);
        assert_eq!(seqs(&c, "records"), [0, 11, 12]);
        assert_eq!(seqs(&c, "checkpoints"), [10, 11, 12]);
        let v = check(&c).unwrap();
        let p = v.pruned.expect("a pruned chain");
        assert_eq!(
            (p.through, p.removed, p.retention_seconds),
            (10, 10, 86_400)
        );
        assert_eq!((v.records, v.held), (12, 3));
        // The pruned pseudonyms are gone from the files, not only from the table.
        for file in ["audit.db", "audit.db-wal"] {
            let path = c.path.with_file_name(file);
            let bytes = std::fs::read(&path).unwrap_or_default();
            let needle = b"iwKJo_Ja8C0fJvWvjcm_zg";
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{file} still holds a pruned subject"
            );
        }

        // Pruned again later (another stale pruning record stays or goes with it): one start.
        let log = writer(&c).unwrap();
        rt.block_on(async {
            for i in 0..4 {
                log.append(entry(200 + i)).await.unwrap();
            }
        });
        drop(log);
        let log = pruning_writer(&c);
        drop(log);
        let v = check(&c).unwrap();
        assert_eq!(v.pruned.unwrap().through, 16);
        assert_eq!(seqs(&c, "records"), [0, 17]);
    }

    #[test]
    fn a_cut_without_its_signed_pruning_record_is_tampering() {
        // Cut at a checkpoint, no pruning record.
        let c = chain(8);
        sql(&c, "DELETE FROM records WHERE seq BETWEEN 1 AND 4");
        assert_eq!(check(&c), Err(Tamper::Cut(4)));
        // Cut elsewhere.
        let c = chain(8);
        sql(&c, "DELETE FROM records WHERE seq BETWEEN 1 AND 3");
        assert_eq!(check(&c), Err(Tamper::Removed(1)));

        // A pruning record forged by whoever cannot sign: linked, but no checkpoint over it.
        let c = chain(8);
        let conn = Connection::open(&c.path).unwrap();
        let hash = |seq: i64| -> String {
            conn.query_row("SELECT hash FROM records WHERE seq = ?1", [seq], |r| {
                r.get(0)
            })
            .unwrap()
        };
        let (at4, head) = (hash(4), hash(8));
        let mut forged = entry(9);
        forged.action = Action::Prune;
        forged.subject = None;
        forged.arende = None;
        forged.pruned = Some(Pruned {
            through: 4,
            head: at4,
            before: "2026-11-26T00:00:00.000Z".into(),
            retention_seconds: 86_400,
            removed: 4,
        });
        let body = canonical(9, &forged, &head);
        let forged = Record {
            seq: 9,
            entry: forged,
            prev: head.clone(),
        };
        conn.execute(
            "INSERT INTO records (seq, body, hash) VALUES (9, ?1, ?2)",
            params![body, forged.hash()],
        )
        .unwrap();
        conn.execute("DELETE FROM records WHERE seq BETWEEN 1 AND 4", [])
            .unwrap();
        drop(conn);
        assert_eq!(check(&c), Err(Tamper::PruningUnsigned(9)));

        // A record claiming to prune that is not a pruning (or the other way round).
        let c = chain(4);
        sql(
            &c,
            "UPDATE records SET body = replace(body, '\"action\":\"disclose\"', '\"action\":\"prune\"') WHERE seq = 2",
        );
        assert!(check(&c).is_err());
    }

    /// Another writer on a chain's store, with its key.
    fn writer(c: &Chain) -> Result<AuditLog, AuditError> {
        AuditLog::start(
            &c.path,
            Some(c.private.as_bytes()),
            CheckpointPolicy {
                every_records: 1000,
                every: Duration::from_secs(3600),
                witness: None,
                retention: None,
            },
        )
    }

    #[test]
    fn a_changed_search_column_is_found() {
        // Hiding a record from a person's extract without touching its body.
        let c = chain(10);
        sql(
            &c,
            "UPDATE records SET subject = 'a1:someone-else' WHERE seq = 5",
        );
        assert_eq!(check(&c), Err(Tamper::IndexChanged(5)));
        let c = chain(10);
        sql(&c, "UPDATE records SET arende = NULL WHERE seq = 2");
        assert_eq!(check(&c), Err(Tamper::IndexChanged(2)));
    }

    #[test]
    fn a_cut_chain_is_not_refilled_and_stays_found() {
        let c = chain(10);
        sql(&c, "DELETE FROM records WHERE seq > 6");
        assert_eq!(check(&c), Err(Tamper::Truncated(8, 6)));
        // No writer appends to it: new records would fill the gap below checkpoint 8.
        let refused = writer(&c).err().unwrap().to_string();
        assert!(
            refused.contains("ends at record 6 but checkpoint 10"),
            "{refused}"
        );
        // Someone refills it by hand up to 8 and beyond: the old checkpoint still stands.
        sql(&c, "DELETE FROM checkpoints WHERE seq = 10");
        let conn = Connection::open(&c.path).unwrap();
        let mut prev: String = conn
            .query_row("SELECT hash FROM records WHERE seq = 6", [], |r| r.get(0))
            .unwrap();
        for seq in 7..=9 {
            let body = canonical(seq, &entry(seq + 100), &prev);
            let hash = serde_json::from_str::<Record>(&body).unwrap().hash();
            conn.execute(
                "INSERT INTO records (seq, body, hash, subject, arende) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![seq as i64, body, hash, entry(0).subject, entry(0).arende],
            )
            .unwrap();
            prev = hash;
        }
        assert_eq!(check(&c), Err(Tamper::CheckpointMismatch(8)));
        // A writer that is allowed to continue never replaces the checkpoint that says so.
        let log = writer(&c).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(log.append(entry(1))).unwrap();
        drop(log);
        assert_eq!(check(&c), Err(Tamper::CheckpointMismatch(8)));
    }

    #[test]
    fn the_export_is_the_hashed_bytes_plus_the_hash_and_the_checkpoints() {
        let c = chain(5);
        let mut out = Vec::new();
        let conn = Connection::open(&c.path).unwrap();
        // The genesis and five records.
        assert_eq!(export(&conn, &mut out).unwrap(), 6);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // A checkpoint after record 4 and one after 5 (the writer's last).
        assert_eq!(lines.len(), 8, "{text}");
        let mut prev = GENESIS.to_owned();
        for line in lines.iter().filter(|l| !l.starts_with("{\"checkpoint\"")) {
            let (hashed, hash) = line.rsplit_once(",\"hash\":\"").unwrap();
            let hash = hash.strip_suffix("\"}").unwrap();
            let hashed = format!("{hashed}}}");
            let record: Record = serde_json::from_str(&hashed).unwrap();
            // The hash covers the number, the link and the digest of the entry as written.
            let (_, entry_json) = hashed.split_once(",\"entry\":").unwrap();
            let (entry_json, _) = entry_json.rsplit_once(",\"prev\":").unwrap();
            assert_eq!(
                record_hash(record.seq, &sha256_hex(entry_json), &record.prev),
                hash
            );
            assert_eq!(record.prev, prev);
            prev = hash.to_owned();
        }
        assert!(lines[0].contains("\"action\":\"genesis\""), "{}", lines[0]);
        assert!(
            lines[5].starts_with("{\"checkpoint\":{\"jws\":"),
            "{}",
            lines[5]
        );
    }

    #[test]
    fn the_canonical_encoding_is_serde_jsons_compact_form() {
        #[derive(Serialize)]
        struct Whole<'a> {
            seq: u64,
            entry: &'a Entry,
            prev: &'a str,
        }
        let mut e = entry(7);
        e.lagrum = Some("\"quoted\" \\ and\ncontrol \u{1} åäö".into());
        e.handlaggare = None;
        let prev = "ab".repeat(32);
        let whole = serde_json::to_string(&Whole {
            seq: 42,
            entry: &e,
            prev: &prev,
        })
        .unwrap();
        assert_eq!(canonical(42, &e, &prev), whole);
        let back: Record = serde_json::from_str(&whole).unwrap();
        assert_eq!(back.canonical(), whole);
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let c = chain(10);
        let v = check(&c).unwrap();
        // At 4 and 8, and at 10 when the writer stopped.
        assert_eq!((v.records, v.checkpoints), (10, 3));
    }

    #[test]
    fn a_changed_field_is_found() {
        let c = chain(10);
        sql(
            &c,
            "UPDATE records SET body = replace(body, 'EKB-BESLUT', 'AKT-PLANERING') WHERE seq = 5",
        );
        assert_eq!(check(&c), Err(Tamper::Changed(5)));
        // Even with the stored hash recomputed, the next record's link breaks.
        let c = chain(10);
        let conn = Connection::open(&c.path).unwrap();
        let body: String = conn
            .query_row("SELECT body FROM records WHERE seq = 5", [], |r| r.get(0))
            .unwrap();
        let forged = body.replace("EKB-BESLUT", "AKT-PLANERING");
        let hash = serde_json::from_str::<Record>(&forged).unwrap().hash();
        conn.execute(
            "UPDATE records SET body = ?1, hash = ?2 WHERE seq = 5",
            params![forged, hash],
        )
        .unwrap();
        assert_eq!(check(&c), Err(Tamper::Inserted(6)));
    }

    #[test]
    fn a_deleted_record_is_found() {
        let c = chain(10);
        sql(&c, "DELETE FROM records WHERE seq = 3");
        assert_eq!(check(&c), Err(Tamper::Removed(3)));
    }

    #[test]
    fn swapped_records_are_found() {
        let c = chain(10);
        sql(
            &c,
            "UPDATE records SET seq = -1 WHERE seq = 4; UPDATE records SET seq = 4 WHERE seq = 5; UPDATE records SET seq = 5 WHERE seq = -1;",
        );
        assert_eq!(check(&c), Err(Tamper::Reordered(4)));
    }

    #[test]
    fn a_truncated_tail_after_a_checkpoint_is_found() {
        let c = chain(10);
        sql(&c, "DELETE FROM records WHERE seq > 6");
        assert_eq!(check(&c), Err(Tamper::Truncated(8, 6)));
    }

    #[test]
    fn a_forged_checkpoint_signature_is_found() {
        let c = chain(10);
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let key = jsonwebtoken::EncodingKey::from_ed_pem(other.serialize_pem().as_bytes()).unwrap();
        let claims = CheckpointClaims {
            seq: 4,
            head: "00".repeat(32),
            iat: 0,
            chain: None,
        };
        let jws = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
            &claims,
            &key,
        )
        .unwrap();
        Connection::open(&c.path)
            .unwrap()
            .execute(
                "UPDATE checkpoints SET jws = ?1 WHERE seq = 4",
                params![jws],
            )
            .unwrap();
        assert_eq!(check(&c), Err(Tamper::BadSignature(4)));
    }

    #[test]
    fn a_checkpoint_moved_to_record_zero_is_refused_not_a_panic() {
        let c = chain(10);
        sql(&c, "UPDATE checkpoints SET seq = 0 WHERE seq = 4");
        assert_eq!(check(&c), Err(Tamper::BadSignature(0)));
    }

    #[test]
    fn concurrent_appends_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let log = AuditLog::start(
            &dir.path().join("audit.db"),
            Some(key.serialize_pem().as_bytes()),
            CheckpointPolicy {
                every_records: 1000,
                every: Duration::from_secs(3600),
                witness: None,
                retention: None,
            },
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // 200 appends queued at once, as 200 concurrent requests would.
        let log = Arc::new(log);
        let seqs = rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..200 {
                let log = log.clone();
                set.spawn(async move { log.append(entry(i)).await.unwrap() });
            }
            set.join_all().await
        });
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(sorted, (1..=200).collect::<Vec<_>>());
        let commits = log.stats.commits.load(Ordering::Relaxed);
        assert!(commits < 20, "200 appends took {commits} commits");
        assert_eq!(log.stats.records.load(Ordering::Relaxed), 200);
        assert_eq!(log.stats.head.load(Ordering::Relaxed), 200);
    }

    #[test]
    fn a_reopened_store_continues_the_chain() {
        let c = chain(3);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let log = AuditLog::start(
            &c.path,
            Some(key.serialize_pem().as_bytes()),
            CheckpointPolicy {
                every_records: 1000,
                every: Duration::from_secs(3600),
                witness: None,
                retention: None,
            },
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(log.append(entry(9))).unwrap(), 4);
        let v = check(&c).unwrap();
        assert_eq!(v.records, 4);
    }
}
