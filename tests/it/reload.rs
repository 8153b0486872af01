//! Certificates, keys, CRLs and JWKS files are reloaded without a restart (on file change, as
//! on SIGHUP), and no request fails because of a reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use brygga::config::Config;
use brygga::devkit::client::{KommunClient, TokenMinter};
use brygga::devkit::demo::{DemoFiles, DemoStack};
use brygga::devkit::sim_af::{self, SimSettings};
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls_pki_types::ServerName;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// A stack whose gateway reads its files from a private copy, checked every 50 ms.
async fn private_stack(root: &Path) -> (DemoStack, PathBuf) {
    let defaults = DemoFiles::default();
    copy_dir(&defaults.certs, &root.join("certs-example"));
    std::fs::create_dir_all(root.join("config")).unwrap();
    std::fs::copy(&defaults.config, root.join("config/example.toml")).unwrap();
    let mut config = Config::load(&root.join("config/example.toml")).unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    config.kommun_bind = any;
    config.admin_bind = any;
    config.events.bind = any;
    config.reload_poll = Duration::from_millis(50);
    // Under load on purpose: the rate limits are not what these tests are about.
    for c in config.clients.iter_mut() {
        if let Some(c) = std::sync::Arc::get_mut(c) {
            c.rate = crate::harness::unlimited();
            c.max_concurrent = 100_000;
        }
    }
    config.af_rate = None;
    let mut sim = SimSettings::load(&defaults.sim_config).unwrap();
    sim.bind = any;
    (
        DemoStack::start_with(config, sim, true, None)
            .await
            .unwrap(),
        root.join("certs-example"),
    )
}

/// Replaces a file in one step, as a deploy tool would.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn served_certificate(addr: std::net::SocketAddr, certs: &Path) -> Vec<u8> {
    let cfg = brygga::access::tls::client_config(
        &brygga::access::tls::load_certs(&certs.join("kommun-ca.pem")).unwrap(),
        Some((
            brygga::access::tls::load_certs(&certs.join("klient-0180.pem")).unwrap(),
            brygga::access::tls::load_key(&certs.join("klient-0180.key")).unwrap(),
        )),
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .as_ref()
        .to_vec()
}

#[tokio::test]
async fn the_server_certificate_rotates_while_a_client_keeps_sending() {
    let root = tempfile::tempdir().unwrap();
    let (stack, certs) = private_stack(root.path()).await;
    let url = stack.kommun_url();
    let client = KommunClient::new(
        &url,
        &certs.join("kommun-ca.pem"),
        Some((
            &certs.join("klient-0180.pem"),
            &certs.join("klient-0180.key"),
        )),
    )
    .unwrap();
    let minter = TokenMinter::load(
        &certs.join("idp-0180.key"),
        "https://idp.stockholm.example/",
        "urn:se:brygga:kommun:v1",
    )
    .unwrap();
    let token = minter
        .token("SE2120000142-HL01", "0180", "EKB-BESLUT")
        .unwrap();
    let fraga = brygga::devkit::client::example_fraga(
        "2120000142",
        "Stockholms stad",
        "SE2120000142-HL01",
        sim_af::REGISTRERAD,
        "EKB-BESLUT",
    )
    .unwrap();
    let body = brygga::contract::soap::encode_request(
        &brygga::model::KommunRequest::HamtaArbetssokandeStatus(fraga),
    );

    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.post_raw(Some(&token), body.clone()).await {
                    Ok(a) if a.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };

    let before = served_certificate(stack.gateway.kommun_addr, &certs).await;
    // A new server certificate from the same CA, written over the old files.
    let issuer = crate::harness::issuer(&certs, "kommun-ca");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "brygga kommun-lyssnare, roterat");
    p.subject_alt_names = vec![SanType::DnsName("localhost".try_into().unwrap())];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = p.signed_by(&key, &issuer).unwrap();
    replace(&certs.join("gateway-kommun.key"), &key.serialize_pem());
    replace(&certs.join("gateway-kommun.pem"), &cert.pem());

    let deadline = Instant::now() + Duration::from_secs(10);
    while served_certificate(stack.gateway.kommun_addr, &certs).await == before {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        served_certificate(stack.gateway.kommun_addr, &certs).await,
        cert.der().as_ref().to_vec()
    );
    // The expiry operators see is the new certificate's (rcgen's default runs to 4096).
    let days_left = || async {
        let text = crate::harness::admin_text(stack.gateway.admin_addr, "/metrics").await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(
                    "brygga_certificate_expiry_seconds{certificate=\"kommun.cert\",kind=\"certificate\"} ",
                )
            })
            .and_then(|v| v.parse::<f64>().ok())
            .map(|s| s / 86_400.0)
            .unwrap()
    };
    let days = days_left().await;
    assert!(
        days > 365.0 * 1000.0,
        "kommun.cert: {days} days left after the rotation"
    );
    let ok_at_swap = ok.load(Ordering::Relaxed);
    while ok.load(Ordering::Relaxed) < ok_at_swap + 20 {
        assert!(Instant::now() < deadline, "requests stopped after the swap");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A broken file is refused by the reload; the listener keeps the certificate it has.
    replace(&certs.join("gateway-kommun.pem"), "not a certificate");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        served_certificate(stack.gateway.kommun_addr, &certs).await,
        cert.der().as_ref().to_vec()
    );
    stop.store(true, Ordering::Relaxed);
    sender.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed because of a reload"
    );
    assert!(ok.load(Ordering::Relaxed) > 20);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_new_key_in_the_jwks_is_accepted_once_the_file_changes() {
    let root = tempfile::tempdir().unwrap();
    let (stack, certs) = private_stack(root.path()).await;
    let url = stack.kommun_url();
    let client = KommunClient::new(
        &url,
        &certs.join("kommun-ca.pem"),
        Some((
            &certs.join("klient-0180.pem"),
            &certs.join("klient-0180.key"),
        )),
    )
    .unwrap();
    // The identity provider rotates to a new signing key.
    let new_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let key_file = root.path().join("idp-new.key");
    std::fs::write(&key_file, new_key.serialize_pem()).unwrap();
    let minter = TokenMinter::load(
        &key_file,
        "https://idp.stockholm.example/",
        "urn:se:brygga:kommun:v1",
    )
    .unwrap();
    let token = minter
        .token("SE2120000142-HL01", "0180", "EKB-BESLUT")
        .unwrap();
    let fraga = brygga::devkit::client::example_fraga(
        "2120000142",
        "Stockholms stad",
        "SE2120000142-HL01",
        sim_af::REGISTRERAD,
        "EKB-BESLUT",
    )
    .unwrap();
    let body = brygga::contract::soap::encode_request(
        &brygga::model::KommunRequest::HamtaArbetssokandeStatus(fraga),
    );
    crate::harness::fault(
        &client.post_raw(Some(&token), body.clone()).await.unwrap(),
        401,
        "TOKEN_OKAND_NYCKEL",
    );

    // Meanwhile a case worker keeps sending with a token of the key already published.
    let old_token = TokenMinter::load(
        &certs.join("idp-0180.key"),
        "https://idp.stockholm.example/",
        "urn:se:brygga:kommun:v1",
    )
    .unwrap()
    .token("SE2120000142-HL01", "0180", "EKB-BESLUT")
    .unwrap();
    let (ok, failed, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let sender = {
        let (client, body, ok, failed, stop) = (
            client.clone(),
            body.clone(),
            ok.clone(),
            failed.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.post_raw(Some(&old_token), body.clone()).await {
                    Ok(a) if a.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    let jwks_file = certs.join("idp-0180.jwks.json");
    let mut jwks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&jwks_file).unwrap()).unwrap();
    let (_, new_jwks) = brygga::access::identity::es256_jwks(new_key.public_key_raw()).unwrap();
    jwks["keys"]
        .as_array_mut()
        .unwrap()
        .push(new_jwks["keys"][0].clone());
    replace(&jwks_file, &jwks.to_string());

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = client.post_raw(Some(&token), body.clone()).await.unwrap();
        if a.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new key was not accepted within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.store(true, Ordering::Relaxed);
    sender.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed while the JWKS was reloaded"
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
    stack.shutdown().await;
}

/// A tiny HTTPS server (server authentication only) that serves whatever JWKS it holds now.
async fn jwks_server(body: Arc<std::sync::Mutex<String>>, fetches: Arc<AtomicU64>) -> u16 {
    let certs = crate::harness::certs();
    let cfg = rustls::ServerConfig::builder_with_provider(brygga::access::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            brygga::access::tls::load_certs(&certs.join("af-sim.pem")).unwrap(),
            brygga::access::tls::load_key(&certs.join("af-sim.key")).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, body, fetches) = (acceptor.clone(), body.clone(), fetches.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_req| {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let text = body.lock().unwrap().clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(text)),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    port
}

#[tokio::test]
async fn jwks_from_a_url_follow_a_key_rotation_and_keep_the_old_key_for_its_grace() {
    let certs = crate::harness::certs();
    let body = Arc::new(std::sync::Mutex::new(
        std::fs::read_to_string(certs.join("idp-0180.jwks.json")).unwrap(),
    ));
    let fetches = Arc::new(AtomicU64::new(0));
    let port = jwks_server(body.clone(), fetches.clone()).await;
    let s = crate::harness::start_custom(
        |c, _| {
            let cfg = brygga::access::tls::client_config(
                &brygga::access::tls::load_certs(&certs.join("af-ca.pem")).unwrap(),
                None,
            )
            .unwrap();
            let source = brygga::access::identity::JwksUrl {
                url: format!("https://localhost:{port}/jwks.json"),
                http: reqwest::Client::builder()
                    .tls_backend_preconfigured(cfg)
                    .no_proxy()
                    .build()
                    .unwrap(),
                min_refresh: Duration::ZERO,
                grace: Duration::from_secs(3600),
            };
            let idp = brygga::access::identity::IdpKeys::from_url(
                "https://idp.stockholm.example/",
                "ES256",
                source,
            )
            .unwrap();
            Arc::get_mut(&mut c.clients[0]).unwrap().idp = idp;
        },
        true,
    )
    .await;
    let xml = s.st_xml(sim_af::REGISTRERAD);
    crate::harness::status(
        &s.st
            .post_raw(Some(&s.st_token()), xml.clone())
            .await
            .unwrap(),
    );
    assert!(fetches.load(Ordering::SeqCst) >= 1, "fetched at start");

    // The identity provider rotates: only a new key is published.
    let root = tempfile::tempdir().unwrap();
    let new_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(root.path().join("new.key"), new_key.serialize_pem()).unwrap();
    let (_, jwks) = brygga::access::identity::es256_jwks(new_key.public_key_raw()).unwrap();
    *body.lock().unwrap() = jwks.to_string();
    let minter = TokenMinter::load(
        &root.path().join("new.key"),
        "https://idp.stockholm.example/",
        "urn:se:brygga:kommun:v1",
    )
    .unwrap();
    let before = fetches.load(Ordering::SeqCst);
    let fresh = minter
        .token(&s.sthlm.handlaggare, "0180", "EKB-BESLUT")
        .unwrap();
    crate::harness::status(&s.st.post_raw(Some(&fresh), xml.clone()).await.unwrap());
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        before + 1,
        "the unknown kid fetched the set once"
    );
    // A token signed with the old key is still accepted during the grace period.
    crate::harness::status(&s.st.post_raw(Some(&s.st_token()), xml).await.unwrap());
    s.stop().await;
}

/// SIGHUP alone reloads: the file watcher is set to an hour, so only the signal can have done it.
#[cfg(unix)]
#[test]
fn sighup_reloads_the_server_certificate_of_brygga_serve() {
    use std::io::{BufRead, BufReader};
    let root = tempfile::tempdir().unwrap();
    let defaults = DemoFiles::default();
    copy_dir(&defaults.certs, &root.path().join("certs-example"));
    std::fs::create_dir_all(root.path().join("config")).unwrap();
    let text = brygga::devkit::demo::on_free_ports_unlimited(
        &std::fs::read_to_string(&defaults.config).unwrap(),
    )
    .replace("reload_poll = \"2s\"", "reload_poll = \"1h\"");
    std::fs::write(root.path().join("config/example.toml"), text).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_brygga"))
        .args(["serve", "--config"])
        .arg(root.path().join("config/example.toml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr: std::net::SocketAddr = info["kommun_url"]
        .as_str()
        .unwrap()
        .trim_start_matches("https://")
        .trim_end_matches("/kommun/v1")
        .parse()
        .unwrap();
    let certs = root.path().join("certs-example");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let before = rt.block_on(served_certificate(addr, &certs));

    let issuer = crate::harness::issuer(&certs, "kommun-ca");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.subject_alt_names = vec![SanType::DnsName("localhost".try_into().unwrap())];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = p.signed_by(&key, &issuer).unwrap();
    replace(&certs.join("gateway-kommun.key"), &key.serialize_pem());
    replace(&certs.join("gateway-kommun.pem"), &cert.pem());
    assert_eq!(
        rt.block_on(served_certificate(addr, &certs)),
        before,
        "not reloaded before the signal"
    );

    let _ = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while rt.block_on(served_certificate(addr, &certs)) != cert.der().as_ref().to_vec() {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload within 10 s"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// A harness stack whose gateway reads every file from a private copy of the example PKI and
/// configuration (under `root`), checked every 50 ms.
async fn copied_stack(
    root: &Path,
    adjust: impl FnOnce(&mut Config) + 'static,
) -> crate::harness::Stack {
    let defaults = DemoFiles::default();
    copy_dir(&defaults.certs, &root.join("certs-example"));
    std::fs::create_dir_all(root.join("config")).unwrap();
    for f in [
        "example.toml",
        "af-sim.example.toml",
        "kommun-sim.example.toml",
    ] {
        std::fs::copy(
            defaults.config.parent().unwrap().join(f),
            root.join("config").join(f),
        )
        .unwrap();
    }
    let files = DemoFiles {
        config: root.join("config/example.toml"),
        sim_config: root.join("config/af-sim.example.toml"),
        certs: root.join("certs-example"),
    };
    crate::harness::start_with_files(
        files,
        |c, _| {
            c.reload_poll = Duration::from_millis(50);
            adjust(c);
        },
        true,
    )
    .await
}

/// Copies a certificate and key of the PKI in `certs` over another pair, in one step each.
fn swap_identity(certs: &Path, from: &str, to: &str) {
    for ext in ["pem", "key"] {
        replace(
            &certs.join(format!("{to}.{ext}")),
            &std::fs::read_to_string(certs.join(format!("{from}.{ext}"))).unwrap(),
        );
    }
}

/// Waits (bounded) until `f` holds.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `af` listener's own certificate, as AF sees it on a new connection.
async fn af_listener_certificate(s: &crate::harness::Stack) -> Vec<u8> {
    let tls = crate::harness::raw_tls(
        s.inner.gateway.af_addr,
        &s.files.certs.join("af-ca.pem"),
        (
            &s.files.certs.join("af-client.pem"),
            &s.files.certs.join("af-client.key"),
        ),
        b"http/1.1",
    )
    .await;
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .as_ref()
        .to_vec()
}

/// The af listener's certificate and key, the client certificate towards AF, AF's CA (which
/// is also the af listener's client CA) and the client certificate towards the case systems
/// all reload without a restart: each is replaced on disk and the next connection shows it.
/// A replacement that does not work (a certificate of the wrong CA) shows that the file is
/// in use; putting the right one back restores service.
#[tokio::test]
async fn every_certificate_and_ca_reloads_without_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let s = copied_stack(root.path(), |_| {}).await;
    let certs = s.files.certs.clone();

    // The af listener: a new certificate from AF's CA.
    let before = af_listener_certificate(&s).await;
    let issuer = crate::harness::issuer(&certs, "af-ca");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(vec!["localhost".into()]).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "brygga af renewed");
    p.subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let renewed = p.signed_by(&key, &issuer).unwrap();
    replace(&certs.join("gateway-af.key"), &key.serialize_pem());
    replace(&certs.join("gateway-af.pem"), &renewed.pem());
    eventually("the af listener presents the new certificate", || async {
        af_listener_certificate(&s).await == renewed.der().as_ref()
    })
    .await;
    assert_ne!(before, renewed.der().as_ref());

    // Towards AF: a certificate of the municipal CA is refused by AF ...
    swap_identity(&certs, "gateway-to-af", "gateway-to-af.orig");
    swap_identity(&certs, "klient-0180", "gateway-to-af");
    eventually("AF refuses the gateway's new certificate", || async {
        s.ask(Some(&s.st_token())).await.status == 503
    })
    .await;
    // ... and AF's own certificate back restores the calls.
    swap_identity(&certs, "gateway-to-af.orig", "gateway-to-af");
    eventually("AF answers again", || async {
        s.ask(Some(&s.st_token())).await.status == 200
    })
    .await;

    // AF's CA replaced by another, with that CA's CRL (a CRL must come from a CA of its
    // edge): AF's server is no longer trusted, and AF's pushes are refused on the af listener.
    let af_ca = std::fs::read_to_string(certs.join("af-ca.pem")).unwrap();
    let af_crl = std::fs::read_to_string(certs.join("af-ca.crl.pem")).unwrap();
    replace(
        &certs.join("af-ca.pem"),
        &std::fs::read_to_string(certs.join("kommun-ca.pem")).unwrap(),
    );
    replace(
        &certs.join("af-ca.crl.pem"),
        &std::fs::read_to_string(certs.join("kommun-ca.crl.pem")).unwrap(),
    );
    eventually("AF is no longer trusted", || async {
        s.ask(Some(&s.st_token())).await.status == 503
    })
    .await;
    replace(&certs.join("af-ca.pem"), &af_ca);
    replace(&certs.join("af-ca.crl.pem"), &af_crl);
    eventually("AF is trusted again", || async {
        s.ask(Some(&s.st_token())).await.status == 200
    })
    .await;
    s.stop().await;
}

/// The client certificate towards the case systems reloads: a certificate the case system
/// does not trust makes deliveries fail; the right one back delivers what waited.
#[tokio::test]
async fn the_delivery_certificate_reloads_without_a_restart() {
    use brygga::devkit::sim_kommun::{self, KommunSimSettings};
    let root = tempfile::tempdir().unwrap();
    let defaults = DemoFiles::default();
    let mut sim_settings = KommunSimSettings::load(
        &defaults
            .config
            .parent()
            .unwrap()
            .join("kommun-sim.example.toml"),
    )
    .unwrap();
    sim_settings.bind = "127.0.0.1:0".parse().unwrap();
    let case_system = sim_kommun::start(&sim_settings, None).await.unwrap();
    let url = case_system.url();
    let s = copied_stack(root.path(), move |c| {
        c.endpoints.get_mut("stockholm").unwrap().url = url;
        c.delivery.first_retry = Duration::from_millis(50);
        c.delivery.max_retry = Duration::from_millis(100);
    })
    .await;
    let certs = s.files.certs.clone();
    crate::delivery::stockholm_follows(&s).await;
    swap_identity(&certs, "gateway-to-kommun", "gateway-to-kommun.orig");
    swap_identity(&certs, "af-client", "gateway-to-kommun");
    // Ten reload polls.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = |s: &crate::harness::Stack| {
        let admin = s.inner.gateway.admin_addr;
        async move { crate::harness::admin_text(admin, "/metrics").await }
    };
    crate::delivery::push(
        &s.inner.af_url(),
        vec![crate::delivery::event(
            "33333333-aaaa-4bbb-8ccc-000000000001",
            sim_af::REGISTRERAD,
            1,
        )],
    )
    .await;
    // Refused in the handshake (TLS 1.3: after the gateway sent its request, so it counts as
    // a case system that answered with an error).
    eventually("a delivery fails with the wrong certificate", || async {
        m(&s).await.lines().any(|l| {
            l.starts_with("brygga_deliveries_total")
                && !l.contains("outcome=\"OK\"")
                && !l.ends_with(" 0")
        })
    })
    .await;
    assert!(case_system.state.received().is_empty());
    swap_identity(&certs, "gateway-to-kommun.orig", "gateway-to-kommun");
    eventually("delivered with the right certificate", || async {
        !case_system.state.received().is_empty()
    })
    .await;
    s.stop().await;
}

/// The checkpoint key and the pseudonym keys reload without a restart. A new signing key
/// signs from then on under its own key id, and the chain verifies with the new public key
/// and the old one; a pseudonym key added to the configuration writes the next record, and
/// an extract for the person (every key searched) finds the records under both keys.
#[tokio::test]
async fn the_checkpoint_key_and_pseudonym_keys_reload_without_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let s = copied_stack(root.path(), |c| c.audit.policy.every_records = 1).await;
    let certs = s.files.certs.clone();
    let old_public = std::fs::read(certs.join("audit-signing.pub.pem")).unwrap();
    crate::harness::status(&s.ask(Some(&s.st_token())).await);

    let new = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    replace(&certs.join("audit-signing.key"), &new.serialize_pem());
    replace(&certs.join("pseudonym-audit-2.key"), &"5a".repeat(32));
    let config = s.files.config.clone();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[[pseudonyms]]\ndomain = \"audit\"\nid = \"a2\"\nfile = \"../certs-example/pseudonym-audit-2.key\"\n",
    );
    replace(&config, &text);
    tokio::time::sleep(Duration::from_millis(500)).await;
    crate::harness::status(&s.ask(Some(&s.st_token())).await);
    let store = s.audit_store();
    let _dir = s.stop().await;

    let conn = rusqlite::Connection::open(&store).unwrap();
    let kids: Vec<String> = conn
        .prepare("SELECT jws FROM checkpoints ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .filter_map(|j| jsonwebtoken::decode_header(j.unwrap()).ok()?.kid)
        .collect();
    let old_kid = brygga::store::audit::key_id(&old_public).unwrap();
    let new_kid = brygga::store::audit::key_id(new.public_key_pem().as_bytes()).unwrap();
    assert_eq!(kids.first(), Some(&old_kid), "{kids:?}");
    assert_eq!(kids.last(), Some(&new_kid), "{kids:?}");
    let new_public = new.public_key_pem();
    let verified =
        brygga::store::audit::verify(&conn, &[new_public.as_bytes(), &old_public], &mut |_, _| {})
            .unwrap()
            .unwrap();
    assert_eq!(verified.signed_through, verified.records);

    let person = brygga::model::Personnummer::parse(sim_af::REGISTRERAD).unwrap();
    let keys = Config::load(&config).unwrap().pseudonyms;
    let subjects = keys.all("audit", &person);
    assert_eq!(subjects.len(), 2);
    let found = brygga::store::audit::query(
        &conn,
        &brygga::store::audit::Filter {
            subjects: subjects.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    let under: Vec<&str> = found
        .iter()
        .filter_map(|r| r.entry.subject.as_deref())
        .map(|p| &p[..3])
        .collect();
    assert_eq!(under, vec!["a1:", "a2:"]);
}

/// A file that does not load keeps the version in use, and the gateway says so: a log line,
/// and `brygga_reload_problems` on `/metrics` until the file loads again.
#[tokio::test]
async fn a_file_that_fails_to_load_keeps_the_one_in_use_and_says_so() {
    let root = tempfile::tempdir().unwrap();
    let s = copied_stack(root.path(), |_| {}).await;
    let certs = s.files.certs.clone();
    let before = af_listener_certificate(&s).await;
    let good = std::fs::read_to_string(certs.join("gateway-af.pem")).unwrap();
    replace(
        &certs.join("gateway-af.pem"),
        "-----BEGIN CERTIFICATE-----\nbroken\n",
    );
    let admin = s.inner.gateway.admin_addr;
    eventually("the problem is reported", || async {
        crate::harness::admin_text(admin, "/metrics")
            .await
            .contains("brygga_reload_problems 1")
    })
    .await;
    // Still served, with the certificate it had; the other listener is not held back.
    assert_eq!(af_listener_certificate(&s).await, before);
    crate::harness::status(&s.ask(Some(&s.st_token())).await);
    replace(&certs.join("gateway-af.pem"), &good);
    eventually("the problem is gone", || async {
        crate::harness::admin_text(admin, "/metrics")
            .await
            .contains("brygga_reload_problems 0")
    })
    .await;
    s.stop().await;
}

/// `brygga_reload_problems` on the stack's `/metrics`.
async fn reload_problems(s: &crate::harness::Stack) -> u64 {
    crate::harness::admin_text(s.inner.gateway.admin_addr, "/metrics")
        .await
        .lines()
        .find_map(|l| l.strip_prefix("brygga_reload_problems "))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A CRL file the kommun listener must refuse, wherever it comes in: the configuration
/// naming it fails to load (so `check-config` says so) with `reason` and the entry's key;
/// written over the CRL file in use, the reload keeps the CRL in use and reports it, and
/// Stockholm is still served.
async fn refused_at_load_and_reload(bad: &str, reason: &str) {
    let root = tempfile::tempdir().unwrap();
    let s = copied_stack(root.path(), |_| {}).await;
    // Served; and the reload's watch has taken its first look at the files.
    assert_eq!(crate::revocation::stockholm_fresh(&s, None).await, Ok(200));
    let certs = s.files.certs.clone();
    std::fs::write(certs.join("bad.crl.pem"), bad).unwrap();
    let text = std::fs::read_to_string(&s.files.config).unwrap().replacen(
        "client_crls = [\"../certs-example/kommun-ca.crl.pem\"]",
        "client_crls = [\"../certs-example/bad.crl.pem\"]",
        1,
    );
    let other = root.path().join("config/bad-crl.toml");
    std::fs::write(&other, text).unwrap();
    let err = match Config::load(&other) {
        Ok(_) => panic!("a configuration naming the CRL loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("kommun.client_crls[0]")
            && err.contains("bad.crl.pem")
            && err.contains(reason),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_brygga"))
        .args(["check-config", "--config"])
        .arg(&other)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success()
            && printed.contains("kommun.client_crls[0]")
            && printed.contains(reason),
        "{printed}"
    );

    let good = std::fs::read_to_string(certs.join("kommun-ca.crl.pem")).unwrap();
    replace(&certs.join("kommun-ca.crl.pem"), bad);
    eventually("the reload reports the CRL", || async {
        reload_problems(&s).await >= 1
    })
    .await;
    assert_eq!(crate::revocation::stockholm_fresh(&s, None).await, Ok(200));
    replace(&certs.join("kommun-ca.crl.pem"), &good);
    eventually("the problem is gone", || async {
        reload_problems(&s).await == 0
    })
    .await;
    s.stop().await;
}

/// A CRL WebPKI cannot read (here one byte after the DER, inside the PEM block) is refused
/// naming the entry, the file and why — not taken, to fail the listener's verifier later.
#[tokio::test]
async fn a_crl_file_webpki_cannot_read_is_refused_naming_the_file() {
    use base64::Engine;
    let pem = std::fs::read(crate::harness::certs().join("kommun-ca.crl.pem")).unwrap();
    let mut der =
        brygga::access::tls::load_crls(&crate::harness::certs().join("kommun-ca.crl.pem")).unwrap()
            [0]
        .as_ref()
        .to_vec();
    assert!(!pem.is_empty());
    der.push(b'\n');
    let text = base64::engine::general_purpose::STANDARD.encode(&der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let bad = format!(
        "-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n",
        lines.join("\n")
    );
    refused_at_load_and_reload(&bad, "1 byte(s) after the end of the CRL").await;
}

/// A CRL file of another CA (AF's, copied by mistake) would refuse every municipality
/// (their CA then has no CRL): refused at load, by `check-config` and by the reload.
#[tokio::test]
async fn a_crl_file_of_another_ca_is_refused_at_load_check_config_and_reload() {
    let bad = std::fs::read_to_string(crate::harness::certs().join("af-ca.crl.pem")).unwrap();
    refused_at_load_and_reload(&bad, "is not a CA of this edge").await;
}

/// A CRL file replaced by an older CRL of the same CA (a deploy tool restoring a stale copy)
/// does not un-revoke: the newer one stays in force and the reload reports the older one
/// until the file is right.
#[tokio::test]
async fn a_crl_file_replaced_by_an_older_one_keeps_the_newer_and_says_so() {
    let root = tempfile::tempdir().unwrap();
    let s = copied_stack(root.path(), |_| {}).await;
    assert_eq!(crate::revocation::stockholm_fresh(&s, None).await, Ok(200));
    let certs = s.files.certs.clone();
    let file = certs.join("kommun-ca.crl.pem");
    let old = std::fs::read_to_string(&file).unwrap();
    let newer = root.path().join("newer.crl.pem");
    brygga::devkit::certs::write_crl(
        &certs.join("kommun-ca.pem"),
        &certs.join("kommun-ca.key"),
        &brygga::access::tls::load_certs(&certs.join("klient-0180.pem")).unwrap(),
        &newer,
        30,
    )
    .unwrap();
    std::fs::rename(&newer, &file).unwrap();
    eventually("Stockholm is revoked", || async {
        crate::revocation::stockholm_fresh(&s, None)
            .await
            .is_err_and(|e| e.contains("CertificateRevoked"))
    })
    .await;
    replace(&file, &old);
    eventually("the older CRL is reported", || async {
        reload_problems(&s).await >= 1
    })
    .await;
    let after = crate::revocation::stockholm_fresh(&s, None).await;
    assert!(
        after
            .as_ref()
            .is_err_and(|e| e.contains("CertificateRevoked")),
        "the older CRL un-revoked Stockholm: {after:?}"
    );
    s.stop().await;
}

/// A pseudonym key edited in place (same id, other bytes) or removed from the configuration
/// is refused by the reload: the keys in use stay (an event for a followed person still
/// finds its subscription) and the reload reports why. A key added is taken.
#[tokio::test]
async fn a_pseudonym_key_edited_in_place_or_removed_is_refused_and_the_keys_in_use_stay() {
    let root = tempfile::tempdir().unwrap();
    let s = copied_stack(root.path(), |_| {}).await;
    let certs = s.files.certs.clone();
    crate::delivery::stockholm_follows(&s).await;
    let af = brygga::devkit::client::KommunClient::new(
        &s.inner.af_url(),
        &certs.join("af-ca.pem"),
        Some((&certs.join("af-client.pem"), &certs.join("af-client.key"))),
    )
    .unwrap();
    let deliveries = |n: u32| {
        let event = crate::delivery::event(
            &format!("44444444-aaaa-4bbb-8ccc-{n:012}"),
            sim_af::REGISTRERAD,
            n,
        );
        let af = af.clone();
        async move {
            let a = af
                .post_with_type(
                    None,
                    serde_json::json!({ "handelser": [event] }).to_string(),
                    "application/json",
                )
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
            body["leveranser"].as_u64().unwrap()
        }
    };
    assert_eq!(deliveries(1).await, 1);

    let key_file = certs.join("pseudonym-subscriptions.key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    replace(&key_file, &"6b".repeat(32));
    eventually("the edited key is refused", || async {
        reload_problems(&s).await >= 1
    })
    .await;
    assert_eq!(deliveries(2).await, 1, "the subscription was lost");
    replace(&key_file, &key);
    eventually("the key in use is back", || async {
        reload_problems(&s).await == 0
    })
    .await;

    // A new key added last is taken; the old one removed is refused.
    replace(
        &certs.join("pseudonym-subscriptions-2.key"),
        &"7c".repeat(32),
    );
    let config = s.files.config.clone();
    let with_both = std::fs::read_to_string(&config).unwrap()
        + "\n[[pseudonyms]]\ndomain = \"subscriptions\"\nid = \"s2\"\nfile = \"../certs-example/pseudonym-subscriptions-2.key\"\n";
    replace(&config, &with_both);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reload_problems(&s).await, 0);
    replace(
        &config,
        &with_both.replace(
            "[[pseudonyms]]\ndomain = \"subscriptions\"\nid = \"s1\"\nfile = \"../certs-example/pseudonym-subscriptions.key\"\n",
            "",
        ),
    );
    eventually("the removed key is refused", || async {
        reload_problems(&s).await >= 1
    })
    .await;
    assert_eq!(deliveries(3).await, 1, "the subscription was lost");
    s.stop().await;
}
