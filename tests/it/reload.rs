//! Certificates, keys, CRLs and JWKS files are reloaded without a restart (on file change, as
//! on SIGHUP), and no request fails because of a reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use brygga::client::{KommunClient, TokenMinter};
use brygga::config::Config;
use brygga::demo::{DemoFiles, DemoStack};
use brygga::sim::{self, SimSettings};
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256,
    SanType,
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
    let cfg = brygga::tls::client_config(
        &brygga::tls::load_certs(&certs.join("kommun-ca.pem")).unwrap(),
        Some((
            brygga::tls::load_certs(&certs.join("klient-0180.pem")).unwrap(),
            brygga::tls::load_key(&certs.join("klient-0180.key")).unwrap(),
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
    let fraga = brygga::client::example_fraga(
        "2120000142",
        "Stockholms stad",
        "SE2120000142-HL01",
        sim::REGISTRERAD,
        "EKB-BESLUT",
    )
    .unwrap();
    let body = brygga::codec::soap::encode_request(
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
    let ca_key =
        KeyPair::from_pem(&std::fs::read_to_string(certs.join("kommun-ca.key")).unwrap()).unwrap();
    let issuer = Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(certs.join("kommun-ca.pem")).unwrap(),
        &ca_key,
    )
    .unwrap();
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
    let fraga = brygga::client::example_fraga(
        "2120000142",
        "Stockholms stad",
        "SE2120000142-HL01",
        sim::REGISTRERAD,
        "EKB-BESLUT",
    )
    .unwrap();
    let body = brygga::codec::soap::encode_request(
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
    let (_, new_jwks) = brygga::identity::es256_jwks(new_key.public_key_raw()).unwrap();
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
    let cfg = rustls::ServerConfig::builder_with_provider(brygga::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            brygga::tls::load_certs(&certs.join("af-sim.pem")).unwrap(),
            brygga::tls::load_key(&certs.join("af-sim.key")).unwrap(),
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
            let cfg = brygga::tls::client_config(
                &brygga::tls::load_certs(&certs.join("af-ca.pem")).unwrap(),
                None,
            )
            .unwrap();
            let source = brygga::identity::JwksUrl {
                url: format!("https://localhost:{port}/jwks.json"),
                http: reqwest::Client::builder()
                    .tls_backend_preconfigured(cfg)
                    .no_proxy()
                    .build()
                    .unwrap(),
                min_refresh: Duration::ZERO,
                grace: Duration::from_secs(3600),
            };
            let idp = brygga::identity::IdpKeys::from_url(
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
    let xml = s.st_xml(sim::REGISTRERAD);
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
    let (_, jwks) = brygga::identity::es256_jwks(new_key.public_key_raw()).unwrap();
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
    let text =
        brygga::demo::on_free_ports_unlimited(&std::fs::read_to_string(&defaults.config).unwrap())
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

    let ca_key =
        KeyPair::from_pem(&std::fs::read_to_string(certs.join("kommun-ca.key")).unwrap()).unwrap();
    let issuer = Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(certs.join("kommun-ca.pem")).unwrap(),
        &ca_key,
    )
    .unwrap();
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
