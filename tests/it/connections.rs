//! Connection handling: a peer that connects and says nothing does not keep its connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tokio::io::AsyncReadExt;

use crate::harness;

#[tokio::test]
async fn an_idle_connection_is_closed_at_the_header_deadline() {
    let s = harness::start_custom(
        |c, _| c.limits.header_read_timeout = Duration::from_millis(300),
        true,
    )
    .await;
    let certs = harness::certs();
    let cfg = brygga::tls::client_config(
        &brygga::tls::load_certs(&certs.join("kommun-ca.pem")).unwrap(),
        Some((
            brygga::tls::load_certs(&s.sthlm.cert).unwrap(),
            brygga::tls::load_key(&s.sthlm.key).unwrap(),
        )),
    )
    .unwrap();
    for alpn in [b"http/1.1".to_vec(), b"h2".to_vec()] {
        let mut cfg = cfg.clone();
        cfg.alpn_protocols = vec![alpn.clone()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let tcp = tokio::net::TcpStream::connect(s.inner.gateway.kommun_addr)
            .await
            .unwrap();
        let mut tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 256];
        // Read until the server closes; HTTP/2 sends its settings frame first.
        let closed = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        if alpn == b"h2" {
            // HTTP/2 keeps a silent peer only while it answers keep-alive pings; this one
            // never reads them, so the connection ends at the keep-alive timeout.
            assert!(
                closed.is_ok(),
                "h2: a peer that never answers pings is dropped"
            );
        } else {
            assert!(closed.is_ok(), "http/1.1: closed at the header deadline");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{:?}",
                started.elapsed()
            );
        }
    }
    s.stop().await;
}

/// A slowloris client trickles its request head a byte at a time: it is cut off at the head
/// deadline, while a case system beside it is served.
#[tokio::test]
async fn a_head_trickled_in_is_cut_off_at_the_deadline_while_others_are_served() {
    use tokio::io::AsyncWriteExt;
    let s = harness::start_custom(
        |c, _| c.limits.header_read_timeout = Duration::from_millis(500),
        true,
    )
    .await;
    let certs = harness::certs();
    let mut cfg = brygga::tls::client_config(
        &brygga::tls::load_certs(&certs.join("kommun-ca.pem")).unwrap(),
        Some((
            brygga::tls::load_certs(&s.sthlm.cert).unwrap(),
            brygga::tls::load_key(&s.sthlm.key).unwrap(),
        )),
    )
    .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(s.inner.gateway.kommun_addr)
        .await
        .unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let started = Instant::now();
    let head = b"POST /kommun/v1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let trickle = async {
        for b in head.iter() {
            if tls.write_all(&[*b]).await.is_err() || tls.flush().await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The whole head went out without being cut off: the deadline did not hold.
        false
    };
    let served = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        harness::status(&s.ask(Some(&s.st_token())).await);
    };
    let (cut, ()) = tokio::join!(trickle, served);
    let mut buf = [0u8; 64];
    // Cut off while writing, or closed when read.
    let closed = cut
        || matches!(
            tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        );
    assert!(closed, "the trickling connection was not closed");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    s.stop().await;
}

/// One client certificate holds at most `max_connections_per_certificate` connections; the
/// next is closed after its handshake, others' are not affected, and a closed one frees room.
#[tokio::test]
async fn connections_per_client_certificate_are_capped() {
    use tokio::io::AsyncWriteExt;
    let s = harness::start_custom(|c, _| c.limits.max_connections_per_certificate = 2, true).await;
    let certs = harness::certs();
    let connect = |cert: std::path::PathBuf, key: std::path::PathBuf| {
        let addr = s.inner.gateway.kommun_addr;
        let ca = certs.join("kommun-ca.pem");
        async move {
            let mut cfg = brygga::tls::client_config(
                &brygga::tls::load_certs(&ca).unwrap(),
                Some((
                    brygga::tls::load_certs(&cert).unwrap(),
                    brygga::tls::load_key(&key).unwrap(),
                )),
            )
            .unwrap();
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap()
        }
    };
    // Whether the server still serves this connection: a request gets an HTTP answer.
    async fn served(tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> bool {
        let sent = tls
            .write_all(b"GET /kommun/v1?wsdl HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .is_ok();
        let mut buf = [0u8; 12];
        sent && matches!(
            tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await,
            Ok(Ok(n)) if n > 0 && buf.starts_with(b"HTTP/1.1 200")
        )
    }
    let mut first = connect(s.sthlm.cert.clone(), s.sthlm.key.clone()).await;
    let mut second = connect(s.sthlm.cert.clone(), s.sthlm.key.clone()).await;
    assert!(served(&mut first).await && served(&mut second).await);
    let mut third = connect(s.sthlm.cert.clone(), s.sthlm.key.clone()).await;
    assert!(
        !served(&mut third).await,
        "a third connection with the same certificate"
    );
    // Göteborg's certificate is counted on its own.
    let mut other = connect(s.gbg.cert.clone(), s.gbg.key.clone()).await;
    assert!(served(&mut other).await);
    drop(first);
    // The server notices the close; then there is room again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect(s.sthlm.cert.clone(), s.sthlm.key.clone()).await;
        if served(&mut again).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no room after a connection closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop((second, third, other));
    s.stop().await;
}
