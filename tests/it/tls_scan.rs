//! TLS as an independent scanner sees it (issue 14.9). sslyze checks both mTLS listeners
//! against Mozilla's intermediate profile, once with the committed example PKI and once with a
//! PKI that `brygga certs generate` makes now. A negative matrix then tries what must be
//! refused — TLS 1.0 and 1.1, weak suites, RSA key exchange, a certificate from another CA or
//! not made for client authentication, the other side's CA — each beside a control in which
//! the same tool gets through (a server that allows it, or a good certificate), so that a
//! broken invocation cannot pass as a refusal.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use brygga::devkit::demo::DemoFiles;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::AlertDescription;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::contracts::{Package, skip, tool_from_package};
use crate::harness;

/// The sslyze these tests are written against; `.ci/run` installs the same. Another version
/// may carry another edition of Mozilla's profile, so it is not trusted: the scans skip (fail
/// under BRYGGA_TEST_STRICT=1).
const SSLYZE: Package = Package::Pip("sslyze==6.3.1");
const SSLYZE_BANNER: &str = "SSLyze version 6.3.1";

/// What sslyze 6.3.1 may report of the committed example PKI (`certs-example/`), by the name
/// of the profile's criterion. Nothing about the gateway's TLS configuration is here.
const EXAMPLE_PKI_ALLOWED: &[&str] = &[
    // The committed server certificates are valid for ten years, so that the repository's
    // tests keep passing for years without a new PKI; Mozilla's profile wants at most 366
    // days. `brygga certs generate` now makes server certificates for 365 days, and the scan
    // of such a PKI (the next test) allows nothing.
    "maximum_certificate_lifespan",
];

/// Mozilla's intermediate profile (5.7, as sslyze 6.3.1 carries it): the longest lifespan of a
/// server certificate, in whole days.
const PROFILE_MAX_LIFESPAN_DAYS: i64 = 366;

/// The scan commands sslyze's Mozilla check needs; each must have completed, or the verdict
/// says nothing.
const MOZILLA_SCANS: &[&str] = &[
    "certificate_info",
    "ssl_2_0_cipher_suites",
    "ssl_3_0_cipher_suites",
    "tls_1_0_cipher_suites",
    "tls_1_1_cipher_suites",
    "tls_1_2_cipher_suites",
    "tls_1_3_cipher_suites",
    "tls_compression",
    "openssl_ccs_injection",
    "tls_fallback_scsv",
    "heartbleed",
    "robot",
    "session_renegotiation",
    "elliptic_curves",
    "tls_extended_master_secret",
];

/// One scan's tool: no more than this, or the test fails instead of hanging CI.
const SCAN_TIMEOUT: Duration = Duration::from_secs(90);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// sslyze

/// A scan opens some 600 connections from one address within seconds; the per-address rate
/// of new connections (100 a second, burst 500; tested in `flood`) would refuse part of them.
/// It is lifted here, so the scan sees the TLS configuration rather than that limit.
fn lift_per_address_rate(
    c: &mut brygga::config::Config,
    _: &mut brygga::devkit::sim_af::SimSettings,
) {
    c.limits.new_connections_per_address = brygga::access::limit::Rate {
        per_second: 100_000,
        burst: 100_000,
    };
}

/// Both listeners with the committed example PKI: nothing beyond `EXAMPLE_PKI_ALLOWED`.
#[tokio::test]
async fn sslyze_finds_the_example_pki_compliant_but_for_its_lifespan() {
    if !sslyze_ready() {
        return;
    }
    let s = harness::start_custom(lift_per_address_rate, true).await;
    let certs = harness::certs();
    let (kommun, af) = scan_both(&s, &certs).await;
    for scan in [&kommun, &af] {
        let beyond: Vec<_> = scan
            .findings
            .iter()
            .filter(|(criterion, _)| !EXAMPLE_PKI_ALLOWED.contains(&criterion.as_str()))
            .collect();
        assert!(
            beyond.is_empty(),
            "{}: findings the example PKI does not explain: {beyond:?}\n{}",
            scan.target,
            scan.stdout
        );
    }
    // The scans went through with a client certificate; without one the listeners refuse.
    for (addr, ca) in [
        (s.inner.gateway.kommun_addr, "kommun-ca.pem"),
        (s.inner.gateway.af_addr, "af-ca.pem"),
    ] {
        assert_eq!(
            client_auth_requirement(addr, &certs.join(ca)).await,
            "REQUIRED",
            "{addr}"
        );
    }
    s.stop().await;
}

/// A PKI from `brygga::devkit::certs::generate` as the command makes it, with the gateway configured to
/// use it: compliant, with 365-day server certificates.
#[tokio::test]
async fn sslyze_finds_nothing_against_a_freshly_generated_pki() {
    if !sslyze_ready() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let certs = root.path().join("certs-example");
    // The CLI's default validity: ten years for CAs and clients.
    brygga::devkit::certs::generate(&certs, 3650).unwrap();
    let config_dir = root.path().join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    let defaults = DemoFiles::default();
    std::fs::copy(&defaults.config, config_dir.join("example.toml")).unwrap();
    std::fs::copy(&defaults.sim_config, config_dir.join("af-sim.example.toml")).unwrap();
    let files = DemoFiles {
        config: config_dir.join("example.toml"),
        sim_config: config_dir.join("af-sim.example.toml"),
        certs: certs.clone(),
    };
    let s = harness::start_with_files(files, lift_per_address_rate, true).await;
    assert!(
        s.sthlm.cert.starts_with(&certs),
        "the stack uses the new PKI"
    );
    let (kommun, af) = scan_both(&s, &certs).await;
    for scan in [&kommun, &af] {
        assert!(
            scan.findings.is_empty(),
            "{}: {:?}\n{}",
            scan.target,
            scan.findings,
            scan.stdout
        );
        assert!(scan.compliant, "{}: {}", scan.target, scan.stdout);
        assert_eq!(
            scan.leaf_lifespan_days,
            brygga::devkit::certs::SERVER_CERT_DAYS,
            "{}",
            scan.target
        );
    }
    s.stop().await;
}

/// Both listeners of `s`, scanned at once, each with the client certificate it trusts from the
/// PKI in `certs`: Stockholm's on `kommun`, AF's on `af`.
async fn scan_both(s: &harness::Stack, certs: &Path) -> (Scan, Scan) {
    let [kommun_ca, af_ca, af_cert, af_key] = [
        "kommun-ca.pem",
        "af-ca.pem",
        "af-client.pem",
        "af-client.key",
    ]
    .map(|f| certs.join(f));
    tokio::join!(
        intermediate_scan(
            s.inner.gateway.kommun_addr,
            &kommun_ca,
            &s.sthlm.cert,
            &s.sthlm.key
        ),
        intermediate_scan(s.inner.gateway.af_addr, &af_ca, &af_cert, &af_key),
    )
}

/// Whether sslyze, of the pinned version, is here to run; says why not when it is not.
fn sslyze_ready() -> bool {
    if !tool_from_package("sslyze", &["--help"], SSLYZE) {
        return false;
    }
    let help = std::process::Command::new("sslyze")
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !help.contains(SSLYZE_BANNER) {
        let found = help
            .lines()
            .find(|l| l.starts_with("SSLyze version"))
            .unwrap_or("an unknown version");
        skip(
            &format!("sslyze is {found}, these tests are written against {SSLYZE_BANNER}"),
            &SSLYZE,
        );
        return false;
    }
    true
}

/// What one sslyze run against one listener says.
struct Scan {
    target: String,
    /// sslyze's verdict against Mozilla's intermediate profile: criterion → what it saw.
    findings: BTreeMap<String, String>,
    compliant: bool,
    /// The leaf certificate's lifespan in whole days, as the JSON output has it.
    leaf_lifespan_days: i64,
    stdout: String,
}

/// The host:port sslyze is given: the name the certificates carry, at the loopback address
/// the listener is bound to.
fn sslyze_target(addr: SocketAddr) -> String {
    format!("localhost:{}{{{}}}", addr.port(), addr.ip())
}

/// sslyze against `addr` with a client certificate, checked against Mozilla's intermediate
/// profile. The verdict is read from sslyze's report (its JSON output has none); the JSON,
/// parsed here, must show every scan the verdict needs completed with the client certificate,
/// and the protocols, suites and lifespan that the verdict must then agree with.
async fn intermediate_scan(addr: SocketAddr, ca: &Path, cert: &Path, key: &Path) -> Scan {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("scan.json");
    let target = sslyze_target(addr);
    let out = run(
        Command::new("sslyze")
            // Two connections at a time, not five: as fast on loopback, and within what a
            // per-address connection limit leaves one client.
            .arg("--slow_connection")
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg("--certinfo_ca_file")
            .arg(ca)
            .arg("--mozilla_config=intermediate")
            .arg("--json_out")
            .arg(&json_path)
            .arg(&target),
        SCAN_TIMEOUT,
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let context = format!(
        "{target}: sslyze exited {:?}\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let (compliant, findings) = verdict(&stdout).unwrap_or_else(|e| panic!("{e}\n{context}"));
    // sslyze exits 1 exactly when a server is not compliant.
    assert_eq!(out.status.success(), compliant, "{context}");
    let json: Value = serde_json::from_slice(
        &std::fs::read(&json_path).unwrap_or_else(|e| panic!("{e}\n{context}")),
    )
    .unwrap_or_else(|e| panic!("sslyze's JSON: {e}\n{context}"));
    let result = &json["server_scan_results"][0];
    assert_eq!(result["connectivity_status"], "COMPLETED", "{context}");
    assert_eq!(result["scan_status"], "COMPLETED", "{context}");
    for scan in MOZILLA_SCANS {
        assert_eq!(
            result["scan_result"][scan]["status"], "COMPLETED",
            "{scan} did not complete (session_renegotiation needs the client certificate)\n{context}"
        );
    }
    let scans = &result["scan_result"];
    let protocols: BTreeSet<&str> = [
        ("ssl_2_0_cipher_suites", "SSL 2.0"),
        ("ssl_3_0_cipher_suites", "SSL 3.0"),
        ("tls_1_0_cipher_suites", "TLS 1.0"),
        ("tls_1_1_cipher_suites", "TLS 1.1"),
        ("tls_1_2_cipher_suites", "TLS 1.2"),
        ("tls_1_3_cipher_suites", "TLS 1.3"),
    ]
    .into_iter()
    .filter(|(scan, _)| scans[scan]["result"]["is_tls_version_supported"] == true)
    .map(|(_, name)| name)
    .collect();
    assert_eq!(
        protocols,
        BTreeSet::from(["TLS 1.2", "TLS 1.3"]),
        "{context}"
    );
    let accepted = |scan: &str| -> Vec<String> {
        scans[scan]["result"]["accepted_cipher_suites"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["cipher_suite"]["name"].as_str().map(str::to_owned))
            .collect()
    };
    let tls12 = accepted("tls_1_2_cipher_suites");
    assert!(!tls12.is_empty(), "{context}");
    for suite in &tls12 {
        // Forward secrecy and an AEAD: the only TLS 1.2 suites the profile and rustls share.
        assert!(
            suite.starts_with("TLS_ECDHE_")
                && (suite.contains("_GCM_") || suite.contains("_CHACHA20_POLY1305_")),
            "TLS 1.2 suite {suite}\n{context}"
        );
    }
    for suite in accepted("tls_1_3_cipher_suites") {
        assert!(
            [
                "TLS_AES_128_GCM_SHA256",
                "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256"
            ]
            .contains(&suite.as_str()),
            "TLS 1.3 suite {suite}\n{context}"
        );
    }
    let leaf_lifespan_days = scans["certificate_info"]["result"]["certificate_deployments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let leaf = &d["received_certificate_chain"][0];
            let at = |field: &str| {
                time::OffsetDateTime::parse(
                    leaf[field].as_str().unwrap_or_default(),
                    &time::format_description::well_known::Rfc3339,
                )
                .unwrap_or_else(|e| panic!("{field}: {e}\n{context}"))
            };
            (at("not_valid_after") - at("not_valid_before")).whole_days()
        })
        .max()
        .unwrap_or_else(|| panic!("no certificate in the scan\n{context}"));
    // The verdict agrees with the facts: a lifespan finding exactly when the leaf is too long.
    assert_eq!(
        findings.contains_key("maximum_certificate_lifespan"),
        leaf_lifespan_days > PROFILE_MAX_LIFESPAN_DAYS,
        "leaf certificate of {leaf_lifespan_days} days\n{context}"
    );
    Scan {
        target,
        findings,
        compliant,
        leaf_lifespan_days,
        stdout,
    }
}

/// sslyze's compliance section: whether the one server scanned is compliant, and each
/// `* criterion: what it saw` line under it.
fn verdict(stdout: &str) -> Result<(bool, BTreeMap<String, String>), String> {
    let section = stdout
        .split_once("COMPLIANCE AGAINST TLS CONFIGURATION")
        .ok_or("sslyze printed no compliance section")?
        .1;
    if !section.contains("Mozilla's \"intermediate\" configuration") {
        return Err("the compliance section is not against Mozilla's intermediate profile".into());
    }
    if section.contains(": OK - Compliant.") {
        return Ok((true, BTreeMap::new()));
    }
    let (_, failed) = section
        .split_once(": FAILED - Not compliant.")
        .ok_or("sslyze gave no verdict (its scan did not complete?)")?;
    let findings: BTreeMap<String, String> = failed
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let (criterion, seen) = l
                .strip_prefix("* ")
                .and_then(|l| l.split_once(": "))
                .ok_or_else(|| format!("unreadable finding: {l}"))?;
            Ok((criterion.to_owned(), seen.to_owned()))
        })
        .collect::<Result<_, String>>()?;
    if findings.is_empty() {
        return Err("not compliant, but no finding listed".into());
    }
    Ok((false, findings))
}

/// What sslyze's connectivity check, without a client certificate, says the listener asks of
/// clients.
async fn client_auth_requirement(addr: SocketAddr, ca: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("scan.json");
    let out = run(
        Command::new("sslyze")
            .arg("--slow_connection")
            .arg("--certinfo_ca_file")
            .arg(ca)
            .arg("--mozilla_config=disable")
            .arg("--tlsv1_3")
            .arg("--json_out")
            .arg(&json_path)
            .arg(sslyze_target(addr)),
        SCAN_TIMEOUT,
    )
    .await;
    let json: Value =
        serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap_or_else(|e| {
            panic!(
                "{e}\n{}",
                String::from_utf8_lossy(&[out.stdout, out.stderr].concat())
            )
        });
    json["server_scan_results"][0]["connectivity_result"]["client_auth_requirement"]
        .as_str()
        .unwrap_or("(none)")
        .to_owned()
}

/// Runs a command with no input, killing it when it takes longer than `limit`.
async fn run(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{cmd:?} took longer than {limit:?}"))
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The negative matrix: protocols and suites, with openssl s_client and a hand-made ClientHello

/// openssl s_client offering only TLS 1.0 or 1.1 (security level 0, so that OpenSSL 3 offers
/// them at all) is refused by both listeners; the control server shows it does offer them.
#[tokio::test]
async fn tls_1_0_and_1_1_clients_are_refused() {
    if !openssl_ready() {
        return;
    }
    let lab = Lab::new();
    let s = harness::start().await;
    let control = lab.control_server().await;
    for (protocol, flag, shown) in [
        ("TLS 1.0", "-tls1", "TLSv1"),
        ("TLS 1.1", "-tls1_1", "TLSv1.1"),
    ] {
        let args = [flag, "-cipher", "DEFAULT@SECLEVEL=0"];
        // Control: the client really speaks the old protocol.
        let c = s_client(control.addr, &lab.cas, &lab.stockholm(), &args).await;
        assert!(
            matches!(&c, Handshake::Accepted { protocol, .. } if protocol == shown),
            "control: openssl {args:?} against a server that allows {protocol}: {c:?}"
        );
        for (listener, addr, client) in listeners(&s, &lab) {
            let h = s_client(addr, &lab.cas, &client, &args).await;
            assert_refused(
                &format!("a {protocol} client on the {listener} listener"),
                &h,
            );
        }
    }
    // Control: the same tool and certificates get through with TLS 1.2 and 1.3.
    for (listener, addr, client) in listeners(&s, &lab) {
        for (flag, shown) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
            let h = s_client(addr, &lab.cas, &client, &[flag]).await;
            assert!(
                matches!(&h, Handshake::Accepted { protocol, .. } if protocol == shown),
                "control: {flag} on the {listener} listener: {h:?}"
            );
        }
    }
    s.stop().await;
}

/// CBC suites (SHA-1 and SHA-384 MACs, with and without forward secrecy), 3DES, RC4 and NULL
/// are refused by both listeners, with the example ECDSA certificates and with RSA ones.
#[tokio::test]
async fn weak_cipher_suites_are_refused() {
    if !openssl_ready() {
        return;
    }
    let lab = Lab::new();
    let s = harness::start().await;
    let rsa = lab.rsa_stack().await;
    let control = lab.control_server().await;
    // CBC with SHA-1 or SHA-384 MACs, with and without forward secrecy: suites OpenSSL can still
    // offer. The RSA ones matter against the gateway with an RSA certificate.
    let ecdsa_cbc = ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"];
    let rsa_cbc = ["AES128-SHA", "ECDHE-RSA-AES128-SHA", "DHE-RSA-AES128-SHA"];
    for (stack, suites) in [(&s, &ecdsa_cbc[..]), (&rsa, &rsa_cbc[..])] {
        for suite in suites {
            let cipher = format!("{suite}@SECLEVEL=0");
            let args = ["-tls1_2", "-cipher", cipher.as_str()];
            let c = s_client(control.addr, &lab.cas, &lab.stockholm(), &args).await;
            assert!(
                matches!(&c, Handshake::Accepted { cipher, .. } if cipher == suite),
                "control: {suite} against a server that allows it: {c:?}"
            );
            for (listener, addr, client) in listeners(stack, &lab) {
                let h = s_client(addr, &lab.cas, &client, &args).await;
                assert_refused(&format!("{suite} on the {listener} listener"), &h);
            }
        }
    }
    // 3DES, RC4 and NULL: Debian's OpenSSL 3 cannot offer them at all, so a ClientHello made
    // here offers exactly one suite, by its IANA number.
    let ecdsa_weak: [(&str, u16); 5] = [
        ("TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA", 0xC008),
        ("TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", 0xC007),
        ("TLS_ECDHE_ECDSA_WITH_NULL_SHA", 0xC006),
        ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", 0x000A),
        ("TLS_RSA_WITH_RC4_128_SHA", 0x0005),
    ];
    let rsa_weak: [(&str, u16); 4] = [
        ("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", 0xC012),
        ("TLS_ECDHE_RSA_WITH_RC4_128_SHA", 0xC011),
        ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", 0x000A),
        ("TLS_RSA_WITH_RC4_128_SHA", 0x0005),
    ];
    let good_ecdsa = ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 0xC02B);
    let good_rsa = ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 0xC02F);
    for (stack, weak, good) in [
        (&s, &ecdsa_weak[..], good_ecdsa),
        (&rsa, &rsa_weak[..], good_rsa),
    ] {
        for (listener, addr, _) in listeners(stack, &lab) {
            // Control: the same ClientHello with a good suite gets a ServerHello choosing it.
            let h = raw_client_hello(addr, good.1).await;
            assert!(
                matches!(h, Reply::ServerHello(chosen) if chosen == good.1),
                "control: {} on the {listener} listener: {h:?}",
                good.0
            );
            for (name, suite) in weak {
                let h = raw_client_hello(addr, *suite).await;
                assert!(
                    matches!(h, Reply::Alert(40 | 71)),
                    "{name} on the {listener} listener: expected a handshake_failure alert, got {h:?}"
                );
            }
        }
    }
    rsa.stop().await;
    s.stop().await;
}

/// Suites without ECDHE (RSA key exchange) are refused, also when the server has an RSA
/// certificate and so could use them; ECDHE-RSA with that certificate is served.
#[tokio::test]
async fn rsa_key_exchange_is_refused_even_with_an_rsa_certificate() {
    if !openssl_ready() {
        return;
    }
    let lab = Lab::new();
    let s = harness::start().await;
    let rsa = lab.rsa_stack().await;
    let control = lab.control_server().await;
    for suite in ["AES128-SHA", "AES128-GCM-SHA256", "AES256-GCM-SHA384"] {
        let cipher = format!("{suite}@SECLEVEL=0");
        let args = ["-tls1_2", "-cipher", cipher.as_str()];
        let c = s_client(control.addr, &lab.cas, &lab.stockholm(), &args).await;
        assert!(
            matches!(&c, Handshake::Accepted { cipher, .. } if cipher == suite),
            "control: {suite} against a server that allows it: {c:?}"
        );
        for (certificate, stack) in [("ECDSA", &s), ("RSA", &rsa)] {
            for (listener, addr, client) in listeners(stack, &lab) {
                let h = s_client(addr, &lab.cas, &client, &args).await;
                assert_refused(
                    &format!(
                        "RSA key exchange ({suite}) on the {listener} listener with an {certificate} certificate"
                    ),
                    &h,
                );
            }
        }
    }
    // Control: the gateway with the RSA certificate does serve ECDHE with it.
    for (listener, addr, client) in listeners(&rsa, &lab) {
        let args = ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"];
        let h = s_client(addr, &lab.cas, &client, &args).await;
        assert!(
            matches!(&h, Handshake::Accepted { cipher, .. } if cipher == "ECDHE-RSA-AES128-GCM-SHA256"),
            "control: ECDHE-RSA on the {listener} listener: {h:?}"
        );
    }
    rsa.stop().await;
    s.stop().await;
}

fn openssl_ready() -> bool {
    tool_from_package("openssl", &["version"], "openssl")
}

/// A certificate and its key, as files.
#[derive(Clone)]
struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
}

/// Both mTLS listeners of a stack, each with the example client certificate it trusts.
fn listeners(s: &harness::Stack, lab: &Lab) -> [(&'static str, SocketAddr, CertFiles); 2] {
    [
        ("kommun", s.inner.gateway.kommun_addr, lab.stockholm()),
        ("af", s.inner.gateway.af_addr, lab.af_client()),
    ]
}

/// How an openssl s_client handshake ended.
#[derive(Debug)]
#[allow(dead_code)] // the texts are read in failure messages, through Debug
enum Handshake {
    Accepted {
        protocol: String,
        cipher: String,
    },
    /// The server refused with this TLS alert.
    Alert(u8),
    /// Neither: the tool failed, or the connection ended without an alert.
    Failed(String),
}

/// A refusal in TLS itself: the server's handshake_failure (40), protocol_version (70) or
/// insufficient_security (71) alert, not a closed connection or a tool that did not run.
fn assert_refused(case: &str, h: &Handshake) {
    assert!(
        matches!(h, Handshake::Alert(40 | 70 | 71)),
        "{case}: expected a TLS alert refusing the handshake, got {h:?}"
    );
}

async fn s_client(addr: SocketAddr, cas: &Path, client: &CertFiles, args: &[&str]) -> Handshake {
    let out = run(
        Command::new("openssl")
            .arg("s_client")
            .arg("-connect")
            .arg(addr.to_string())
            .args([
                "-servername",
                "localhost",
                "-verify_return_error",
                "-CAfile",
            ])
            .arg(cas)
            .arg("-cert")
            .arg(&client.cert)
            .arg("-key")
            .arg(&client.key)
            .args(args),
        HANDSHAKE_TIMEOUT,
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // "New, TLSv1.2, Cipher is X" or "New, (NONE), Cipher is (NONE)". The version there is
    // the suite's, not the session's: the session's is "Protocol  : TLSv1.1" further down,
    // printed for TLS 1.3 only once a ticket came, which s_client does not wait for.
    let field = |name: &str| {
        stdout.lines().find_map(|l| {
            let value = l
                .trim()
                .strip_prefix(name)?
                .trim_start()
                .strip_prefix(':')?;
            Some(value.trim().to_owned())
        })
    };
    let new = stdout
        .lines()
        .find_map(|l| l.strip_prefix("New, ")?.split_once(", Cipher is "))
        .filter(|(version, _)| *version != "(NONE)");
    match new {
        Some((version, cipher)) => Handshake::Accepted {
            protocol: field("Protocol").unwrap_or_else(|| version.to_owned()),
            cipher: cipher.trim().to_owned(),
        },
        _ => match stderr
            .split_once("SSL alert number ")
            .and_then(|(_, n)| n.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
        {
            Some(alert) => Handshake::Alert(alert),
            None => Handshake::Failed(format!("{stdout}\n{stderr}")),
        },
    }
}

/// What a server answered to a hand-made ClientHello.
#[derive(Debug)]
#[allow(dead_code)] // the texts are read in failure messages, through Debug
enum Reply {
    /// A ServerHello choosing this suite.
    ServerHello(u16),
    Alert(u8),
    Other(String),
}

/// Sends a TLS 1.2 ClientHello offering exactly `suite` (with the extensions an ECDHE
/// handshake needs) and reads the first record of the answer.
async fn raw_client_hello(addr: SocketAddr, suite: u16) -> Reply {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&client_hello(suite)).await.unwrap();
    let answer = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let mut head = [0u8; 5];
        tcp.read_exact(&mut head).await?;
        let mut body = vec![0u8; usize::from(u16::from_be_bytes([head[3], head[4]]))];
        tcp.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>((head[0], body))
    })
    .await;
    match answer {
        Ok(Ok((0x15, alert))) if alert.len() == 2 => Reply::Alert(alert[1]),
        // handshake(22) carrying ServerHello(2): version, random, session id, then the suite.
        Ok(Ok((0x16, hs))) if hs.first() == Some(&2) && hs.len() > 39 => {
            let at = 4 + 2 + 32 + 1 + usize::from(hs[38]);
            match hs.get(at..at + 2) {
                Some(s) => Reply::ServerHello(u16::from_be_bytes([s[0], s[1]])),
                None => Reply::Other(format!("short ServerHello: {hs:02x?}")),
            }
        }
        Ok(Ok((kind, body))) => Reply::Other(format!("record type {kind}: {body:02x?}")),
        Ok(Err(e)) => Reply::Other(format!("read: {e}")),
        Err(_) => Reply::Other("no answer".into()),
    }
}

fn client_hello(suite: u16) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
        out.extend(kind.to_be_bytes());
        out.extend((data.len() as u16).to_be_bytes());
        out.extend(data);
    }
    let host = b"localhost";
    let mut sni = ((host.len() + 3) as u16).to_be_bytes().to_vec();
    sni.push(0);
    sni.extend((host.len() as u16).to_be_bytes());
    sni.extend(host);
    let mut ext = Vec::new();
    put(&mut ext, 0x0000, &sni);
    // supported_groups: x25519, secp256r1, secp384r1
    put(&mut ext, 0x000a, &[0, 6, 0, 0x1d, 0, 0x17, 0, 0x18]);
    // ec_point_formats: uncompressed
    put(&mut ext, 0x000b, &[1, 0]);
    // signature_algorithms: ecdsa P-256/SHA-256, P-384/SHA-384, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    put(&mut ext, 0x000d, &[0, 8, 4, 3, 5, 3, 8, 4, 4, 1]);
    // extended_master_secret, renegotiation_info
    put(&mut ext, 0x0017, &[]);
    put(&mut ext, 0xff01, &[0]);
    let mut body = vec![3, 3];
    body.extend([0x5a; 32]);
    body.push(0);
    body.extend(2u16.to_be_bytes());
    body.extend(suite.to_be_bytes());
    body.extend([1, 0]);
    body.extend((ext.len() as u16).to_be_bytes());
    body.extend(ext);
    let mut handshake = vec![1];
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 3, 1];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// Files the matrix needs beside the example PKI: both example CAs in one file (so one
/// `-CAfile` verifies every server here), and RSA server certificates from the example CAs.
struct Lab {
    _dir: tempfile::TempDir,
    certs: PathBuf,
    cas: PathBuf,
    rsa_kommun: CertFiles,
    rsa_af: CertFiles,
}

impl Lab {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let certs = harness::certs();
        let cas = dir.path().join("cas.pem");
        let bundle = ["kommun-ca.pem", "af-ca.pem"]
            .map(|f| std::fs::read_to_string(certs.join(f)).unwrap())
            .concat();
        std::fs::write(&cas, bundle).unwrap();
        // One RSA key serves both certificates.
        let rsa =
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
        let rsa_kommun = write_pair(
            dir.path(),
            "rsa-kommun",
            &server_cert(&example_issuer("kommun-ca"), &rsa),
            &rsa,
        );
        let rsa_af = write_pair(
            dir.path(),
            "rsa-af",
            &server_cert(&example_issuer("af-ca"), &rsa),
            &rsa,
        );
        Lab {
            _dir: dir,
            certs,
            cas,
            rsa_kommun,
            rsa_af,
        }
    }

    fn stockholm(&self) -> CertFiles {
        CertFiles {
            cert: self.certs.join("klient-0180.pem"),
            key: self.certs.join("klient-0180.key"),
        }
    }

    fn af_client(&self) -> CertFiles {
        CertFiles {
            cert: self.certs.join("af-client.pem"),
            key: self.certs.join("af-client.key"),
        }
    }

    /// The example stack with RSA server certificates on both listeners: the configuration in
    /// which RSA key exchange and ECDHE-RSA suites could be chosen at all.
    async fn rsa_stack(&self) -> harness::Stack {
        use brygga::access::tls::{load_certs, load_key};
        let kommun = self.rsa_kommun.clone();
        let af = self.rsa_af.clone();
        let af_ca = load_certs(&self.certs.join("af-ca.pem")).unwrap();
        harness::start_custom(
            move |c, _| {
                c.kommun.identity = brygga::config::CertAndKey {
                    chain: load_certs(&kommun.cert).unwrap(),
                    key: load_key(&kommun.key).unwrap(),
                };
                c.kommun_files.identity.cert = kommun.cert;
                c.kommun_files.identity.key = kommun.key;
                c.events.tls.identity = brygga::config::CertAndKey {
                    chain: load_certs(&af.cert).unwrap(),
                    key: load_key(&af.key).unwrap(),
                };
                c.events.tls.roots = af_ca;
                c.events.files.identity.cert = af.cert;
                c.events.files.identity.key = af.key;
            },
            true,
        )
        .await
    }

    /// openssl s_server allowing everything OpenSSL can (TLS 1.0 up, every suite at security
    /// level 0), with the RSA certificate and the example ECDSA one: the controls that show an
    /// s_client invocation really offers what it is meant to.
    async fn control_server(&self) -> ControlServer {
        let mut child = Command::new("openssl")
            .arg("s_server")
            .args([
                "-accept",
                "127.0.0.1:0",
                "-cipher",
                "ALL@SECLEVEL=0",
                "-cert",
            ])
            .arg(&self.rsa_kommun.cert)
            .arg("-key")
            .arg(&self.rsa_kommun.key)
            .arg("-dcert")
            .arg(self.certs.join("gateway-kommun.pem"))
            .arg("-dkey")
            .arg(self.certs.join("gateway-kommun.key"))
            // s_server ends a connection when its input ends: this input stays open.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("openssl s_server");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(addr) = line.strip_prefix("ACCEPT ") {
                    return addr.parse::<SocketAddr>().unwrap();
                }
            }
            panic!("openssl s_server ended without listening");
        })
        .await
        .expect("openssl s_server listens");
        // It reports every connection; keep reading so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        ControlServer {
            addr,
            _child: child,
        }
    }
}

/// A running openssl s_server, stopped when dropped.
struct ControlServer {
    addr: SocketAddr,
    _child: tokio::process::Child,
}

fn example_issuer(ca: &str) -> Issuer<'static, KeyPair> {
    harness::issuer(&harness::certs(), ca)
}

fn validity(p: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(30);
}

/// A server certificate for localhost, as `brygga certs generate` makes them, that also
/// allows RSA key exchange (keyEncipherment), so that only the server's configuration can
/// refuse it.
fn server_cert(issuer: &Issuer<'_, KeyPair>, key: &KeyPair) -> String {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn("brygga tls_scan", "brygga (test)", None);
    p.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into().unwrap()),
        SanType::IpAddress([127, 0, 0, 1].into()),
    ];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    validity(&mut p);
    p.signed_by(key, issuer).unwrap().pem()
}

fn write_pair(dir: &Path, name: &str, cert_pem: &str, key: &KeyPair) -> CertFiles {
    let files = CertFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&files.cert, cert_pem).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    files
}

fn dn(cn: &str, o: &str, orgnr: Option<&str>) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CountryName, "SE");
    d.push(DnType::OrganizationName, o);
    d.push(DnType::CommonName, cn);
    if let Some(n) = orgnr {
        // organizationIdentifier (2.5.4.97), as the gateway reads a client's organisation.
        d.push(
            DnType::CustomDnType(vec![2, 5, 4, 97]),
            format!("NTRSE-{n}"),
        );
    }
    d
}

// ---------------------------------------------------------------------------------------------
// The negative matrix: client certificates, with rustls

/// Stockholm's organisation number, as in `certs-example/klient-0180.pem`.
const STOCKHOLM: &str = "2120000142";

/// A client certificate from an unknown CA, or from a CA with the right CA's name and another
/// key, is refused in TLS on both listeners; the same certificate from the right CA is served.
#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let s = harness::start().await;
    let (stranger, _) = new_ca(dn("Främmande CA", "Någon annan", None));
    for (listener, addr, ca, orgnr) in mtls_listeners(&s) {
        let real = example_issuer(ca);
        // The same name as the listener's CA, another key: the name alone lets nobody in.
        let real_der =
            &brygga::access::tls::load_certs(&harness::certs().join(format!("{ca}.pem"))).unwrap()
                [0];
        let (lookalike, lookalike_der) = new_ca(example_ca_name(ca));
        assert_eq!(
            subject(&lookalike_der),
            subject(real_der),
            "the lookalike has {ca}'s name, byte for byte"
        );
        // Control: the same kind of certificate from the listener's own CA gets an answer.
        expect_served(
            &format!("control: a certificate from {ca} on the {listener} listener"),
            addr,
            client_cert(&real, orgnr, ExtendedKeyUsagePurpose::ClientAuth),
        )
        .await;
        expect_refused(
            &format!("a certificate from another CA on the {listener} listener"),
            addr,
            client_cert(&stranger, orgnr, ExtendedKeyUsagePurpose::ClientAuth),
            AlertDescription::UnknownCA,
        )
        .await;
        // Found by name, then its signature does not verify.
        expect_refused(
            &format!("a certificate from a CA named like {ca} on the {listener} listener"),
            addr,
            client_cert(&lookalike, orgnr, ExtendedKeyUsagePurpose::ClientAuth),
            AlertDescription::DecryptError,
        )
        .await;
    }
    s.stop().await;
}

/// A certificate from the right CA whose extended key usage is serverAuth only is refused.
#[tokio::test]
async fn a_client_certificate_without_client_auth_is_refused() {
    let s = harness::start().await;
    for (listener, addr, ca, orgnr) in mtls_listeners(&s) {
        let issuer = example_issuer(ca);
        expect_served(
            &format!("control: a clientAuth certificate from {ca} on the {listener} listener"),
            addr,
            client_cert(&issuer, orgnr, ExtendedKeyUsagePurpose::ClientAuth),
        )
        .await;
        expect_refused(
            &format!("a serverAuth-only certificate from {ca} on the {listener} listener"),
            addr,
            client_cert(&issuer, orgnr, ExtendedKeyUsagePurpose::ServerAuth),
            AlertDescription::UnsupportedCertificate,
        )
        .await;
    }
    s.stop().await;
}

/// The municipalities' CA gets nobody into the `af` listener, nor AF's CA into `kommun`.
#[tokio::test]
async fn each_listener_refuses_the_other_sides_ca() {
    let s = harness::start().await;
    let certs = harness::certs();
    let example = |name: &str| {
        (
            brygga::access::tls::load_certs(&certs.join(format!("{name}.pem"))).unwrap(),
            brygga::access::tls::load_key(&certs.join(format!("{name}.key"))).unwrap(),
        )
    };
    let kommun = s.inner.gateway.kommun_addr;
    let af = s.inner.gateway.af_addr;
    expect_served(
        "control: Stockholm on the kommun listener",
        kommun,
        example("klient-0180"),
    )
    .await;
    expect_served("control: AF on the af listener", af, example("af-client")).await;
    expect_refused(
        "a municipality's certificate (kommun CA) on the af listener",
        af,
        example("klient-0180"),
        AlertDescription::UnknownCA,
    )
    .await;
    expect_refused(
        "AF's certificate (AF's CA) on the kommun listener",
        kommun,
        example("af-client"),
        AlertDescription::UnknownCA,
    )
    .await;
    s.stop().await;
}

/// Each mTLS listener with the example CA it trusts and an organisation it expects.
fn mtls_listeners(
    s: &harness::Stack,
) -> [(&'static str, SocketAddr, &'static str, &'static str); 2] {
    [
        (
            "kommun",
            s.inner.gateway.kommun_addr,
            "kommun-ca",
            STOCKHOLM,
        ),
        (
            "af",
            s.inner.gateway.af_addr,
            "af-ca",
            brygga::devkit::certs::AF_ORGNR,
        ),
    ]
}

/// The subject of an example CA, as `brygga certs generate` writes it.
fn example_ca_name(ca: &str) -> DistinguishedName {
    let cn = match ca {
        "kommun-ca" => "brygga exempel-CA för kommuner",
        "af-ca" => "brygga exempel-CA för Arbetsförmedlingen",
        other => panic!("no example CA {other}"),
    };
    dn(cn, "brygga exempel-PKI", None)
}

/// A certificate's subject, as encoded.
fn subject(der: &CertificateDer<'_>) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    cert.subject().as_raw().to_vec()
}

fn new_ca(name: DistinguishedName) -> (Issuer<'static, KeyPair>, CertificateDer<'static>) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name = name;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut p);
    let der = p.self_signed(&key).unwrap().der().clone();
    (Issuer::new(p, key), der)
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A client certificate as `brygga certs generate` makes them, with one extended key usage.
fn client_cert(
    issuer: &Issuer<'_, KeyPair>,
    orgnr: &str,
    usage: ExtendedKeyUsagePurpose,
) -> Identity {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name = dn("tls_scan klient", "tls_scan", Some(orgnr));
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![usage];
    p.use_authority_key_identifier_extension = true;
    validity(&mut p);
    let cert = p.signed_by(&key, issuer).unwrap();
    (
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
}

/// How the gateway took a client certificate.
#[derive(Debug)]
#[allow(dead_code)] // the texts are read in failure messages, through Debug
enum Verdict {
    /// The connection carried a request and the start of an HTTP answer.
    Served(String),
    /// The gateway refused in TLS with this alert.
    Refused(AlertDescription),
    Failed(String),
}

const VERSIONS: [(&str, &rustls::SupportedProtocolVersion); 2] = [
    ("TLS 1.2", &rustls::version::TLS12),
    ("TLS 1.3", &rustls::version::TLS13),
];

async fn expect_served(case: &str, addr: SocketAddr, identity: Identity) {
    for (version, v) in VERSIONS {
        let got = present(addr, (identity.0.clone(), identity.1.clone_key()), v).await;
        assert!(
            matches!(&got, Verdict::Served(answer) if answer.starts_with("HTTP/1.1 ")),
            "{case} ({version}): expected an HTTP answer, got {got:?}"
        );
    }
}

async fn expect_refused(case: &str, addr: SocketAddr, identity: Identity, alert: AlertDescription) {
    for (version, v) in VERSIONS {
        let got = present(addr, (identity.0.clone(), identity.1.clone_key()), v).await;
        assert!(
            matches!(&got, Verdict::Refused(a) if *a == alert),
            "{case} ({version}): expected the TLS alert {alert:?}, got {got:?}"
        );
    }
}

/// Connects with `identity` over `version`, trusting both example CAs, and asks for `/`. In
/// TLS 1.3 the server judges the client certificate after the client's handshake is done, so
/// the refusal may arrive only on the first read.
async fn present(
    addr: SocketAddr,
    (chain, key): Identity,
    version: &'static rustls::SupportedProtocolVersion,
) -> Verdict {
    let certs = harness::certs();
    let mut roots = rustls::RootCertStore::empty();
    for ca in ["kommun-ca.pem", "af-ca.pem"] {
        for c in brygga::access::tls::load_certs(&certs.join(ca)).unwrap() {
            roots.add(c).unwrap();
        }
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(brygga::access::tls::provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let alert_or = |e: std::io::Error| match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(a)) => Verdict::Refused(*a),
        _ => Verdict::Failed(e.to_string()),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connect = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp);
    let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connect).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return alert_or(e),
        Err(_) => return Verdict::Failed("handshake timed out".into()),
    };
    let request = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if let Err(e) = tls.write_all(request).await {
        return alert_or(e);
    }
    let mut buf = [0u8; 64];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.read(&mut buf)).await {
        Ok(Ok(0)) => Verdict::Failed("closed without an alert".into()),
        Ok(Ok(n)) => Verdict::Served(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Ok(Err(e)) => alert_or(e),
        Err(_) => Verdict::Failed("no answer".into()),
    }
}
