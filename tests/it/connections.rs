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
    for alpn in [b"http/1.1".to_vec(), b"h2".to_vec()] {
        let mut tls = harness::tls_as_stockholm(&s, &alpn).await;
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
    let mut tls = harness::tls_as_stockholm(&s, b"http/1.1").await;
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
            let mut cfg = brygga::access::tls::client_config(
                &brygga::access::tls::load_certs(&ca).unwrap(),
                Some((
                    brygga::access::tls::load_certs(&cert).unwrap(),
                    brygga::access::tls::load_key(&key).unwrap(),
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

/// A body that stops arriving is answered 408 LANGSAM_KLIENT at the body deadline.
#[tokio::test]
async fn a_body_that_stops_arriving_gets_408() {
    use tokio::io::AsyncWriteExt;
    let s = harness::start_custom(
        |c, _| c.limits.body_read_timeout = Duration::from_millis(300),
        true,
    )
    .await;
    let mut tls = harness::tls_as_stockholm(&s, b"http/1.1").await;
    let token = s.st_token();
    let started = Instant::now();
    let head = format!(
        "POST /kommun/v1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\n\
         Authorization: Bearer {token}\r\nContent-Length: 2000\r\n\r\n<?xml version=\"1.0\"?>"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let answer = harness::read_answer(&mut tls, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("LANGSAM_KLIENT"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(s.af_data_requests(), 0);
    s.stop().await;
}

/// Too many header fields, or a head larger than 64 KiB, are refused with 431 before any
/// of it is looked at, and the connection is closed.
#[tokio::test]
async fn too_many_or_too_large_headers_get_431() {
    use tokio::io::AsyncWriteExt;
    let s = harness::start().await;
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge = format!("X-Big: {}\r\n", "a".repeat(70 * 1024));
    for extra in [many, huge] {
        let mut tls = harness::tls_as_stockholm(&s, b"http/1.1").await;
        let head = format!(
            "POST /kommun/v1 HTTP/1.1\r\nHost: localhost\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        // The server may close before it has read all of a large head.
        let _ = tls.write_all(head.as_bytes()).await;
        let _ = tls.flush().await;
        let answer = harness::read_answer(&mut tls, Duration::from_secs(5)).await;
        assert!(
            answer.starts_with("HTTP/1.1 431"),
            "{} header bytes: {}",
            extra.len(),
            &answer[..answer.len().min(200)]
        );
    }
    // The gateway still serves.
    harness::status(&s.ask(Some(&s.st_token())).await);
    s.stop().await;
}

/// HTTP/2: one connection carries at most 100 requests at once. 150 sent at once on one
/// connection are all answered, and AF never sees more than 100 of them at a time.
#[tokio::test]
async fn http2_streams_per_connection_are_capped() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    let s = harness::start_custom(
        |c, sim| {
            c.af.max_connections = 1000;
            sim.faults.latency = Duration::from_millis(300);
        },
        true,
    )
    .await;
    let tls = harness::tls_as_stockholm(&s, b"h2").await;
    let (send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let token = s.st_token();
    let body = Bytes::from(s.st_xml(brygga::devkit::sim_af::REGISTRERAD));
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..150 {
        let mut send = send.clone();
        let req = http::Request::post(format!("https://localhost{}", "/kommun/v1"))
            .header("content-type", "text/xml; charset=utf-8")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(body.clone()))
            .unwrap();
        all.spawn(async move {
            send.ready().await.unwrap();
            let resp = send.send_request(req).await.unwrap();
            let status = resp.status();
            let _ = resp.into_body().collect().await;
            status
        });
    }
    let mut ok = 0;
    while let Some(status) = all.join_next().await {
        assert_eq!(status.unwrap(), 200);
        ok += 1;
    }
    assert_eq!(ok, 150);
    let peak = s
        .inner
        .sim
        .stats
        .peak_in_flight
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(peak <= 100, "AF saw {peak} at once from one connection");
    assert!(peak >= 50, "the requests did overlap: {peak}");
    s.stop().await;
}

/// A peer that opens TCP and never finishes the TLS handshake is closed at the handshake
/// deadline.
#[tokio::test]
async fn a_handshake_that_never_finishes_is_closed_at_its_deadline() {
    use tokio::io::AsyncWriteExt;
    let s = harness::start_custom(
        |c, _| c.limits.tls_handshake_timeout = Duration::from_millis(300),
        true,
    )
    .await;
    for opening in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00][..]] {
        let mut tcp = tokio::net::TcpStream::connect(s.inner.gateway.kommun_addr)
            .await
            .unwrap();
        // Nothing, or the first bytes of a ClientHello and then silence.
        tcp.write_all(opening).await.unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "not closed");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }
    harness::status(&s.ask(Some(&s.st_token())).await);
    s.stop().await;
}

/// One HTTP/1.1 response read off a kept connection: its head, and its body by Content-Length.
async fn read_response(
    conn: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Result<(String, Vec<u8>), String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            Ok(_) => return Err(format!("closed after {} bytes of head", head.len())),
            Err(e) => return Err(e.to_string()),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .ok_or("no content-length")?;
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    Ok((head, body))
}

/// The keep-alive race: a connection the gateway closes just as a client reuses it loses the
/// request, and for a POST the client cannot know whether it was processed. The gateway
/// announces its idle limit (`Keep-Alive: timeout=N`) at least a second below the deadline at
/// which it closes: 200 connections each reused just under the announced time all get their
/// second answer.
#[tokio::test]
async fn a_client_honouring_the_announced_keep_alive_loses_nothing() {
    use tokio::io::AsyncWriteExt;
    let s = harness::start_custom(
        |c, _| {
            c.limits.header_read_timeout = Duration::from_millis(2000);
            c.limits.keep_alive_timeout = Duration::from_secs(1);
        },
        true,
    )
    .await;
    const N: usize = 200;
    let request = b"GET /kommun/v1?wsdl HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut conns = Vec::new();
    for _ in 0..N {
        let mut tls = harness::tls_as_stockholm(&s, b"http/1.1").await;
        tls.write_all(request).await.unwrap();
        let (head, _) = read_response(&mut tls).await.unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("\r\nkeep-alive: timeout=1\r\n"),
            "{head}"
        );
        conns.push((tls, Instant::now()));
    }
    // Each is reused at 950-1000 ms of idleness, measured from its own first answer.
    let mut reuses = tokio::task::JoinSet::new();
    for (i, (mut tls, answered)) in conns.into_iter().enumerate() {
        let idle = Duration::from_millis(950 + (i as u64 * 50 / N as u64));
        reuses.spawn(async move {
            tokio::time::sleep_until((answered + idle).into()).await;
            let sent_after = answered.elapsed();
            tls.write_all(request).await.map_err(|e| e.to_string())?;
            let (head, _) = read_response(&mut tls).await?;
            if !head.starts_with("HTTP/1.1 200") {
                return Err(head);
            }
            Ok::<_, String>(sent_after)
        });
    }
    let mut lost = Vec::new();
    let mut latest = Duration::ZERO;
    while let Some(r) = reuses.join_next().await {
        match r.unwrap() {
            Ok(after) => latest = latest.max(after),
            Err(e) => lost.push(e),
        }
    }
    assert!(lost.is_empty(), "{} of {N} lost: {lost:?}", lost.len());
    assert!(latest >= Duration::from_millis(950), "{latest:?}");
    s.stop().await;
}
