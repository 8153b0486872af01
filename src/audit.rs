//! The audit chain: one record per access or refusal, each holding the SHA-256 of the one
//! before, stored in SQLite (WAL) and committed in groups; signed checkpoints (Ed25519, as
//! compact JWS) over the head let anyone with the public key verify that nothing was changed,
//! removed, reordered or inserted — without trusting the database.
//!
//! Records hold no personal data in clear: the subject is a pseudonym.

use std::path::Path;
use std::sync::mpsc;
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
    pub arende: Option<String>,
    /// The subject's pseudonym (domain `audit`), never the number.
    pub subject: Option<String>,
    pub syfte: Option<String>,
    pub lagrum: Option<String>,
    pub kategorier: Vec<String>,
    /// `OK` or the Felkod.
    pub outcome: String,
    pub af_status: Option<u16>,
    pub duration_ms: u64,
}

/// A stored record. Its canonical encoding is its JSON with the fields in this order and no
/// whitespace; its hash is the hex SHA-256 of that encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub entry: Entry,
    /// The previous record's hash (64 zeros for the first).
    pub prev: String,
}

impl Record {
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
    pub fn hash(&self) -> String {
        hex::encode(sha2::Sha256::digest(self.canonical()))
    }
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a checkpoint signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointClaims {
    pub seq: u64,
    pub head: String,
    pub iat: u64,
}

/// When to write a checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    pub every_records: u64,
    pub every: Duration,
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
pub fn open(path: &Path) -> Result<Connection, AuditError> {
    let conn = Connection::open(path).map_err(store_err)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, body TEXT NOT NULL, hash TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS checkpoints (seq INTEGER PRIMARY KEY, jws TEXT NOT NULL);",
    )
    .map_err(store_err)?;
    Ok(conn)
}

type Reply = tokio::sync::oneshot::Sender<Result<u64, String>>;

/// The writer: appends in groups, one durable commit for every record waiting.
pub struct AuditLog {
    tx: mpsc::Sender<(Entry, Reply)>,
}

impl AuditLog {
    /// Starts the writer thread on the store at `path`, signing checkpoints with `signing_key`
    /// (an Ed25519 key in PKCS#8 PEM).
    pub fn start(
        path: &Path,
        signing_key: &[u8],
        policy: CheckpointPolicy,
    ) -> Result<Self, AuditError> {
        let mut conn = open(path)?;
        let key = jsonwebtoken::EncodingKey::from_ed_pem(signing_key)
            .map_err(|e| AuditError::Store(format!("checkpoint key: {e}")))?;
        let (tx, rx) = mpsc::channel::<(Entry, Reply)>();
        let mut head: (u64, String) = conn
            .query_row(
                "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
            .optional()
            .map_err(store_err)?
            .unwrap_or((0, GENESIS.to_owned()));
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                let mut since_checkpoint = 0u64;
                let mut last_checkpoint = Instant::now();
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < 512 {
                        match rx.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    let result = write_batch(
                        &mut conn,
                        &mut head,
                        &batch,
                        &key,
                        policy,
                        &mut since_checkpoint,
                        &mut last_checkpoint,
                    );
                    for (i, (_, reply)) in batch.into_iter().enumerate() {
                        let _ = reply.send(match &result {
                            Ok(first_seq) => Ok(first_seq + i as u64),
                            Err(e) => Err(e.clone()),
                        });
                    }
                }
            })
            .map_err(|e| AuditError::Store(e.to_string()))?;
        Ok(Self { tx })
    }

    /// Appends one entry; returns its sequence number once it is durable (fsync'd).
    pub async fn append(&self, entry: Entry) -> Result<u64, AuditError> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.tx
            .send((entry, reply))
            .map_err(|_| AuditError::Stopped)?;
        done.await
            .map_err(|_| AuditError::Stopped)?
            .map_err(AuditError::Store)
    }
}

fn write_batch(
    conn: &mut Connection,
    head: &mut (u64, String),
    batch: &[(Entry, Reply)],
    key: &jsonwebtoken::EncodingKey,
    policy: CheckpointPolicy,
    since_checkpoint: &mut u64,
    last_checkpoint: &mut Instant,
) -> Result<u64, String> {
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    let first = head.0 + 1;
    let mut next = head.clone();
    for (entry, _) in batch {
        let record = Record {
            seq: next.0 + 1,
            entry: entry.clone(),
            prev: next.1.clone(),
        };
        let body = String::from_utf8(record.canonical()).map_err(|e| e.to_string())?;
        let hash = record.hash();
        tx.execute(
            "INSERT INTO records (seq, body, hash) VALUES (?1, ?2, ?3)",
            params![record.seq as i64, body, hash],
        )
        .map_err(|e| e.to_string())?;
        next = (record.seq, hash);
    }
    *since_checkpoint += batch.len() as u64;
    if *since_checkpoint >= policy.every_records || last_checkpoint.elapsed() >= policy.every {
        let claims = CheckpointClaims {
            seq: next.0,
            head: next.1.clone(),
            iat: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        let jws = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
            &claims,
            key,
        )
        .map_err(|e| e.to_string())?;
        tx.execute(
            "INSERT OR REPLACE INTO checkpoints (seq, jws) VALUES (?1, ?2)",
            params![next.0 as i64, jws],
        )
        .map_err(|e| e.to_string())?;
        *since_checkpoint = 0;
        *last_checkpoint = Instant::now();
    }
    // One fsync for the whole group: the answers wait for it.
    tx.commit().map_err(|e| e.to_string())?;
    *head = next;
    Ok(first)
}

/// The first thing wrong in a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tamper {
    #[error("record {0} was changed: its hash does not match its content")]
    Changed(u64),
    #[error("record {0} is missing")]
    Removed(u64),
    #[error("record {0} is out of order")]
    Reordered(u64),
    #[error("record {0} was inserted: it does not follow the record before it")]
    Inserted(u64),
    #[error("checkpoint at record {0} has a bad signature")]
    BadSignature(u64),
    #[error("records after checkpoint {0} were removed: the chain ends at {1}")]
    Truncated(u64, u64),
    #[error("the store cannot be read: {0}")]
    Unreadable(String),
}

/// The outcome of a verification that found nothing wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub checkpoints: u64,
    pub head: String,
}

/// Verifies every record and every checkpoint signature (public key: Ed25519 SubjectPublicKeyInfo PEM).
pub fn verify(conn: &Connection, public_key_pem: &[u8]) -> Result<Verified, Tamper> {
    let unreadable = |e: rusqlite::Error| Tamper::Unreadable(e.to_string());
    let mut stmt = conn
        .prepare("SELECT seq, body, hash FROM records ORDER BY seq")
        .map_err(unreadable)?;
    let rows: Vec<(i64, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(unreadable)?
        .collect::<Result<_, _>>()
        .map_err(unreadable)?;
    let mut hashes = Vec::with_capacity(rows.len());
    let mut prev = GENESIS.to_owned();
    let bodies: Vec<Option<Record>> = rows
        .iter()
        .map(|(_, b, _)| serde_json::from_str(b).ok())
        .collect();
    for (i, (seq, body, stored)) in rows.iter().enumerate() {
        let expected = i as u64 + 1;
        let seq = *seq as u64;
        if seq != expected {
            return Err(Tamper::Removed(expected));
        }
        let Some(record) = &bodies[i] else {
            return Err(Tamper::Changed(seq));
        };
        if hex::encode(sha2::Sha256::digest(body.as_bytes())) != *stored || record.hash() != *stored
        {
            return Err(Tamper::Changed(seq));
        }
        if record.seq != seq {
            return Err(Tamper::Reordered(seq));
        }
        if record.prev != prev {
            // Its predecessor exists elsewhere in the chain: moved; nowhere: inserted.
            let moved = rows.iter().any(|(_, _, h)| *h == record.prev);
            return Err(if moved {
                Tamper::Reordered(seq)
            } else {
                Tamper::Inserted(seq)
            });
        }
        prev = stored.clone();
        hashes.push(stored.clone());
    }
    let key = jsonwebtoken::DecodingKey::from_ed_pem(public_key_pem)
        .map_err(|e| Tamper::Unreadable(format!("public key: {e}")))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let mut cps = conn
        .prepare("SELECT seq, jws FROM checkpoints ORDER BY seq")
        .map_err(unreadable)?;
    let checkpoints: Vec<(i64, String)> = cps
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(unreadable)?
        .collect::<Result<_, _>>()
        .map_err(unreadable)?;
    for (seq, jws) in &checkpoints {
        let seq = *seq as u64;
        let claims = jsonwebtoken::decode::<CheckpointClaims>(jws, &key, &validation)
            .map_err(|_| Tamper::BadSignature(seq))?
            .claims;
        if claims.seq != seq {
            return Err(Tamper::BadSignature(seq));
        }
        let index = seq
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .ok_or(Tamper::BadSignature(seq))?;
        match hashes.get(index) {
            None => return Err(Tamper::Truncated(seq, hashes.len() as u64)),
            Some(h) if *h != claims.head => return Err(Tamper::Changed(seq)),
            Some(_) => {}
        }
    }
    Ok(Verified {
        records: hashes.len() as u64,
        checkpoints: checkpoints.len() as u64,
        head: prev,
    })
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
        }
    }

    struct Chain {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        public: Vec<u8>,
    }

    /// A chain of `n` records with a checkpoint every 4.
    fn chain(n: u64) -> Chain {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let log = AuditLog::start(
            &path,
            key.serialize_pem().as_bytes(),
            CheckpointPolicy {
                every_records: 4,
                every: Duration::from_secs(3600),
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
            _dir: dir,
        }
    }

    fn sql(c: &Chain, q: &str) {
        Connection::open(&c.path).unwrap().execute_batch(q).unwrap();
    }

    fn check(c: &Chain) -> Result<Verified, Tamper> {
        verify(&Connection::open(&c.path).unwrap(), &c.public)
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let c = chain(10);
        let v = check(&c).unwrap();
        assert_eq!((v.records, v.checkpoints), (10, 2));
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
        let hash = hex::encode(sha2::Sha256::digest(forged.as_bytes()));
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
    fn a_reopened_store_continues_the_chain() {
        let c = chain(3);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let log = AuditLog::start(
            &c.path,
            key.serialize_pem().as_bytes(),
            CheckpointPolicy {
                every_records: 1000,
                every: Duration::from_secs(3600),
            },
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(log.append(entry(9))).unwrap(), 4);
        let v = verify(&Connection::open(&c.path).unwrap(), &c.public).unwrap();
        assert_eq!(v.records, 4);
    }
}
