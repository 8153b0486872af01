//! Starting a stack on free loopback ports and talking to it.

use std::path::PathBuf;

use brygga::config::Config;
use brygga::contract::soap::{self, KommunResponse};
use brygga::devkit::client::{KommunClient, RawAnswer, TokenMinter, example_fraga};
use brygga::devkit::demo::{DemoFiles, DemoStack, ExampleClient, example_clients};
use brygga::devkit::sim_af::{self, SimSettings};
use brygga::model::*;
use http::StatusCode;

pub struct Stack {
    pub inner: DemoStack,
    pub files: DemoFiles,
    pub url: String,
    pub sthlm: ExampleClient,
    pub gbg: ExampleClient,
    /// Stockholm's case system (client certificate of 212000-0142).
    pub st: KommunClient,
    pub gb: KommunClient,
    pub st_idp: TokenMinter,
    pub gb_idp: TokenMinter,
    /// The audit store's directory; it outlives `stop` so tests can read the store.
    pub data: tempfile::TempDir,
}

/// Every record after the genesis in an audit store, oldest first.
pub fn audit_records(store: &std::path::Path) -> Vec<brygga::store::audit::Record> {
    let mut all = audit_records_with_genesis(store);
    all.retain(|r| r.seq > 0);
    all
}

/// Every record of the chain, its genesis (record 0) first.
pub fn audit_records_with_genesis(store: &std::path::Path) -> Vec<brygga::store::audit::Record> {
    let conn = rusqlite::Connection::open(store).unwrap();
    let mut stmt = conn
        .prepare("SELECT body FROM records ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|b| serde_json::from_str(&b.unwrap()).unwrap())
        .collect()
}

/// A rate no test reaches.
pub fn unlimited() -> brygga::access::limit::Configured {
    let rate = brygga::access::limit::Rate {
        per_second: 1_000_000,
        burst: 1_000_000,
    };
    brygga::access::limit::Configured {
        rate,
        quota: rate.quota().unwrap(),
    }
}

pub fn certs() -> PathBuf {
    DemoFiles::default().certs
}

/// The default stack: example configuration, every listener on a free port.
pub async fn start() -> Stack {
    start_custom(|_, _| {}, true).await
}

/// A stack whose configuration the test adjusts before start.
pub async fn start_custom(
    adjust: impl FnOnce(&mut Config, &mut SimSettings),
    point_at_sim: bool,
) -> Stack {
    start_with_files(DemoFiles::default(), adjust, point_at_sim).await
}

/// The same from other configuration files and certificates (e.g. a freshly generated PKI
/// with copies of the example configuration beside it).
pub async fn start_with_files(
    files: DemoFiles,
    adjust: impl FnOnce(&mut Config, &mut SimSettings),
    point_at_sim: bool,
) -> Stack {
    let mut config = Config::load(&files.config).expect("example config loads");
    let mut sim = SimSettings::load(&files.sim_config).expect("sim config loads");
    let any = "127.0.0.1:0".parse().unwrap();
    config.kommun_bind = any;
    config.admin_bind = any;
    config.events.bind = any;
    // No limits unless a test sets them: tests send faster than a case worker.
    for c in config.clients.iter_mut() {
        if let Some(c) = std::sync::Arc::get_mut(c) {
            c.rate = unlimited();
            c.rate_per_operation.clear();
            c.max_concurrent = 100_000;
        }
    }
    config.af_rate = None;
    // No case system unless a test starts one: a developer's running simulator on the
    // example ports must not receive the tests' deliveries.
    for endpoint in config.endpoints.values_mut() {
        endpoint.url = "https://localhost:1/handelser".into();
    }
    sim.bind = any;
    adjust(&mut config, &mut sim);
    let data = tempfile::tempdir().unwrap();
    let inner = DemoStack::start_with(config, sim, point_at_sim, Some(data.path()))
        .await
        .expect("stack starts");
    let url = inner.kommun_url();
    let clients = example_clients(&inner.config, &files.certs);
    let mut it = clients.into_iter();
    let sthlm = it.next().expect("Stockholm");
    let gbg = it.next().expect("Göteborg");
    let ca = files.certs.join("kommun-ca.pem");
    let st = KommunClient::new(&url, &ca, Some((&sthlm.cert, &sthlm.key))).unwrap();
    let gb = KommunClient::new(&url, &ca, Some((&gbg.cert, &gbg.key))).unwrap();
    let aud = inner.config.token_rules.audience.clone();
    let st_idp = TokenMinter::load(&sthlm.idp_key, &sthlm.issuer, &aud).unwrap();
    let gb_idp = TokenMinter::load(&gbg.idp_key, &gbg.issuer, &aud).unwrap();
    Stack {
        inner,
        files,
        url,
        sthlm,
        gbg,
        st,
        gb,
        st_idp,
        gb_idp,
        data,
    }
}

impl Stack {
    pub fn st_token(&self) -> String {
        self.st_idp
            .token(&self.sthlm.handlaggare, "0180", "EKB-BESLUT")
            .unwrap()
    }

    pub fn st_fraga(&self, personnummer: &str) -> Fraga {
        example_fraga(
            &self.sthlm.orgnr,
            &self.sthlm.namn,
            &self.sthlm.handlaggare,
            personnummer,
            "EKB-BESLUT",
        )
        .unwrap()
    }

    pub fn gb_token(&self) -> String {
        self.gb_idp
            .token(&self.gbg.handlaggare, "1480", "EKB-BESLUT")
            .unwrap()
    }

    /// A valid Göteborg request for `personnummer`, as XML text.
    pub fn gb_xml(&self, personnummer: &str) -> String {
        soap::encode_request(&KommunRequest::HamtaArbetssokandeStatus(
            example_fraga(
                &self.gbg.orgnr,
                &self.gbg.namn,
                &self.gbg.handlaggare,
                personnummer,
                "EKB-BESLUT",
            )
            .unwrap(),
        ))
    }

    /// A valid Stockholm request for `personnummer`, as XML text.
    pub fn st_xml(&self, personnummer: &str) -> String {
        soap::encode_request(&KommunRequest::HamtaArbetssokandeStatus(
            self.st_fraga(personnummer),
        ))
    }

    /// Stockholm asks about the registered example person, with `token`.
    pub async fn ask(&self, token: Option<&str>) -> RawAnswer {
        self.st
            .post_raw(token, self.st_xml(sim_af::REGISTRERAD))
            .await
            .unwrap()
    }

    /// Stockholm's question sent with another case worker's token: refused by the policy
    /// (403 HANDLAGGARE_MATCHAR_EJ) before AF is asked.
    pub async fn ask_as_another_case_worker(&self) -> RawAnswer {
        let other = self
            .st_idp
            .token("SE2120000142-HL02", "0180", "EKB-BESLUT")
            .unwrap();
        self.st
            .post_raw(Some(&other), self.st_xml(sim_af::REGISTRERAD))
            .await
            .unwrap()
    }

    pub fn af_data_requests(&self) -> u64 {
        self.inner
            .sim
            .stats
            .data_requests
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The audit store of this stack.
    pub fn audit_store(&self) -> PathBuf {
        self.inner.config.audit.store.clone()
    }

    /// Stops the stack; the audit store stays until the returned directory is dropped.
    pub async fn stop(self) -> tempfile::TempDir {
        self.inner.shutdown().await;
        self.data
    }
}

/// The answer must be a data answer.
pub fn status(a: &RawAnswer) -> HamtaArbetssokandeStatusSvar {
    assert_eq!(
        a.status,
        StatusCode::OK,
        "body: {}",
        String::from_utf8_lossy(&a.body)
    );
    match answer(a) {
        KommunAnswer::Status(s) => s,
        other => panic!("expected a status answer, got {other:?}"),
    }
}

/// The answer must be a data answer of any operation.
pub fn answer(a: &RawAnswer) -> KommunAnswer {
    assert_eq!(
        a.status,
        StatusCode::OK,
        "body: {}",
        String::from_utf8_lossy(&a.body)
    );
    match a.decode().expect("decodable answer") {
        KommunResponse::Answer(ans) => ans,
        other => panic!("expected an answer, got {other:?}"),
    }
}

/// The answer must be a Fault with this HTTP status and Felkod.
pub fn fault(a: &RawAnswer, http: u16, felkod: &str) -> Fel {
    let body = String::from_utf8_lossy(&a.body);
    assert_eq!(a.status.as_u16(), http, "body: {body}");
    assert_eq!(
        a.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/xml; charset=utf-8")
    );
    match a.decode().expect("decodable Fault") {
        KommunResponse::Fault {
            fel: Some(f),
            faultcode,
            ..
        } => {
            assert_eq!(f.felkod, felkod, "body: {body}");
            let expected = if http < 500 {
                "soap:Client"
            } else {
                "soap:Server"
            };
            assert_eq!(faultcode, expected);
            assert!(!f.meddelande.is_empty());
            f
        }
        other => panic!("expected a Fault with Fel, got {other:?}"),
    }
}

/// Every standalone run of 10 or 12 digits (with an optional - or + before the last four)
/// that is a valid personnummer or samordningsnummer.
pub fn personnummer_like(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut hits = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && b[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut digits = String::new();
        while j < b.len()
            && (b[j].is_ascii_digit()
                || ((b[j] == b'-' || b[j] == b'+') && (digits.len() == 6 || digits.len() == 8)))
        {
            if b[j].is_ascii_digit() {
                digits.push(b[j] as char);
            }
            j += 1;
        }
        let standalone = j >= b.len() || !b[j].is_ascii_alphanumeric();
        // rustls logs each TLS 1.3 ticket's random `age_add` (a u32) at trace level: random
        // ten-digit numbers, one in thirty of which is personnummer-shaped by chance.
        let tls_ticket = text[..i].ends_with("age_add: ");
        if standalone && !tls_ticket {
            let candidates: Vec<String> = match digits.len() {
                12 => vec![digits.clone()],
                10 => vec![format!("19{digits}"), format!("20{digits}")],
                _ => vec![],
            };
            if candidates
                .iter()
                .any(|c| brygga::model::Personnummer::parse(c).is_ok())
            {
                hits.push(text[i..j].to_owned());
            }
        }
        i = j.max(i + 1);
    }
    hits
}

/// The admin listener's `path` on the gateway at `admin`, as text.
pub async fn admin_text(admin: std::net::SocketAddr, path: &str) -> String {
    reqwest::get(format!("http://{admin}{path}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A raw TLS connection to `addr`, trusting `ca`, presenting `identity`, offering `alpn`.
pub async fn raw_tls(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    identity: (&std::path::Path, &std::path::Path),
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut cfg = brygga::access::tls::client_config(
        &brygga::access::tls::load_certs(ca).unwrap(),
        Some((
            brygga::access::tls::load_certs(identity.0).unwrap(),
            brygga::access::tls::load_key(identity.1).unwrap(),
        )),
    )
    .unwrap();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    connector
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap()
}

/// A raw connection over TLS as Stockholm's case system, offering `alpn`.
pub async fn tls_as_stockholm(
    s: &Stack,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    raw_tls(
        s.inner.gateway.kommun_addr,
        &certs().join("kommun-ca.pem"),
        (&s.sthlm.cert, &s.sthlm.key),
        alpn,
    )
    .await
}

/// A raw connection over TLS to the `af` listener as AF, offering `alpn`.
pub async fn tls_as_af(
    s: &Stack,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let certs = certs();
    raw_tls(
        s.inner.gateway.af_addr,
        &certs.join("af-ca.pem"),
        (&certs.join("af-client.pem"), &certs.join("af-client.key")),
        alpn,
    )
    .await
}

/// Everything the server sends until it closes, or what came within `wait`.
pub async fn read_answer(
    conn: &mut (impl tokio::io::AsyncRead + Unpin),
    wait: std::time::Duration,
) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, conn.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The example CA `ca` (`kommun-ca`, `af-ca`) of the PKI in `certs`, to issue certificates.
pub fn issuer(certs: &std::path::Path, ca: &str) -> rcgen::Issuer<'static, rcgen::KeyPair> {
    let read = |ext: &str| std::fs::read_to_string(certs.join(format!("{ca}.{ext}"))).unwrap();
    rcgen::Issuer::from_ca_cert_pem(
        &read("pem"),
        rcgen::KeyPair::from_pem(&read("key")).unwrap(),
    )
    .unwrap()
}

/// Reads until the server closes the connection; how long that took, or None when it was
/// still open after `limit`.
pub async fn until_closed(
    conn: &mut (impl tokio::io::AsyncRead + Unpin),
    limit: std::time::Duration,
) -> Option<std::time::Duration> {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}
