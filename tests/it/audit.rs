//! The audit chain as the data-protection officer relies on it: one record per access or
//! refusal, written before the answer leaves, surviving a crash, and read back with the DPO's
//! commands.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use brygga::config::Config;
use brygga::contract::soap;
use brygga::devkit::client::{KommunClient, TokenMinter};
use brygga::devkit::demo::{DemoFiles, ExampleClient, example_clients};
use brygga::devkit::sim_af::{self, SimSettings};
use brygga::model::*;
use brygga::store::audit::{Action, Record};
use sha2::{Digest, Sha256};

use crate::harness::{self, fault, status};

fn brygga() -> Command {
    Command::new(env!("CARGO_BIN_EXE_brygga"))
}

fn records(store: &std::path::Path) -> Vec<Record> {
    harness::audit_records(store)
}

fn public_key() -> Vec<u8> {
    std::fs::read(harness::certs().join("audit-signing.pub.pem")).unwrap()
}

fn verify(store: &Path) -> Result<brygga::store::audit::Verified, brygga::store::audit::Tamper> {
    let conn = rusqlite::Connection::open(store).unwrap();
    brygga::store::audit::verify(&conn, &[&public_key()], &mut |_, _| {}).unwrap()
}

/// A copy of the example configuration beside it (so its relative paths hold) whose audit
/// store is `store` and whose listeners take free ports; AF is at `af_port` when given.
pub fn config_with_store(store: &Path, af_port: Option<u16>) -> tempfile::NamedTempFile {
    let defaults = DemoFiles::default();
    let mut text = brygga::devkit::demo::on_free_ports_unlimited(
        &std::fs::read_to_string(&defaults.config).unwrap(),
    )
    .replace(
        "\"../data/audit.db\"",
        &format!("{:?}", store.display().to_string()),
    );
    if let Some(port) = af_port {
        text = text.replace("localhost:9443", &format!("localhost:{port}"));
    }
    let file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile_in(defaults.config.parent().unwrap())
        .unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[tokio::test]
async fn each_access_and_refusal_has_a_record_with_its_facts() {
    let s = harness::start().await;
    let store = s.audit_store();
    let token = s.st_token();
    let asked =
        s.st.post_raw(Some(&token), s.st_xml(sim_af::REGISTRERAD))
            .await
            .unwrap();
    let answer = status(&asked);
    fault(&s.ask(None).await, 401, "TOKEN_SAKNAS");
    // Göteborg's case worker named in Stockholm's request: refused by policy after decoding.
    let foreign = s
        .st_idp
        .token("SE2120000142-HL02", "0180", "EKB-BESLUT")
        .unwrap();
    fault(
        &s.st
            .post_raw(Some(&foreign), s.st_xml(sim_af::AVAKTUALISERAD))
            .await
            .unwrap(),
        403,
        "HANDLAGGARE_MATCHAR_EJ",
    );
    fault(
        &s.st
            .post_raw(Some(&token), s.st_xml(sim_af::AF_FEL))
            .await
            .unwrap(),
        502,
        "AF_FEL",
    );
    let ping = soap::encode_request(&KommunRequest::Ping(uuid::Uuid::new_v4()));
    harness::answer(&s.st.post_raw(Some(&token), ping).await.unwrap());
    // A wrong content type: refused, and recorded like any refusal.
    let wrong =
        s.st.post_with_type(
            Some(&token),
            s.st_xml(sim_af::REGISTRERAD),
            "application/json",
        )
        .await
        .unwrap();
    fault(&wrong, 415, "FEL_MEDIATYP");
    let config = s.inner.config.clone();
    let _data = s.stop().await;

    let r = records(&store);
    assert_eq!(r.len(), 6, "{r:#?}");
    let pseudonym = |pnr: &str| {
        config
            .pseudonyms
            .pseudonym("audit", &Personnummer::parse(pnr).unwrap())
            .unwrap()
    };
    // The legal basis as the request stated it (one the purpose accepts).
    let lagrum = brygga::devkit::client::example_lagrum("EKB-BESLUT").to_owned();

    let d = &r[0].entry;
    assert_eq!(r[0].seq, 1);
    assert_eq!(d.action, Action::Disclose);
    assert_eq!(
        d.korrelationsid,
        brygga::store::audit::recorded_korrelationsid(&answer.korrelationsid)
    );
    assert_eq!(d.direction, "af-till-kommun");
    assert_eq!(d.operation, "HamtaArbetssokandeStatus");
    assert_eq!(d.organisation, "212000-0142");
    assert_eq!(d.handlaggare.as_deref(), Some("SE2120000142-HL01"));
    assert_eq!(d.arende.as_deref(), Some("EB-2026-004711"));
    assert_eq!(d.subject, Some(pseudonym(sim_af::REGISTRERAD)));
    assert_eq!(d.syfte.as_deref(), Some("EKB-BESLUT"));
    assert_eq!(d.lagrum.as_deref(), Some(lagrum.as_str()));
    assert_eq!(
        d.kategorier,
        [
            "REGISTRERING",
            "KONTOR",
            "SOKANDEKATEGORI",
            "AKTIVITETSRAPPORT",
            "AKASSA"
        ]
    );
    assert_eq!((d.outcome.as_str(), d.af_status), ("OK", Some(200)));
    assert!(d.time.ends_with('Z') && d.time.len() == 24, "{}", d.time);

    let no_token = &r[1].entry;
    assert_eq!(no_token.action, Action::Deny);
    assert_eq!(no_token.outcome, "TOKEN_SAKNAS");
    assert_eq!(no_token.organisation, "212000-0142");
    assert_eq!(
        (no_token.subject.as_ref(), no_token.handlaggare.as_ref()),
        (None, None)
    );

    let denied = &r[2].entry;
    assert_eq!(denied.action, Action::Deny);
    assert_eq!(denied.outcome, "HANDLAGGARE_MATCHAR_EJ");
    assert_eq!(denied.handlaggare.as_deref(), Some("SE2120000142-HL02"));
    assert_eq!(denied.subject, Some(pseudonym(sim_af::AVAKTUALISERAD)));
    assert!(denied.kategorier.is_empty() && denied.af_status.is_none());

    let af_failed = &r[3].entry;
    assert_eq!(af_failed.action, Action::Read);
    assert_eq!(
        (af_failed.outcome.as_str(), af_failed.af_status),
        ("AF_FEL", Some(500))
    );
    assert!(af_failed.kategorier.is_empty());

    let ping = &r[4].entry;
    assert_eq!(
        (ping.action, ping.operation.as_str()),
        (Action::Read, "Ping")
    );
    assert_eq!(ping.subject, None);
    let wrong = &r[5].entry;
    assert_eq!(
        (
            wrong.action,
            wrong.outcome.as_str(),
            wrong.organisation.as_str()
        ),
        (Action::Deny, "FEL_MEDIATYP", "212000-0142")
    );

    // Each links to the one before, and the writer signed the head when it stopped.
    let v = verify(&store).unwrap();
    assert_eq!((v.records, v.checkpoints), (6, 1));
}

#[tokio::test]
async fn an_answer_is_withheld_when_its_record_cannot_be_written() {
    let s = harness::start_custom(|c, _| c.health.cache = Duration::ZERO, true).await;
    let store = s.audit_store();
    status(&s.ask(Some(&s.st_token())).await);
    // The store starts refusing writes, as a full disk or a broken volume would.
    rusqlite::Connection::open(&store)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON records BEGIN SELECT RAISE(FAIL, 'no space left (test)'); END;",
        )
        .unwrap();
    let before = s.af_data_requests();
    let a = s.ask(Some(&s.st_token())).await;
    let fel = fault(&a, 503, "LOGGNING_MISSLYCKADES");
    assert!(fel.kan_forsokas_igen);
    let body = String::from_utf8_lossy(&a.body);
    assert!(
        !body.contains("Inskriven") && !body.contains("Kontor"),
        "nothing of AF's answer leaves: {body}"
    );
    assert_eq!(s.af_data_requests(), before + 1, "AF was asked");
    // A refusal still gets its Fault.
    fault(&s.ask(None).await, 401, "TOKEN_SAKNAS");
    // Operators see it: not ready, the store check says why, the failures are counted.
    let admin = |path: &str| format!("http://{}{path}", s.inner.gateway.admin_addr);
    let ready = reqwest::get(admin("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["store"]["status"], "fail", "{ready}");
    let metrics = reqwest::get(admin("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failures: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("brygga_audit_commit_failures_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(failures >= 2.0, "{metrics}");
    // Writable again: answers flow again.
    rusqlite::Connection::open(&store)
        .unwrap()
        .execute_batch("DROP TRIGGER refuse;")
        .unwrap();
    status(&s.ask(Some(&s.st_token())).await);
    let ready = reqwest::get(admin("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    let _data = s.stop().await;
    let r = records(&store);
    assert_eq!(r.len(), 2, "only what could be written: {r:#?}");
    assert!(r.iter().all(|r| r.entry.outcome == "OK"));
    verify(&store).unwrap();
}

/// Fills a store with a few accesses through a real gateway; returns its directory.
async fn store_with_accesses() -> (tempfile::TempDir, PathBuf) {
    let s = harness::start().await;
    let token = s.st_token();
    for pnr in [
        sim_af::REGISTRERAD,
        sim_af::AVAKTUALISERAD,
        sim_af::REGISTRERAD,
    ] {
        status(&s.st.post_raw(Some(&token), s.st_xml(pnr)).await.unwrap());
    }
    let mut other_case = s.st_fraga(sim_af::REGISTRERAD);
    other_case.arendeidentitet = "EB-2026-000099".into();
    status(
        &s.st
            .call(&token, &KommunRequest::HamtaArbetssokandeStatus(other_case))
            .await
            .unwrap(),
    );
    let store = s.audit_store();
    (s.stop().await, store)
}

#[tokio::test]
async fn the_dpo_extract_names_who_when_what_why_for_a_person_or_a_case() {
    let (_dir, store) = store_with_accesses().await;
    let config = config_with_store(&store, None);
    let run = |args: &[&str]| {
        brygga()
            .args(["audit", "query", "--operator", "dso-anna", "--config"])
            .arg(config.path())
            .args(args)
            .output()
            .unwrap()
    };
    let table = run(&[
        "--personnummer",
        "19850709-9805",
        "--syfte",
        "registerutdrag",
    ]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&table.stderr)
    );
    assert!(text.starts_with("Log extract (registerutdrag)"), "{text}");
    assert!(text.contains("Made by      dso-anna at "), "{text}");
    assert!(text.contains("Reason       registerutdrag"), "{text}");
    assert!(
        text.contains("verified when this extract was made"),
        "{text}"
    );
    // Three accesses to the person, and this extract itself.
    assert!(text.contains("\n4 record(s)"), "{text}");
    assert_eq!(
        text.matches("HamtaArbetssokandeStatus").count(),
        3,
        "{text}"
    );
    assert!(text.contains("SE2120000142-HL01") && text.contains("212000-0142"));
    assert!(text.contains("11 kap. 11 a § socialtjänstlagen"), "{text}");
    assert!(text.contains("dso-anna") && text.contains("audit query"));
    assert!(!text.contains("198507099805") && !text.contains("850709"));

    let json = run(&["--personnummer", sim_af::REGISTRERAD, "--json"]);
    let rows = json_rows(&json.stdout);
    assert_eq!(rows.len(), 5, "and the first extract is now in it too");
    assert_eq!(rows[0]["entry"]["operation"], "HamtaArbetssokandeStatus");
    assert_eq!(rows[0]["entry"]["action"], "disclose");
    assert_eq!(rows[0]["entry"]["syfte"], "EKB-BESLUT");
    assert_eq!(
        rows[0]["syfte_beskrivning"],
        "Beslut om eller kontroll av ekonomiskt bistånd"
    );
    assert_eq!(rows[0]["entry"]["organisation"], "212000-0142");
    assert_eq!(rows[0]["entry"]["kategorier"][0], "REGISTRERING");
    assert!(
        rows[0]["entry"]["lagrum"]
            .as_str()
            .unwrap()
            .contains("socialtjänstlagen")
    );
    assert_eq!(rows[3]["entry"]["handlaggare"], "dso-anna");

    let case = run(&["--arende", "EB-2026-000099", "--json"]);
    let rows = json_rows(&case.stdout);
    // The access in that case, and this extract about it.
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(rows[0]["entry"]["operation"], "HamtaArbetssokandeStatus");
    assert_eq!(rows[1]["entry"]["operation"], "audit query");
    let tomorrow = time::OffsetDateTime::now_utc().date().next_day().unwrap();
    let later = run(&[
        "--personnummer",
        sim_af::REGISTRERAD,
        "--from",
        &tomorrow.to_string(),
        "--json",
    ]);
    assert_eq!(json_rows(&later.stdout).len(), 0);
    let today = time::OffsetDateTime::now_utc().date().to_string();
    let window = run(&[
        "--personnummer",
        sim_af::REGISTRERAD,
        "--from",
        &today,
        "--to",
        &today,
        "--json",
    ]);
    assert!(json_rows(&window.stdout).len() >= 3);

    // Bad input: specific, and the number never echoed.
    let bad = run(&["--personnummer", "198507099806"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(err.contains("--personnummer is not a valid"), "{err}");
    assert!(!err.contains("9806"), "{err}");
    let bad = run(&["--arende", "x", "--from", "yesterday"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--from: 'yesterday'"));
    let no_keys = brygga()
        .args(["audit", "query", "--store"])
        .arg(&store)
        .args(["--personnummer", sim_af::REGISTRERAD])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&no_keys.stderr).contains("give --config"),
        "{}",
        String::from_utf8_lossy(&no_keys.stderr)
    );
    let missing = brygga()
        .args(["audit", "verify", "--store", "/nonexistent/audit.db"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such audit store"));

    // Every extract made is itself in the chain (the five that ran; the refused ones showed
    // nothing), and the chain still verifies.
    let own: Vec<_> = records(&store)
        .into_iter()
        .filter(|r| r.entry.direction == "dpo")
        .collect();
    assert_eq!(own.len(), 5, "{own:#?}");
    assert!(own.iter().all(|r| r.entry.operation == "audit query"));
    assert!(
        own[0]
            .entry
            .subject
            .as_deref()
            .is_some_and(|s| s.starts_with("a1:"))
    );
    assert_eq!(own[0].entry.syfte.as_deref(), Some("registerutdrag"));
    verify(&store).unwrap();
}

#[tokio::test]
async fn export_writes_json_lines_and_verify_shows_progress() {
    let (dir, store) = store_with_accesses().await;
    let out = dir.path().join("export.jsonl");
    let export = brygga()
        .args(["audit", "export", "--store"])
        .arg(&store)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(export.status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    let (lines, checkpoints): (Vec<&str>, Vec<&str>) = text
        .lines()
        .partition(|l| !l.starts_with("{\"checkpoint\""));
    // The genesis, four accesses and the export itself, recorded before it was written; the
    // gateway signed the head (record 4) when it stopped.
    assert_eq!(lines.len(), 6, "{text}");
    assert_eq!(checkpoints.len(), 1, "{text}");
    let cp: serde_json::Value = serde_json::from_str(checkpoints[0]).unwrap();
    assert_eq!(cp["checkpoint"]["seq"], 4);
    let mut prev = "0".repeat(64);
    for (i, line) in lines.iter().enumerate() {
        let l: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(l["seq"], i as u64);
        assert_eq!(l["prev"], prev.as_str());
        // The line less its last member `hash` is the canonical encoding; the hash covers
        // its number, its link and the SHA-256 of its entry as written there.
        let hash = l["hash"].as_str().unwrap();
        let hashed = line.replace(&format!(",\"hash\":\"{hash}\""), "");
        let canonical: Record = serde_json::from_str(&hashed).unwrap();
        assert_eq!(canonical.canonical(), hashed);
        let entry_json = hashed
            .split_once(",\"entry\":")
            .and_then(|(_, e)| e.rsplit_once(",\"prev\":"))
            .unwrap()
            .0;
        let entry_digest = hex::encode(Sha256::digest(entry_json.as_bytes()));
        let covered =
            format!("{{\"seq\":{i},\"entry_sha256\":\"{entry_digest}\",\"prev\":\"{prev}\"}}");
        assert_eq!(hex::encode(Sha256::digest(covered.as_bytes())), hash);
        prev = hash.to_owned();
    }
    let last: serde_json::Value = serde_json::from_str(lines[5]).unwrap();
    assert_eq!(last["entry"]["operation"], "audit export");

    // The export is checked as the store is, without it.
    let (code, shown) = verify_cli(
        Path::new("/nonexistent"),
        &[std::ffi::OsStr::new("--export"), out.as_os_str()],
    );
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains("the export verifies: 5 record(s)"),
        "{shown}"
    );
    let forged = dir.path().join("forged.jsonl");
    std::fs::write(&forged, text.replacen("\"disclose\"", "\"read\"", 1)).unwrap();
    let (code, shown) = verify_cli(
        Path::new("/nonexistent"),
        &[std::ffi::OsStr::new("--export"), forged.as_os_str()],
    );
    assert_eq!(code, 1, "{shown}");
    assert!(shown.contains("TAMPERED: record 1 was changed"), "{shown}");

    let v = brygga()
        .args(["audit", "verify", "--progress", "--store"])
        .arg(&store)
        .arg("--public-key")
        .arg(harness::certs().join("audit-signing.pub.pem"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&v.stderr);
    assert!(v.status.success(), "{err}");
    assert!(
        err.contains("verifying [####################] 6/6 records (100 %)"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&v.stdout).contains("the chain verifies: 5 record(s)"));
    // The verification is recorded after it ran.
    assert_eq!(
        records(&store).last().unwrap().entry.operation,
        "audit verify"
    );
}

/// A gateway process on a store, with its readiness line read.
pub struct Process {
    pub child: Child,
    pub url: String,
    pub af_url: String,
}

pub fn spawn_gateway(config: &Path) -> Process {
    let mut child = brygga()
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let local = |k: &str| info[k].as_str().unwrap().replace("127.0.0.1", "localhost");
    Process {
        child,
        url: local("kommun_url"),
        af_url: local("af_url"),
    }
}

/// A `brygga serve` setting for Stockholm's case system: an AF simulator, a store in a
/// temporary directory, the configuration pointing at both, and a Stockholm token.
pub struct ServeSetup {
    pub af: sim_af::RunningSim,
    /// Holds the store; removed when the setting is dropped.
    pub _dir: tempfile::TempDir,
    pub store: PathBuf,
    pub config_file: tempfile::NamedTempFile,
    pub sthlm: ExampleClient,
    pub token: String,
}

impl ServeSetup {
    /// With AF answering after `latency`, and the configuration rewritten by `adjust`.
    pub async fn start(
        latency: Duration,
        adjust: impl FnOnce(&Path, u16) -> tempfile::NamedTempFile,
    ) -> Self {
        let files = DemoFiles::default();
        let mut sim_settings = SimSettings::load(&files.sim_config).unwrap();
        sim_settings.bind = "127.0.0.1:0".parse().unwrap();
        sim_settings.faults.latency = latency;
        let af = sim_af::start(sim_settings).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("audit.db");
        let config_file = adjust(&store, af.addr.port());
        let config = Config::load(config_file.path()).unwrap();
        let sthlm = example_clients(&config, &files.certs).remove(0);
        let token = TokenMinter::load(&sthlm.idp_key, &sthlm.issuer, &config.token_rules.audience)
            .unwrap()
            .token(&sthlm.handlaggare, "0180", "EKB-BESLUT")
            .unwrap();
        Self {
            af,
            _dir: dir,
            store,
            config_file,
            sthlm,
            token,
        }
    }

    /// Stockholm's case system talking to the gateway at `url`.
    pub fn case_system(&self, url: &str) -> KommunClient {
        KommunClient::new(
            url,
            &DemoFiles::default().certs.join("kommun-ca.pem"),
            Some((&self.sthlm.cert, &self.sthlm.key)),
        )
        .unwrap()
    }

    /// Eight senders asking about the registered person until the gateway is gone (or 20 s);
    /// each returns the Korrelationsid, as recorded, of every answer with data. The counter
    /// goes up with every such answer, so a test can stop the gateway once answers flow rather
    /// than after a fixed time a loaded machine may not meet.
    fn senders(&self, url: &str) -> (tokio::task::JoinSet<Vec<String>>, Arc<AtomicUsize>) {
        let client = self.case_system(url);
        let mut senders = tokio::task::JoinSet::new();
        let count = Arc::new(AtomicUsize::new(0));
        for _ in 0..8 {
            let (client, token) = (client.clone(), self.token.clone());
            let count = count.clone();
            let (orgnr, namn, hl) = (
                self.sthlm.orgnr.clone(),
                self.sthlm.namn.clone(),
                self.sthlm.handlaggare.clone(),
            );
            senders.spawn(async move {
                let mut answered = Vec::new();
                let give_up = Instant::now() + Duration::from_secs(20);
                while Instant::now() < give_up {
                    let fraga = brygga::devkit::client::example_fraga(
                        &orgnr,
                        &namn,
                        &hl,
                        sim_af::REGISTRERAD,
                        "EKB-BESLUT",
                    )
                    .unwrap();
                    let req = KommunRequest::HamtaArbetssokandeStatus(fraga);
                    match client.call(&token, &req).await {
                        Ok(a) if a.status == http::StatusCode::OK => {
                            if let Ok(soap::KommunResponse::Answer(KommunAnswer::Status(st))) =
                                a.decode()
                            {
                                answered.push(brygga::store::audit::recorded_korrelationsid(
                                    &st.korrelationsid,
                                ));
                                count.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                answered
            });
        }
        (senders, count)
    }
}

/// Waits until `count` has reached `at_least` (or 20 s have passed), then `more` again, so
/// the gateway is stopped while requests are under way.
async fn once_answers_flow(count: &AtomicUsize, at_least: usize, more: Duration) {
    let give_up = Instant::now() + Duration::from_secs(20);
    while count.load(Ordering::SeqCst) < at_least && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(more).await;
}

/// Every answered request that has no record in the store.
fn unrecorded<'a>(store: &Path, answered: &'a [String]) -> Vec<&'a String> {
    let ids: std::collections::HashSet<String> = records(store)
        .into_iter()
        .map(|r| r.entry.korrelationsid)
        .collect();
    answered.iter().filter(|k| !ids.contains(*k)).collect()
}

/// SIGKILL while a case system sends requests, five times: every request that got an answer
/// with data has its record, and the chain verifies after each restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_request_survives_sigkill() {
    let setup = ServeSetup::start(Duration::ZERO, |store, port| {
        config_with_store(store, Some(port))
    })
    .await;
    let mut answered: Vec<String> = Vec::new();
    for round in 0..5 {
        let mut gw = spawn_gateway(setup.config_file.path());
        let (mut senders, count) = setup.senders(&gw.url);
        // Killed a varying while after the first answer, so it falls at different moments
        // of a group's commit.
        once_answers_flow(&count, 1, Duration::from_millis(100 + 70 * round)).await;
        gw.child.kill().unwrap(); // SIGKILL
        gw.child.wait().unwrap();
        let mut this_round = 0;
        while let Some(r) = senders.join_next().await {
            let ok = r.unwrap();
            this_round += ok.len();
            answered.extend(ok);
        }
        assert!(this_round > 0, "round {round}: some requests were answered");

        // Restarted on the same store: the chain continues and holds every answered request.
        let v = verify(&setup.store).unwrap_or_else(|t| panic!("round {round}: {t}"));
        let lost = unrecorded(&setup.store, &answered);
        assert!(
            lost.is_empty(),
            "round {round}: {} answered request(s) have no record: {lost:?}",
            lost.len()
        );
        assert!(v.records as usize >= answered.len());
    }
    // One more start after the last kill: the store opens and serves.
    let mut gw = spawn_gateway(setup.config_file.path());
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();
    verify(&setup.store).unwrap();
    setup.af.shutdown().await;
}

/// SIGTERM while a case system sends: the gateway stops accepting, lets the requests under way
/// finish, and exits 0; every answered request has its record and the chain verifies, with the
/// last checkpoint written at the stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_answered_record() {
    // AF takes a little while, so requests are under way when the signal comes.
    let setup = ServeSetup::start(Duration::from_millis(50), |store, port| {
        config_with_store(store, Some(port))
    })
    .await;
    let mut gw = spawn_gateway(setup.config_file.path());
    let (mut senders, count) = setup.senders(&gw.url);
    once_answers_flow(&count, 9, Duration::from_millis(100)).await;
    let term = Command::new("kill")
        .args(["-TERM", &gw.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exit = gw.child.wait().unwrap();
    assert!(exit.success(), "brygga serve exits 0 on SIGTERM: {exit:?}");
    let mut answered = Vec::new();
    while let Some(r) = senders.join_next().await {
        answered.extend(r.unwrap());
    }
    assert!(answered.len() > 8, "{} answered", answered.len());
    let v = verify(&setup.store).unwrap();
    let lost = unrecorded(&setup.store, &answered);
    assert!(lost.is_empty(), "{} answered without a record", lost.len());
    assert_eq!(v.signed_through, v.records, "the stop signed the head");
    setup.af.shutdown().await;
}

/// The records of a JSON extract.
fn json_rows(stdout: &[u8]) -> Vec<serde_json::Value> {
    let doc: serde_json::Value = serde_json::from_slice(stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(stdout)));
    doc["records"].as_array().unwrap().clone()
}

/// `brygga audit verify` on `store` with the example checkpoint key and `extra` arguments:
/// its exit code and what it printed.
fn verify_cli(store: &Path, extra: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = brygga()
        .args(["audit", "verify", "--store"])
        .arg(store)
        .arg("--public-key")
        .arg(harness::certs().join("audit-signing.pub.pem"))
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn sql(store: &Path, statements: &str) {
    rusqlite::Connection::open(store)
        .unwrap()
        .execute_batch(statements)
        .unwrap();
}

fn tables(file: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(file).unwrap();
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn verify_tells_a_replaced_or_emptied_chain_from_a_store_it_cannot_read() {
    let (dir, store) = store_with_accesses().await;
    let copy = |name: &str| {
        let p = dir.path().join(name);
        std::fs::copy(&store, &p).unwrap();
        p
    };
    // The chain starts with its genesis, which names the chain and its signing key.
    let first = &harness::audit_records_with_genesis(&store)[0];
    assert_eq!(first.seq, 0);
    let genesis = first
        .entry
        .genesis
        .as_ref()
        .expect("record 0 is the genesis");
    let (code, text) = verify_cli(&store, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("chain {}", genesis.chain)), "{text}");
    assert!(text.contains(&genesis.key_id), "{text}");

    // Tampered: exit 1, saying how.
    let emptied = copy("emptied.db");
    sql(&emptied, "DELETE FROM records; DELETE FROM checkpoints;");
    let (code, text) = verify_cli(&emptied, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("TAMPERED") && text.contains("emptied"),
        "{text}"
    );

    let headless = copy("headless.db");
    sql(&headless, "DELETE FROM records WHERE seq = 0;");
    let (code, text) = verify_cli(&headless, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not the chain's genesis"), "{text}");

    // A fresh genesis put in front of the old records: the second chain start is refused.
    let restarted = copy("restarted.db");
    sql(
        &restarted,
        "UPDATE records SET body = replace(body, '\"chain\":\"', '\"chain\":\"0') WHERE seq = 0;",
    );
    let (code, text) = verify_cli(&restarted, &[]);
    assert_eq!(code, 1, "{text}");

    // Could not check: exit 2, and the file is left as it was.
    let foreign = dir.path().join("foreign.db");
    sql(&foreign, "CREATE TABLE invoices (id INTEGER);");
    let (code, text) = verify_cli(&foreign, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not an audit store"), "{text}");
    assert_eq!(tables(&foreign), ["invoices"], "verify created tables");

    let text_file = dir.path().join("notes.txt");
    std::fs::write(
        &text_file,
        "not a database at all, only words\n".repeat(100),
    )
    .unwrap();
    let (code, text) = verify_cli(&text_file, &[]);
    assert_eq!(code, 2, "{text}");

    let missing = dir.path().join("missing.db");
    let (code, text) = verify_cli(&missing, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(!missing.exists(), "verify created the store");

    // A key that did not sign the checkpoints: the chain cannot be checked, not tampered.
    let other_key = dir.path().join("other.pub.pem");
    std::fs::write(
        &other_key,
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .unwrap()
            .public_key_pem(),
    )
    .unwrap();
    let out = brygga()
        .args(["audit", "verify", "--store"])
        .arg(&store)
        .arg("--public-key")
        .arg(&other_key)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("was not given"), "{text}");
}

#[tokio::test]
async fn a_store_cut_below_or_replaced_behind_a_witnessed_checkpoint_fails_verify() {
    let witness_dir = tempfile::tempdir().unwrap();
    let witness = witness_dir.path().join("checkpoints.witness");
    let w = witness.clone();
    let s = harness::start_custom(
        move |c, _| {
            c.audit.policy.witness = Some(w);
            c.audit.policy.every_records = 2;
        },
        true,
    )
    .await;
    let token = s.st_token();
    for _ in 0..6 {
        status(
            &s.st
                .post_raw(Some(&token), s.st_xml(sim_af::REGISTRERAD))
                .await
                .unwrap(),
        );
    }
    let store = s.audit_store();
    let dir = s.stop().await;

    // Every signed checkpoint also left the store, durable, one JSON line each.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&witness)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let conn = rusqlite::Connection::open(&store).unwrap();
    let checkpoints: i64 = conn
        .query_row("SELECT count(*) FROM checkpoints", [], |r| r.get(0))
        .unwrap();
    drop(conn);
    assert!(checkpoints >= 3, "{checkpoints}");
    assert_eq!(lines.len() as i64, checkpoints);
    let w = witness.as_os_str();
    let (code, text) = verify_cli(&store, &[std::ffi::OsStr::new("--witness"), w]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("the witness holds {checkpoints} checkpoint(s)")),
        "{text}"
    );

    // Cut below the last witnessed checkpoint, its checkpoint row gone with it: the store
    // alone still looks whole; the witness shows what was lost.
    let last_seq = lines.last().unwrap()["seq"].as_u64().unwrap();
    let cut = dir.path().join("cut.db");
    std::fs::copy(&store, &cut).unwrap();
    sql(
        &cut,
        &format!(
            "DELETE FROM records WHERE seq >= {last_seq}; DELETE FROM checkpoints WHERE seq >= {last_seq};"
        ),
    );
    let (code, text) = verify_cli(&cut, &[]);
    assert_eq!(code, 0, "without the witness the cut is invisible: {text}");
    let (code, text) = verify_cli(&cut, &[std::ffi::OsStr::new("--witness"), w]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&format!("checkpoint {last_seq}")), "{text}");

    // Replaced by another chain the same key signed (a fresh store from the same gateway).
    let other = harness::start().await;
    let other_store = other.audit_store();
    let other_dir = other.stop().await;
    let (code, text) = verify_cli(&other_store, &[std::ffi::OsStr::new("--witness"), w]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("another chain"), "{text}");
    drop(other_dir);

    // An unreadable witness is not a verdict on the store.
    let (code, text) = verify_cli(
        &store,
        &[
            std::ffi::OsStr::new("--witness"),
            witness_dir.path().join("absent").as_os_str(),
        ],
    );
    assert_eq!(code, 2, "{text}");
}

// /dev/full takes the open and fails every write, like a full disk.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_witness_that_cannot_be_written_is_counted_retried_and_makes_the_gateway_unready() {
    let s = harness::start_custom(
        |c, _| {
            c.audit.policy.witness = Some(PathBuf::from("/dev/full"));
            c.audit.policy.every_records = 1;
        },
        true,
    )
    .await;
    let token = s.st_token();
    // The answers still come: the records are durable in the store.
    for _ in 0..3 {
        status(
            &s.st
                .post_raw(Some(&token), s.st_xml(sim_af::REGISTRERAD))
                .await
                .unwrap(),
        );
    }
    let admin = s.inner.gateway.admin_addr;
    let metrics = harness::admin_text(admin, "/metrics").await;
    let failures = metrics
        .lines()
        .find_map(|l| l.strip_prefix("brygga_audit_witness_failures_total "))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(failures.parse::<f64>().unwrap() >= 3.0, "{failures}");
    let ready = reqwest::get(format!("http://{admin}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["witness"]["status"], "fail", "{body}");
    s.stop().await;
}

#[tokio::test]
async fn records_past_retention_are_pruned_behind_a_signed_checkpoint_and_the_pruned_chain_verifies()
 {
    let witness_dir = tempfile::tempdir().unwrap();
    let witness = witness_dir.path().join("checkpoints.witness");
    let w = witness.clone();
    // A second's retention is refused in a configuration file; in-process it shows the
    // mechanism without waiting a year.
    let s = harness::start_custom(
        move |c, _| {
            c.audit.policy.witness = Some(w);
            c.audit.policy.every_records = 2;
            c.audit.policy.retention = Some(Duration::from_secs(1));
        },
        true,
    )
    .await;
    let token = s.st_token();
    for _ in 0..4 {
        status(
            &s.st
                .post_raw(Some(&token), s.st_xml(sim_af::REGISTRERAD))
                .await
                .unwrap(),
        );
    }
    let admin = s.inner.gateway.admin_addr;
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let m = harness::admin_text(admin, "/metrics").await;
        let pruned = m
            .lines()
            .find_map(|l| l.strip_prefix("brygga_audit_pruned_records_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if pruned >= 4.0 {
            break;
        }
        assert!(Instant::now() < until, "nothing pruned:\n{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let store = s.audit_store();
    let _dir = s.stop().await;

    let all = harness::audit_records_with_genesis(&store);
    assert_eq!(all[0].seq, 0, "the genesis stays");
    let pruning = all
        .iter()
        .rev()
        .find(|r| r.entry.action == Action::Prune)
        .expect("a pruning record");
    let p = pruning.entry.pruned.as_ref().unwrap();
    // Under load the writer may prune in two steps (through 2, then through 4): the last
    // pruning reaches past the four exchanges, whatever it removed itself.
    assert!(p.through >= 4 && p.removed >= 1, "{p:?}");
    assert!(all.iter().all(|r| r.seq == 0 || r.seq > p.through));
    assert!(pruning.entry.subject.is_none() && pruning.entry.arende.is_none());

    let w = witness.as_os_str();
    let (code, text) = verify_cli(&store, &[std::ffi::OsStr::new("--witness"), w]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("records 1 through {} removed", p.through)),
        "{text}"
    );
    assert!(text.contains("before the pruned start"), "{text}");

    // The pruning record is what makes the cut legitimate: without it (and what follows, the
    // checkpoints with them) the chain is refused.
    let cut = _dir.path().join("cut.db");
    std::fs::copy(&store, &cut).unwrap();
    sql(
        &cut,
        &format!(
            "DELETE FROM records WHERE seq >= {0}; DELETE FROM checkpoints WHERE seq >= {0};",
            pruning.seq
        ),
    );
    let (code, text) = verify_cli(&cut, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("TAMPERED"), "{text}");
}

#[tokio::test]
async fn the_extract_answers_4_9_in_every_format_and_its_json_proves_itself_away_from_the_store() {
    let s = harness::start().await;
    // A token naming the case worker's unit and function; a request naming a processor.
    let mut claims = s.st_idp.claims(
        &s.sthlm.handlaggare,
        "0180",
        "EKB-BESLUT",
        Duration::from_secs(300),
    );
    claims.enhet = Some("SE2120000142-EKB1".into());
    claims.funktion = Some("Handläggare ekonomiskt bistånd".into());
    let token = s.st_idp.sign(&claims).unwrap();
    let mut fraga = s.st_fraga(sim_af::SKYDDAD);
    fraga.personuppgiftsbitrade = Some("Exempelbolaget Drift AB".into());
    status(
        &s.st
            .call(&token, &KommunRequest::HamtaArbetssokandeStatus(fraga))
            .await
            .unwrap(),
    );
    // A unit that is not an HSA-id, or a function carrying a number, is refused, naming it.
    for (enhet, funktion, claim) in [
        (Some("avdelning 3"), None, "enhet"),
        (None, Some("handläggare 198507099805"), "funktion"),
    ] {
        let mut bad = claims.clone();
        bad.jti = Some(uuid::Uuid::new_v4().to_string());
        bad.enhet = enhet.map(str::to_owned);
        bad.funktion = funktion.map(str::to_owned);
        let answer =
            s.st.post_raw(
                Some(&s.st_idp.sign(&bad).unwrap()),
                s.st_xml(sim_af::SKYDDAD),
            )
            .await
            .unwrap();
        assert_eq!(answer.status, 401);
        let body = String::from_utf8_lossy(&answer.body);
        assert!(body.contains(claim), "{body}");
        assert!(!body.contains("198507099805"), "{body}");
    }
    let store = s.audit_store();
    let dir = s.stop().await;
    let config = config_with_store(&store, None);
    let extract = |format: &str, out: &Path| {
        let run = brygga()
            .args(["audit", "query", "--operator", "dso-anna", "--config"])
            .arg(config.path())
            .args([
                "--personnummer",
                "-",
                "--syfte",
                "registerutdrag",
                "--format",
                format,
            ])
            .arg("--output")
            .arg(out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        run.stdin
            .as_ref()
            .unwrap()
            .write_all(sim_af::SKYDDAD.as_bytes())
            .unwrap();
        let out = run.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };

    // JSON: the header, every 4:9 field, and the proof.
    let json_file = dir.path().join("extract.json");
    extract("json", &json_file);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_file).unwrap()).unwrap();
    let header = &doc["extract"];
    assert_eq!(header["made_by"], "dso-anna");
    assert_eq!(header["chain_verified"], true);
    assert!(header["concerns"].as_str().unwrap().contains("not shown"));
    assert_eq!(header["period"], "the whole chain");
    let access = &doc["records"][0];
    let e = &access["entry"];
    assert_eq!(e["operation"], "HamtaArbetssokandeStatus");
    assert_eq!(e["handlaggare"], s_handlaggare());
    assert_eq!(e["enhet"], "SE2120000142-EKB1");
    assert_eq!(e["funktion"], "Handläggare ekonomiskt bistånd");
    assert_eq!(e["organisation"], "212000-0142");
    assert_eq!(e["syfte"], "EKB-BESLUT");
    assert_eq!(
        access["syfte_beskrivning"],
        "Beslut om eller kontroll av ekonomiskt bistånd"
    );
    assert!(e["lagrum"].as_str().unwrap().contains("11 kap. 11 a §"));
    assert_eq!(e["personuppgiftsbitrade"], "Exempelbolaget Drift AB");
    assert_eq!(e["skyddad_identitet"], true);
    assert!(!e["kategorier"].as_array().unwrap().is_empty());
    assert!(e["time"].as_str().unwrap().ends_with('Z'));
    let raw = std::fs::read_to_string(&json_file).unwrap();
    assert!(!raw.contains(sim_af::SKYDDAD) && !raw.contains(&sim_af::SKYDDAD[2..8]));

    // For people: text, HTML and PDF say the same.
    for format in ["text", "html", "pdf"] {
        let file = dir.path().join(format!("extract.{format}"));
        extract(format, &file);
        let shown = match format {
            "pdf" => {
                let bytes = std::fs::read(&file).unwrap();
                assert!(bytes.starts_with(b"%PDF-1.4") && bytes.ends_with(b"%%EOF\n"));
                if !crate::contracts::tool_from_package("qpdf", &["--version"], "qpdf")
                    || !crate::contracts::tool_from_package("pdftotext", &["-v"], "poppler-utils")
                {
                    continue;
                }
                let check = Command::new("qpdf")
                    .arg("--check")
                    .arg(&file)
                    .output()
                    .unwrap();
                assert!(
                    check.status.success(),
                    "{}",
                    String::from_utf8_lossy(&check.stdout)
                );
                let text = Command::new("pdftotext")
                    .args(["-layout", "-enc", "UTF-8"])
                    .arg(&file)
                    .arg("-")
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&text.stdout).into_owned()
            }
            _ => std::fs::read_to_string(&file).unwrap(),
        };
        for expected in [
            "Log extract (registerutdrag)",
            "dso-anna",
            "verified when this extract was made",
            "SE2120000142-EKB1",
            "Handläggare ekonomiskt bistånd",
            "Beslut om eller kontroll av ekonomiskt bistånd",
            "11 kap. 11 a § socialtjänstlagen",
            "Exempelbolaget Drift AB",
            "Protected identity",
        ] {
            assert!(
                shown.contains(expected),
                "{format}: {expected} missing in\n{shown}"
            );
        }
        assert!(!shown.contains(sim_af::SKYDDAD), "{format}");
    }

    // Checked away from the store: it verifies; a changed field or a dropped link does not.
    let verify_export = |file: &Path| {
        let out = brygga()
            .args(["audit", "verify", "--export"])
            .arg(file)
            .arg("--public-key")
            .arg(harness::certs().join("audit-signing.pub.pem"))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    std::fs::remove_file(&store).unwrap();
    let (code, text) = verify_export(&json_file);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("the extract verifies"), "{text}");
    let forged = dir.path().join("forged.json");
    let mut changed = doc.clone();
    changed["records"][0]["entry"]["handlaggare"] = "SE2120000142-HL99".into();
    std::fs::write(&forged, changed.to_string()).unwrap();
    assert_eq!(verify_export(&forged).0, 1);
    let mut changed = doc.clone();
    let steps = changed["proof"]["segments"][0]["steps"]
        .as_array_mut()
        .unwrap();
    assert!(steps.len() >= 2, "a run to its checkpoint: {steps:?}");
    let body = steps[0]["body"]
        .as_str()
        .unwrap()
        .replace("\"OK\"", "\"NEKAD\"");
    steps[0]["body"] = body.into();
    std::fs::write(&forged, changed.to_string()).unwrap();
    let (code, text) = verify_export(&forged);
    assert_eq!(code, 1, "{text}");
    // A record smuggled in as "not signed yet", before the checkpoint: refused.
    let mut changed = doc.clone();
    let mut smuggled = changed["records"][0].clone();
    smuggled["seq"] = 0.into();
    smuggled["entry"]["handlaggare"] = "SE2120000142-HL99".into();
    changed["records"]
        .as_array_mut()
        .unwrap()
        .insert(0, smuggled);
    changed["proof"]["unsigned"] = serde_json::json!([0]);
    std::fs::write(&forged, changed.to_string()).unwrap();
    let (code, text) = verify_export(&forged);
    assert_eq!(code, 1, "{text}");
    // A record shown twice: refused.
    let mut changed = doc.clone();
    let again = changed["records"][0].clone();
    changed["records"].as_array_mut().unwrap().insert(1, again);
    std::fs::write(&forged, changed.to_string()).unwrap();
    assert_eq!(verify_export(&forged).0, 1);
    std::fs::write(&forged, "{\"not\": \"an extract\"").unwrap();
    assert_eq!(verify_export(&forged).0, 2);
}

fn s_handlaggare() -> String {
    example_clients(
        &Config::load(&DemoFiles::default().config).unwrap(),
        &DemoFiles::default().certs,
    )[0]
    .handlaggare
    .clone()
}

#[tokio::test]
async fn a_sample_for_review_is_drawn_at_random_and_recorded_and_each_verdict_is_a_record() {
    let s = harness::start().await;
    let token = s.st_token();
    for _ in 0..20 {
        status(
            &s.st
                .post_raw(Some(&token), s.st_xml(sim_af::REGISTRERAD))
                .await
                .unwrap(),
        );
    }
    let store = s.audit_store();
    let _dir = s.stop().await;
    let config = config_with_store(&store, None);
    let today = time::OffsetDateTime::now_utc().date().to_string();
    let dpo = |args: &[&str]| {
        brygga()
            .args(["audit"])
            .args(&args[..1])
            .args(["--operator", "dso-anna", "--config"])
            .arg(config.path())
            .args(&args[1..])
            .output()
            .unwrap()
    };
    let draw = |n: &str| {
        let out = dpo(&[
            "sample", "--from", &today, "--to", &today, "--n", n, "--format", "json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc
    };
    let first = draw("5");
    let rows = first["records"].as_array().unwrap();
    let seqs: Vec<u64> = rows.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs.len(), 5);
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "distinct, ascending: {seqs:?}"
    );
    assert!(
        rows.iter()
            .all(|r| r["entry"]["operation"] == "HamtaArbetssokandeStatus")
    );
    // The draw is in the chain: which records, from how many, by whom.
    let recorded = records(&store)
        .into_iter()
        .rfind(|r| r.entry.operation == "audit sample")
        .unwrap();
    let sample = recorded.entry.sample.clone().unwrap();
    assert_eq!(sample.records, seqs);
    assert_eq!(sample.population, 20);
    assert_eq!(recorded.entry.handlaggare.as_deref(), Some("dso-anna"));
    assert!(
        first["extract"]["concerns"]
            .as_str()
            .unwrap()
            .contains(&sample.id)
    );
    // Drawn at random: three more draws of 5 of 20 are not all the same one.
    let others: Vec<Vec<u64>> = (0..3)
        .map(|_| {
            draw("5")["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["seq"].as_u64().unwrap())
                .collect()
        })
        .collect();
    assert!(
        others.iter().any(|o| *o != seqs),
        "{others:?} all equal {seqs:?}"
    );
    // Asking for more than the period holds gives all of it.
    assert_eq!(draw("500")["records"].as_array().unwrap().len(), 20);

    // Each verdict is a record naming the access, the sample and the follow-up.
    let ok = dpo(&[
        "review",
        "--sample",
        &sample.id,
        "--record",
        &seqs[0].to_string(),
        "--verdict",
        "avvikelse",
        "--reference",
        "DSO-2026-17",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let review = records(&store).pop().unwrap();
    assert_eq!(review.entry.operation, "audit review");
    assert_eq!(review.entry.outcome, "AVVIKELSE");
    let r = review.entry.review.unwrap();
    assert_eq!(
        (r.record, r.sample.as_deref()),
        (seqs[0], Some(sample.id.as_str()))
    );
    assert_eq!(r.reference.as_deref(), Some("DSO-2026-17"));

    // Refused, saying why: a record not drawn in that sample, none at all, a DPO record, a
    // reference that is a description or carries a number.
    let not_drawn = (1..=20).find(|s| !seqs.contains(s)).unwrap().to_string();
    let dpo_record = recorded.seq.to_string();
    for (record, reference, why) in [
        (not_drawn.as_str(), None, "was not drawn in sample"),
        ("99999", None, "no such record"),
        (dpo_record.as_str(), None, "not an access"),
        (
            &seqs[1].to_string()[..],
            Some("tittade på grannens uppgifter"),
            "a reference",
        ),
        (
            &seqs[1].to_string()[..],
            Some("DSO-198507099805"),
            "a reference",
        ),
    ] {
        let mut args = vec!["review", "--sample", &sample.id, "--record", record];
        args.extend(["--verdict", "godkand"]);
        if let Some(r) = reference {
            args.extend(["--reference", r]);
        }
        let out = dpo(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(why),
            "{record}: {err}"
        );
        assert!(!err.contains("198507099805"), "{err}");
    }
    assert_eq!(
        records(&store).pop().unwrap().seq,
        review.seq,
        "nothing recorded"
    );
    verify(&store).unwrap();
}
