//! Revocation on every trust edge: the `af` listener's clients, AF's server certificate, the
//! case systems' endpoints, and the `kommun` listener; CRLs from files, from URLs brygga
//! fetches and refreshes, and from the distribution points certificates name; open
//! connections cut when their certificate is revoked, and every connection retired at its
//! maximum age.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brygga::access::trust::NamedCrl;
use brygga::config::CertAndKey;
use rcgen::{
    CertificateParams, CrlDistributionPoint, DnType, ExtendedKeyUsagePurpose, KeyPair,
    PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{self, Stack};

/// A CRL (DER) signed by the example CA `ca` (`kommun-ca`, `af-ca`), revoking `revoked`.
fn crl(ca: &str, revoked: &[CertificateDer<'static>]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ca.crl.pem");
    let certs = harness::certs();
    brygga::devkit::certs::write_crl(
        &certs.join(format!("{ca}.pem")),
        &certs.join(format!("{ca}.key")),
        revoked,
        &out,
        30,
    )
    .unwrap();
    brygga::access::tls::load_crls(&out).unwrap()[0]
        .as_ref()
        .to_vec()
}

fn named(name: &str, der: Vec<u8>) -> Vec<NamedCrl> {
    vec![NamedCrl {
        name: name.into(),
        der: der.into(),
    }]
}

fn example_cert(name: &str) -> CertificateDer<'static> {
    brygga::access::tls::load_certs(&harness::certs().join(format!("{name}.pem"))).unwrap()[0]
        .clone()
}

/// An HTTP server on loopback that serves a CRL (whatever it holds now) at every path.
struct CrlServer {
    addr: SocketAddr,
    body: Arc<Mutex<Vec<u8>>>,
    /// The status it answers with.
    status: Arc<AtomicU16>,
    /// How long it waits before answering, in ms.
    delay_ms: Arc<AtomicU64>,
    hits: Arc<AtomicU64>,
    /// Every path asked for, in order.
    paths: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CrlServer {
    async fn start(body: Vec<u8>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(Mutex::new(body));
        let status = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let hits = Arc::new(AtomicU64::new(0));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (b, st, d, h, ps) = (
            body.clone(),
            status.clone(),
            delay_ms.clone(),
            hits.clone(),
            paths.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (b, st, d, h, ps) = (b.clone(), st.clone(), d.clone(), h.clone(), ps.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: http::Request<_>| {
                        let (b, st, d, h) = (b.clone(), st.clone(), d.clone(), h.clone());
                        ps.lock().unwrap().push(req.uri().path().to_owned());
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(d.load(Ordering::SeqCst)))
                                .await;
                            let bytes = b.lock().unwrap().clone();
                            let mut r = http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(bytes),
                            ));
                            *r.status_mut() =
                                http::StatusCode::from_u16(st.load(Ordering::SeqCst)).unwrap();
                            r.headers_mut().insert(
                                "content-type",
                                http::HeaderValue::from_static("application/pkix-crl"),
                            );
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            body,
            status,
            delay_ms,
            hits,
            paths,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn serve(&self, body: Vec<u8>) {
        *self.body.lock().unwrap() = body;
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// The different paths asked for.
    fn paths(&self) -> std::collections::BTreeSet<String> {
        self.paths.lock().unwrap().iter().cloned().collect()
    }
}

impl Drop for CrlServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn af_sender(s: &Stack) -> brygga::devkit::client::KommunClient {
    let certs = harness::certs();
    brygga::devkit::client::KommunClient::new(
        &s.inner.af_url(),
        &certs.join("af-ca.pem"),
        Some((&certs.join("af-client.pem"), &certs.join("af-client.key"))),
    )
    .unwrap()
}

/// A new client each time (a new handshake), as Stockholm: the error, or the HTTP status.
pub async fn stockholm_fresh(s: &Stack, identity: Option<CertAndKey>) -> Result<u16, String> {
    let ca = brygga::access::tls::load_certs(&harness::certs().join("kommun-ca.pem")).unwrap();
    let identity = identity.unwrap_or_else(|| CertAndKey {
        chain: brygga::access::tls::load_certs(&s.sthlm.cert).unwrap(),
        key: brygga::access::tls::load_key(&s.sthlm.key).unwrap(),
    });
    let client = brygga::devkit::client::KommunClient::with_identity(&s.url, &ca, Some(identity))?;
    client
        .post_raw(
            Some(&s.st_token()),
            s.st_xml(brygga::devkit::sim_af::REGISTRERAD),
        )
        .await
        .map(|a| a.status.as_u16())
}

/// Waits (bounded) until `f` holds, polling.
async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> F,
) -> Duration {
    let started = Instant::now();
    while !f().await {
        assert!(started.elapsed() < limit, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    started.elapsed()
}

/// The metric `name` with every label given in `labels`, summed.
fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[tokio::test]
async fn the_af_listener_refuses_a_revoked_af_certificate() {
    let revoked = crl("af-ca", &[example_cert("af-client")]);
    let s = harness::start_custom(
        move |c, _| c.events.tls.crls = named("events.client_crls[0]", revoked),
        true,
    )
    .await;
    let err = af_sender(&s)
        .post_with_type(None, r#"{"handelser":[]}"#, "application/json")
        .await
        .unwrap_err();
    assert!(err.contains("CertificateRevoked"), "{err}");
    s.stop().await;
}

#[tokio::test]
async fn a_revoked_server_certificate_of_af_is_not_trusted() {
    let revoked = crl("af-ca", &[example_cert("af-sim")]);
    let s = harness::start_custom(
        move |c, _| c.af.tls.crls = named("af.crls[0]", revoked),
        true,
    )
    .await;
    let a = s.ask(Some(&s.st_token())).await;
    harness::fault(&a, 503, "AF_EJ_NABAR");
    assert_eq!(s.af_data_requests(), 0);
    s.stop().await;
}

#[tokio::test]
async fn a_case_system_whose_certificate_is_revoked_gets_no_event() {
    let sim = brygga::devkit::sim_kommun::start(
        &{
            let mut k = brygga::devkit::sim_kommun::KommunSimSettings::load(
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kommun-sim.example.toml"),
            )
            .unwrap();
            k.bind = "127.0.0.1:0".parse().unwrap();
            k
        },
        None,
    )
    .await
    .unwrap();
    let url = sim.url();
    let revoked = crl("kommun-ca", &[example_cert("kommun-sim")]);
    let s = harness::start_custom(
        move |c, _| {
            let e = c.endpoints.get_mut("stockholm").unwrap();
            e.url = url;
            e.crls = named("clients[0].delivery.crls[0]", revoked);
            c.delivery.first_retry = Duration::from_millis(50);
            c.delivery.max_retry = Duration::from_millis(100);
        },
        true,
    )
    .await;
    let today = time::OffsetDateTime::now_utc().date();
    harness::answer(
        &s.st
            .call(
                &s.st_token(),
                &brygga::model::KommunRequest::RegistreraPrenumeration(brygga::model::Fraga {
                    tidsperiod: brygga::model::Tidsperiod::new(
                        today,
                        today + time::Duration::days(3),
                    )
                    .unwrap(),
                    ..s.st_fraga(brygga::devkit::sim_af::REGISTRERAD)
                }),
            )
            .await
            .unwrap(),
    );
    let event = serde_json::json!({"handelser": [{
        "handelseId": "22222222-aaaa-4bbb-8ccc-000000000001",
        "typ": "AVAKTUALISERAD",
        "personnummer": brygga::devkit::sim_af::REGISTRERAD,
        "tidpunkt": format!("{today}T11:20:09Z"),
        "avaktualisering": {"datum": today.to_string(), "orsakKod": "ARB", "orsakText": "Fått arbete"}
    }]});
    let a = af_sender(&s)
        .post_with_type(None, event.to_string(), "application/json")
        .await
        .unwrap();
    assert_eq!(a.status, 202);
    // Several attempts, none of which reaches it.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(sim.state.received().is_empty());
    let m = harness::admin_text(s.inner.gateway.admin_addr, "/metrics").await;
    assert!(
        metric(&m, "brygga_deliveries_total", &["outcome=\"EJ_NADD\""]).unwrap_or(0.0) >= 2.0,
        "{m}"
    );
    s.stop().await;
}

/// A CRL named by URL is fetched at start and again at `revocation.refresh`; when the new one
/// revokes Stockholm's certificate, the connection Stockholm has open is closed, and its
/// next handshake refused, while Göteborg is served.
#[tokio::test]
async fn a_crl_from_a_url_is_refreshed_and_a_revocation_cuts_the_open_connection() {
    let server = CrlServer::start(crl("kommun-ca", &[])).await;
    let url = server.url("/kommun-ca.crl");
    let u = url.clone();
    let s = harness::start_custom(
        move |c, _| {
            c.kommun_files.trust.crls.urls.push((9, u));
            c.revocation.refresh = Duration::from_millis(500);
            c.revocation.retry = Duration::from_millis(200);
        },
        true,
    )
    .await;
    assert!(server.hits() >= 1, "fetched before the first connection");
    let m = harness::admin_text(s.inner.gateway.admin_addr, "/metrics").await;
    assert_eq!(
        metric(&m, "brygga_crl_source_ok", &[&format!("source=\"{url}\"")]),
        Some(1.0),
        "{m}"
    );
    // Stockholm's keep-alive connection, served.
    let mut open = harness::tls_as_stockholm(&s, b"http/1.1").await;
    open.write_all(b"GET /kommun/v1?wsdl HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    open.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");

    server.serve(crl("kommun-ca", &[example_cert("klient-0180")]));
    let changed = Instant::now();
    harness::until_closed(&mut open, Duration::from_secs(10))
        .await
        .expect("the open connection is closed");
    let took = changed.elapsed();
    eprintln!("a CRL change at its URL closed the open connection after {took:?}");
    let err = stockholm_fresh(&s, None).await.unwrap_err();
    assert!(err.contains("CertificateRevoked"), "{err}");
    harness::status(
        &s.gb
            .post_raw(
                Some(&s.gb_token()),
                s.gb_xml(brygga::devkit::sim_af::REGISTRERAD),
            )
            .await
            .unwrap(),
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    let m = harness::admin_text(s.inner.gateway.admin_addr, "/metrics").await;
    assert!(
        metric(
            &m,
            "brygga_connections_closed_early_total",
            &["reason=\"no_longer_verified\""]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );
    s.stop().await;
}

/// A CRL file replaced on disk: the open connection of the certificate it now revokes is
/// closed at the next reload (`gateway.reload_poll`).
#[tokio::test]
async fn a_crl_file_replaced_cuts_the_open_connection_at_the_next_reload() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kommun-ca.crl.pem");
    std::fs::copy(harness::certs().join("kommun-ca.crl.pem"), &file).unwrap();
    let f = file.clone();
    let s = harness::start_custom(
        move |c, _| {
            c.kommun_files.trust.crls.files = vec![(0, f)];
            c.reload_poll = Duration::from_millis(200);
        },
        true,
    )
    .await;
    let mut open = harness::tls_as_stockholm(&s, b"h2").await;
    // HTTP/2: the server's settings come first; then silence until it closes.
    let mut buf = [0u8; 256];
    let _ = open.read(&mut buf).await;
    let revoked = dir.path().join("new.crl.pem");
    brygga::devkit::certs::write_crl(
        &harness::certs().join("kommun-ca.pem"),
        &harness::certs().join("kommun-ca.key"),
        &[example_cert("klient-0180")],
        &revoked,
        30,
    )
    .unwrap();
    std::fs::rename(&revoked, &file).unwrap();
    let changed = Instant::now();
    harness::until_closed(&mut open, Duration::from_secs(10))
        .await
        .expect("the open connection is closed");
    eprintln!(
        "a CRL file replaced closed the open connection after {:?}",
        changed.elapsed()
    );
    assert!(changed.elapsed() < Duration::from_secs(3));
    s.stop().await;
}

/// A Stockholm certificate (from the example kommun CA) naming `url` as its CRL
/// distribution point.
fn sthlm_with_distribution_point(url: &str) -> CertAndKey {
    let issuer = harness::issuer(&harness::certs(), "kommun-ca");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "Stockholms stad med CRL-punkt");
    p.distinguished_name
        .push(DnType::CustomDnType(vec![2, 5, 4, 97]), "NTRSE-2120000142");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![url.to_owned()],
    }];
    let cert = p.signed_by(&key, &issuer).unwrap();
    CertAndKey {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
    }
}

/// A certificate that names a CRL distribution point brygga holds no CRL for is refused
/// until that CRL is fetched (it is, at once), then served; once the CRL there revokes it,
/// it is refused. A certificate of no trusted CA never makes brygga fetch anything.
#[tokio::test]
async fn a_distribution_point_a_certificate_names_is_fetched_and_followed() {
    let server = CrlServer::start(crl("kommun-ca", &[])).await;
    let url = server.url("/kommun-ca-dp.crl");
    let s = harness::start_custom(
        |c, _| {
            // No CRL of the kommun CA but the one its certificates point at.
            c.kommun.crls.clear();
            c.kommun_files.trust.crls.files.clear();
            c.revocation.refresh = Duration::from_millis(500);
        },
        true,
    )
    .await;
    assert_eq!(server.hits(), 0);
    let cert = sthlm_with_distribution_point(&url);
    let err = stockholm_fresh(&s, Some(cert.clone())).await.unwrap_err();
    assert!(!err.is_empty());
    until(
        "the CRL is fetched and the certificate served",
        Duration::from_secs(10),
        || {
            let (s, cert) = (&s, cert.clone());
            async move { stockholm_fresh(s, Some(cert)).await == Ok(200) }
        },
    )
    .await;
    assert!(server.hits() >= 1);
    server.serve(crl("kommun-ca", &[cert.chain[0].clone()]));
    until(
        "the revocation is followed",
        Duration::from_secs(10),
        || {
            let (s, cert) = (&s, cert.clone());
            async move {
                stockholm_fresh(s, Some(cert))
                    .await
                    .is_err_and(|e| e.contains("CertificateRevoked"))
            }
        },
    )
    .await;

    // A stranger's certificate naming a URL of its choice: refused, and nothing fetched.
    let stranger_server = CrlServer::start(Vec::new()).await;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(vec!["stranger".into()]).unwrap();
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![stranger_server.url("/x.crl")],
    }];
    let self_signed = p.self_signed(&key).unwrap();
    let stranger = CertAndKey {
        chain: vec![self_signed.der().clone()],
        key: PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
    };
    assert!(stockholm_fresh(&s, Some(stranger)).await.is_err());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stranger_server.hits(), 0);
    s.stop().await;
}

/// A CRL URL that fails: the listener refuses every client certificate (which CA the CRL
/// speaks for is unknown until it is fetched), `/readyz` names the source, the failures are
/// counted; once the source answers, clients are served again. Later failures — a CRL too
/// large, one from another CA, a source too slow — keep the last good CRL.
#[tokio::test]
async fn a_failing_crl_source_fails_closed_is_reported_and_keeps_the_last_good_crl() {
    let server = CrlServer::start(crl("kommun-ca", &[])).await;
    server.status.store(503, Ordering::SeqCst);
    let url = server.url("/kommun-ca.crl");
    let u = url.clone();
    let s = harness::start_custom(
        move |c, _| {
            c.kommun_files.trust.crls.urls.push((9, u));
            c.revocation.refresh = Duration::from_millis(300);
            c.revocation.retry = Duration::from_millis(200);
            c.revocation.timeout = Duration::from_millis(500);
            c.revocation.max_bytes = 64 * 1024;
            c.health.cache = Duration::ZERO;
        },
        true,
    )
    .await;
    let err = stockholm_fresh(&s, None).await.unwrap_err();
    assert!(!err.is_empty());
    let ready = reqwest::get(format!("http://{}/readyz", s.inner.gateway.admin_addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body = ready.text().await.unwrap();
    assert!(body.contains("\"crls\"") && body.contains(&url), "{body}");
    let m = harness::admin_text(s.inner.gateway.admin_addr, "/metrics").await;
    let source = format!("source=\"{url}\"");
    assert!(metric(&m, "brygga_crl_fetch_failures_total", &[&source]).unwrap_or(0.0) >= 1.0);
    assert_eq!(metric(&m, "brygga_crl_source_ok", &[&source]), Some(0.0));

    server.status.store(200, Ordering::SeqCst);
    until(
        "served once the CRL is fetched",
        Duration::from_secs(10),
        || async { stockholm_fresh(&s, None).await == Ok(200) },
    )
    .await;

    // Misbehaving sources: each is a failure, and the CRL held stays in force.
    let failures = |m: &str| metric(m, "brygga_crl_fetch_failures_total", &[&source]).unwrap();
    for (what, misbehave) in [
        (
            "too large",
            Box::new(|s: &CrlServer| s.serve(vec![0x30; 100 * 1024])) as Box<dyn Fn(&CrlServer)>,
        ),
        (
            "another CA's",
            Box::new(|s: &CrlServer| s.serve(crl("af-ca", &[]))),
        ),
        (
            "too slow",
            Box::new(|s: &CrlServer| {
                s.serve(crl("kommun-ca", &[example_cert("klient-0180")]));
                s.delay_ms.store(2000, Ordering::SeqCst);
            }),
        ),
    ] {
        let before = failures(&harness::admin_text(s.inner.gateway.admin_addr, "/metrics").await);
        misbehave(&server);
        until(what, Duration::from_secs(10), || async {
            failures(&harness::admin_text(s.inner.gateway.admin_addr, "/metrics").await) > before
        })
        .await;
        assert_eq!(stockholm_fresh(&s, None).await, Ok(200), "{what}");
    }
    s.stop().await;
}

/// A connection older than `limits.max_connection_age` is closed gracefully, HTTP/1.1 and
/// HTTP/2 alike, well before any idle deadline.
#[tokio::test]
async fn a_connection_is_retired_at_its_maximum_age() {
    let s = harness::start_custom(
        |c, _| c.limits.max_connection_age = Duration::from_millis(800),
        true,
    )
    .await;
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let mut tls = harness::tls_as_stockholm(&s, alpn).await;
        if alpn == b"http/1.1" {
            tls.write_all(b"GET /kommun/v1?wsdl HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await
                .unwrap();
        }
        let took = harness::until_closed(&mut tls, Duration::from_secs(8))
            .await
            .unwrap_or_else(|| panic!("{alpn:?}: not closed"));
        assert!(
            took >= Duration::from_millis(600) && took < Duration::from_secs(4),
            "{alpn:?}: {took:?}"
        );
    }
    // An HTTP/2 client that made a request: told GOAWAY at the age, and the connection ends.
    let tls = harness::tls_as_stockholm(&s, b"h2").await;
    let (mut send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake::<_, http_body_util::Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let started = Instant::now();
    let r = send
        .send_request(
            http::Request::get("https://localhost/kommun/v1?wsdl")
                .body(http_body_util::Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(r);
    let ended = tokio::time::timeout(Duration::from_secs(8), conn).await;
    assert!(ended.is_ok(), "h2 client connection still open");
    assert!(started.elapsed() < Duration::from_secs(4));
    s.stop().await;
}

/// A CRL (DER) signed by `issuer` revoking `revoked`, issued `age` ago, current for `valid`
/// from now.
fn crl_signed_by(
    issuer: &rcgen::Issuer<'_, KeyPair>,
    revoked: &[&CertificateDer<'_>],
    age: time::Duration,
    valid: time::Duration,
) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc();
    let revoked_certs = revoked
        .iter()
        .map(|c| {
            let (_, x) = x509_parser::parse_x509_certificate(c.as_ref()).unwrap();
            rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(x.raw_serial()),
                revocation_time: now - time::Duration::minutes(1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            }
        })
        .collect();
    rcgen::CertificateRevocationListParams {
        this_update: now - age,
        next_update: now + valid,
        crl_number: rcgen::SerialNumber::from((now - age).unix_timestamp().unsigned_abs()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .unwrap()
    .der()
    .to_vec()
}

/// A Stockholm client certificate signed by `issuer`, naming `points` as its CRL distribution
/// points, valid until `not_after` when given.
fn sthlm_signed_by(
    issuer: &rcgen::Issuer<'_, KeyPair>,
    points: Vec<String>,
    not_after: Option<time::OffsetDateTime>,
) -> (CertificateDer<'static>, KeyPair) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "Stockholms stad, ett system till");
    p.distinguished_name
        .push(DnType::CustomDnType(vec![2, 5, 4, 97]), "NTRSE-2120000142");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if !points.is_empty() {
        p.crl_distribution_points = vec![CrlDistributionPoint { uris: points }];
    }
    if let Some(t) = not_after {
        p.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        p.not_after = t;
    }
    (p.signed_by(&key, issuer).unwrap().der().clone(), key)
}

fn with_key(chain: Vec<CertificateDer<'static>>, key: &KeyPair) -> CertAndKey {
    CertAndKey {
        chain,
        key: PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
    }
}

/// Presents a certificate chain with whatever key it is given (rustls would otherwise refuse
/// a key that is not the certificate's).
#[derive(Debug)]
struct Presents(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Presents {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A client of `ca`'s servers presenting `chain` with `key`, speaking only `version`, and
/// keeping its TLS sessions to resume them (rustls's default).
fn resuming_client(
    ca: &str,
    chain: Vec<CertificateDer<'static>>,
    key: &KeyPair,
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<rustls::ClientConfig> {
    let provider = brygga::access::tls::provider();
    let signing = provider
        .key_provider
        .load_private_key(PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap())
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in brygga::access::tls::load_certs(&harness::certs().join(format!("{ca}.pem"))).unwrap() {
        roots.add(c).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(Presents(Arc::new(
            rustls::sign::CertifiedKey::new(chain, signing),
        ))));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// One GET on a new connection to `addr` made with `cfg`: whether the handshake resumed a
/// session, and the answer's status line or why there was none.
async fn get_on_a_new_connection(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    path: &str,
) -> (bool, Result<String, String>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = match tokio_rustls::TlsConnector::from(cfg.clone())
        .connect(name, tcp)
        .await
    {
        Ok(t) => t,
        Err(e) => return (false, Err(format!("handshake: {e}"))),
    };
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if let Err(e) = tls.write_all(request.as_bytes()).await {
        return (resumed, Err(format!("write: {e}")));
    }
    let mut answer = Vec::new();
    match tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await {
        _ if answer.starts_with(b"HTTP/") => {
            let text = String::from_utf8_lossy(&answer);
            (resumed, Ok(text.lines().next().unwrap_or("").to_owned()))
        }
        Ok(Err(e)) => (resumed, Err(e.to_string())),
        _ => (resumed, Err("no answer".into())),
    }
}

/// No listener resumes a TLS session (TLS 1.2 or 1.3): a resumed session would restore the
/// client certificate without verifying it again. So a client certificate that expired after
/// its first handshake is refused on the next one, made with the same client and its kept
/// session.
#[tokio::test]
async fn no_session_is_resumed_so_a_certificate_expired_since_is_refused_on_the_next_handshake() {
    let s = harness::start().await;
    let af_key = KeyPair::from_pem(
        &std::fs::read_to_string(harness::certs().join("af-client.key")).unwrap(),
    )
    .unwrap();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        for (addr, ca, chain, key) in [
            (
                s.inner.gateway.af_addr,
                "af-ca",
                vec![example_cert("af-client")],
                &af_key,
            ),
            (
                s.inner.gateway.kommun_addr,
                "kommun-ca",
                vec![example_cert("klient-0180")],
                &KeyPair::from_pem(&std::fs::read_to_string(&s.sthlm.key).unwrap()).unwrap(),
            ),
        ] {
            let cfg = resuming_client(ca, chain, key, version);
            let first = get_on_a_new_connection(addr, &cfg, "/kommun/v1?wsdl").await;
            let second = get_on_a_new_connection(addr, &cfg, "/kommun/v1?wsdl").await;
            assert!(first.1.is_ok() && second.1.is_ok(), "{first:?} {second:?}");
            assert!(
                !second.0,
                "{ca} listener, {version:?}: a session was resumed"
            );
        }
    }

    let root = harness::issuer(&harness::certs(), "kommun-ca");
    let expires = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let (cert, key) = sthlm_signed_by(&root, Vec::new(), Some(expires));
    let cfg = resuming_client("kommun-ca", vec![cert], &key, &rustls::version::TLS13);
    let addr = s.inner.gateway.kommun_addr;
    let (_, first) = get_on_a_new_connection(addr, &cfg, "/kommun/v1?wsdl").await;
    assert_eq!(first.as_deref(), Ok("HTTP/1.1 200 OK"));
    while time::OffsetDateTime::now_utc() < expires + time::Duration::seconds(1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (resumed, after) = get_on_a_new_connection(addr, &cfg, "/kommun/v1?wsdl").await;
    assert!(!resumed);
    assert!(
        after
            .as_ref()
            .is_err_and(|e| e.contains("CertificateExpired")),
        "the expired certificate: {after:?}"
    );
    s.stop().await;
}

/// A CRL WebPKI cannot read (here: a newline after the DER, as some web servers add) is a
/// failed fetch with its reason: the gateway still starts, refusing the CA's certificates
/// until a good CRL comes (`/readyz` says why); later, such a CRL is counted as a failure
/// and the last good one stays in force — nothing reaches the verifier to fail the edge.
#[tokio::test]
async fn a_fetched_crl_webpki_cannot_read_is_a_fetch_failure_and_the_last_good_one_stays() {
    let with_newline = |mut der: Vec<u8>| {
        der.push(b'\n');
        der
    };
    let server = CrlServer::start(with_newline(crl("kommun-ca", &[]))).await;
    let url = server.url("/kommun-ca.crl");
    let u = url.clone();
    let s = harness::start_custom(
        move |c, _| {
            c.kommun.crls.clear();
            c.kommun_files.trust.crls.files.clear();
            c.kommun_files.trust.crls.urls.push((0, u));
            c.revocation.refresh = Duration::from_millis(300);
            c.revocation.retry = Duration::from_millis(300);
            c.health.cache = Duration::ZERO;
        },
        true,
    )
    .await;
    let admin = s.inner.gateway.admin_addr;
    let ready = harness::admin_text(admin, "/readyz").await;
    assert!(
        ready.contains(&url) && ready.contains("1 byte(s) after the end of the CRL"),
        "{ready}"
    );
    assert!(stockholm_fresh(&s, None).await.is_err());

    server.serve(crl("kommun-ca", &[]));
    until(
        "served with a good CRL",
        Duration::from_secs(10),
        || async { stockholm_fresh(&s, None).await == Ok(200) },
    )
    .await;
    let source = format!("source=\"{url}\"");
    let failures = |m: &str| metric(m, "brygga_crl_fetch_failures_total", &[&source]).unwrap();
    let before = failures(&harness::admin_text(admin, "/metrics").await);
    server.serve(with_newline(crl(
        "kommun-ca",
        &[example_cert("klient-0180")],
    )));
    until(
        "the unreadable CRL is counted as a failure",
        Duration::from_secs(10),
        || async { failures(&harness::admin_text(admin, "/metrics").await) >= before + 2.0 },
    )
    .await;
    let m = harness::admin_text(admin, "/metrics").await;
    assert_eq!(metric(&m, "brygga_reload_problems", &[]), Some(0.0), "{m}");
    assert_eq!(
        metric(&m, "brygga_crl_source_ok", &[&source]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(stockholm_fresh(&s, None).await, Ok(200));
    s.stop().await;
}

/// Anyone can copy a municipality's certificate (TLS 1.2 sends it in clear), but without its
/// key it makes brygga fetch nothing: the distribution points a certificate names are
/// learned only after its peer signed the handshake with the certificate's key.
#[tokio::test]
async fn a_copied_certificate_without_its_key_makes_brygga_fetch_nothing() {
    let server = CrlServer::start(crl("kommun-ca", &[])).await;
    let root = harness::issuer(&harness::certs(), "kommun-ca");
    let (cert, its_key) = sthlm_signed_by(&root, vec![server.url("/copied.crl")], None);
    let s = harness::start_custom(
        |c, _| {
            c.kommun.crls.clear();
            c.kommun_files.trust.crls.files.clear();
            c.revocation.retry = Duration::from_millis(200);
        },
        true,
    )
    .await;
    let stranger = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let cfg = resuming_client("kommun-ca", vec![cert.clone()], &stranger, version);
        let (_, answer) =
            get_on_a_new_connection(s.inner.gateway.kommun_addr, &cfg, "/kommun/v1?wsdl").await;
        assert!(answer.is_err(), "{version:?}: {answer:?}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.hits(), 0, "a peer without the key made brygga fetch");
    // With its key, the same certificate has its point fetched, and is then served.
    let owner = with_key(vec![cert], &its_key);
    assert!(stockholm_fresh(&s, Some(owner.clone())).await.is_err());
    until(
        "served once its CRL is here",
        Duration::from_secs(10),
        || {
            let owner = owner.clone();
            let s = &s;
            async move { stockholm_fresh(s, Some(owner)).await == Ok(200) }
        },
    )
    .await;
    assert!(server.hits() >= 1);
    s.stop().await;
}

/// A distribution point learned from one client's certificate that does not answer keeps
/// that certificate out (fail closed) but does not make the gateway unready: the others are
/// served and `/readyz` says ready, naming it apart. Unused, it is forgotten
/// (`revocation.forget_unused_after`) and no longer fetched.
#[tokio::test]
async fn a_dead_learned_distribution_point_leaves_the_gateway_ready_and_is_forgotten_unused() {
    let dead = CrlServer::start(Vec::new()).await;
    dead.status.store(404, Ordering::SeqCst);
    let root = harness::issuer(&harness::certs(), "kommun-ca");
    let s = harness::start_custom(
        |c, _| {
            // No CRL of the kommun CA but those its certificates point at.
            c.kommun.crls.clear();
            c.kommun_files.trust.crls.files.clear();
            c.revocation.retry = Duration::from_millis(200);
            c.revocation.forget_unused_after = Duration::from_secs(2);
            c.health.cache = Duration::ZERO;
        },
        true,
    )
    .await;
    let admin = s.inner.gateway.admin_addr;
    let (cert, key) = sthlm_signed_by(&root, vec![dead.url("/gone.crl")], None);
    assert!(
        stockholm_fresh(&s, Some(with_key(vec![cert], &key)))
            .await
            .is_err()
    );
    until("the point is fetched", Duration::from_secs(5), || async {
        dead.hits() >= 2
    })
    .await;
    let ready = reqwest::get(format!("http://{admin}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let body = ready.text().await.unwrap();
    assert!(
        body.contains("learned from certificates (not counted)") && body.contains("/gone.crl"),
        "{body}"
    );
    // Göteborg's certificate names no point: served meanwhile.
    harness::status(
        &s.gb
            .post_raw(
                Some(&s.gb_token()),
                s.gb_xml(brygga::devkit::sim_af::REGISTRERAD),
            )
            .await
            .unwrap(),
    );
    // Forgotten two seconds after it was learned: fetched no more.
    until(
        "the point is forgotten",
        Duration::from_secs(10),
        || async {
            let m = harness::admin_text(admin, "/metrics").await;
            metric(&m, "brygga_crl_source_ok", &["gone.crl"]).is_none()
        },
    )
    .await;
    let hits = dead.hits();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(dead.hits(), hits, "a forgotten point is still fetched");
    s.stop().await;
}

/// A certificate naming many distribution points has two of them fetched, and learned points
/// that never answer cannot crowd out others: when the table of learned sources is full, one
/// that never answered makes room, so a later certificate with a working point is served.
#[tokio::test]
async fn many_distribution_points_take_two_per_certificate_and_dead_ones_make_room() {
    let dead = CrlServer::start(Vec::new()).await;
    dead.status.store(404, Ordering::SeqCst);
    let alive = CrlServer::start(crl("kommun-ca", &[])).await;
    let root = harness::issuer(&harness::certs(), "kommun-ca");
    let s = harness::start_custom(
        |c, _| {
            c.kommun.crls.clear();
            c.kommun_files.trust.crls.files.clear();
            c.revocation.retry = Duration::from_secs(30);
        },
        true,
    )
    .await;
    let points: Vec<String> = (0..70).map(|i| dead.url(&format!("/p{i}.crl"))).collect();
    let (greedy, key) = sthlm_signed_by(&root, points, None);
    assert!(
        stockholm_fresh(&s, Some(with_key(vec![greedy], &key)))
            .await
            .is_err()
    );
    until("its points are fetched", Duration::from_secs(5), || async {
        dead.paths().len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        dead.paths(),
        ["/p0.crl", "/p1.crl"].map(String::from).into(),
        "two points of one certificate"
    );
    // More learned points than the table holds, none of which answers.
    for i in 0..40 {
        let (cert, key) = sthlm_signed_by(
            &root,
            vec![
                dead.url(&format!("/q{i}a.crl")),
                dead.url(&format!("/q{i}b.crl")),
            ],
            None,
        );
        let _ = stockholm_fresh(&s, Some(with_key(vec![cert], &key))).await;
    }
    let (later, key) = sthlm_signed_by(&root, vec![alive.url("/later.crl")], None);
    let later = with_key(vec![later], &key);
    let took = until(
        "a working point of a later certificate is followed",
        Duration::from_secs(10),
        || {
            let (s, later) = (&s, later.clone());
            async move { stockholm_fresh(s, Some(later)).await == Ok(200) }
        },
    )
    .await;
    eprintln!(
        "{} dead points asked for; the later certificate was served after {took:?}",
        dead.paths().len()
    );
    s.stop().await;
}

/// A client under an intermediate CA (kommun CA → intermediate → client), revocation left to
/// distribution points: the intermediate names the root's CRL, the client's certificate the
/// intermediate's. Both are fetched (the intermediate's CRL is taken because the
/// intermediate verifies up to the kommun CA), the client is served, and refused once the
/// intermediate's CRL revokes it.
#[tokio::test]
async fn a_client_under_an_intermediate_ca_is_served_once_both_crls_are_fetched() {
    let root = harness::issuer(&harness::certs(), "kommun-ca");
    let root_crls = CrlServer::start(crl("kommun-ca", &[])).await;
    let int_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ip = CertificateParams::default();
    ip.distinguished_name
        .push(DnType::CommonName, "brygga exempel, mellanliggande CA");
    ip.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ip.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    ip.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![root_crls.url("/root.crl")],
    }];
    let int_cert = ip.signed_by(&int_key, &root).unwrap().der().clone();
    let intermediate = rcgen::Issuer::new(ip, int_key);
    let int_crls = CrlServer::start(crl_signed_by(
        &intermediate,
        &[],
        time::Duration::hours(1),
        time::Duration::days(30),
    ))
    .await;
    let (leaf, key) = sthlm_signed_by(&intermediate, vec![int_crls.url("/int.crl")], None);
    let client = with_key(vec![leaf.clone(), int_cert], &key);
    let s = harness::start_custom(
        |c, _| {
            c.kommun.crls.clear();
            c.kommun_files.trust.crls.files.clear();
            c.revocation.refresh = Duration::from_millis(500);
        },
        true,
    )
    .await;
    let took = until("served", Duration::from_secs(10), || {
        let (s, client) = (&s, client.clone());
        async move { stockholm_fresh(s, Some(client)).await == Ok(200) }
    })
    .await;
    eprintln!("a client under an intermediate CA was served after {took:?}");
    assert!(root_crls.hits() >= 1 && int_crls.hits() >= 1);
    int_crls.serve(crl_signed_by(
        &intermediate,
        &[&leaf],
        time::Duration::minutes(30),
        time::Duration::days(30),
    ));
    until("refused once revoked", Duration::from_secs(10), || {
        let (s, client) = (&s, client.clone());
        async move {
            stockholm_fresh(s, Some(client))
                .await
                .is_err_and(|e| e.contains("CertificateRevoked"))
        }
    })
    .await;
    s.stop().await;
}

/// A CRL is fetched again halfway to its next update (here, one with six seconds left is
/// fetched after three), so the next one its CA publishes is in force before the held one
/// goes stale — not after, which would refuse every certificate of the CA in between.
#[tokio::test]
async fn a_crl_near_its_next_update_is_fetched_again_before_it_expires() {
    let root = harness::issuer(&harness::certs(), "kommun-ca");
    let issued = Instant::now();
    let server = CrlServer::start(crl_signed_by(
        &root,
        &[],
        time::Duration::hours(1),
        time::Duration::seconds(6),
    ))
    .await;
    let u = server.url("/kommun-ca.crl");
    let s = harness::start_custom(
        move |c, _| {
            c.kommun.crls.clear();
            c.kommun_files.trust.crls.files.clear();
            c.kommun_files.trust.crls.urls.push((0, u));
            // The defaults.
            c.revocation.refresh = Duration::from_secs(3600);
            c.revocation.retry = Duration::from_secs(60);
        },
        true,
    )
    .await;
    assert_eq!(stockholm_fresh(&s, None).await, Ok(200));
    // The CA publishes its next CRL a moment later.
    server.serve(crl("kommun-ca", &[]));
    let stale = issued + Duration::from_secs(8);
    tokio::time::sleep_until(stale.into()).await;
    assert_eq!(
        stockholm_fresh(&s, None).await,
        Ok(200),
        "refused once the first CRL went stale: {} fetch(es)",
        server.hits()
    );
    assert!(server.hits() >= 2);
    s.stop().await;
}

/// A CRL whose thisUpdate lies in the future (a CA clock ahead once) is refused: held, it
/// would make every correct CRL its CA publishes after it look older, and their revocations
/// would not be applied until the clock caught up.
#[tokio::test]
async fn a_crl_issued_in_the_future_is_refused_and_later_revocations_apply() {
    let root = harness::issuer(&harness::certs(), "kommun-ca");
    let server = CrlServer::start(crl_signed_by(
        &root,
        &[],
        -time::Duration::days(1),
        time::Duration::days(30),
    ))
    .await;
    let url = server.url("/kommun-ca.crl");
    let u = url.clone();
    let s = harness::start_custom(
        move |c, _| {
            c.kommun.crls.clear();
            c.kommun_files.trust.crls.files.clear();
            c.kommun_files.trust.crls.urls.push((0, u));
            c.revocation.refresh = Duration::from_millis(300);
            c.revocation.retry = Duration::from_millis(300);
            c.health.cache = Duration::ZERO;
        },
        true,
    )
    .await;
    let ready = harness::admin_text(s.inner.gateway.admin_addr, "/readyz").await;
    assert!(ready.contains("issued in the future"), "{ready}");
    // The CA's clock is right again; it revokes Stockholm's certificate.
    server.serve(crl("kommun-ca", &[example_cert("klient-0180")]));
    until(
        "the revocation applies",
        Duration::from_secs(10),
        || async {
            stockholm_fresh(&s, None)
                .await
                .is_err_and(|e| e.contains("CertificateRevoked"))
        },
    )
    .await;
    s.stop().await;
}
