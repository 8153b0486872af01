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
