//! Floods before TLS: connections that never send a ClientHello, or send it a byte at a time,
//! from one address or many, must not lock identified municipalities (or AF) out. The
//! attackers come from other loopback addresses (127.0.0.2 and up) than the municipalities
//! (127.0.0.1), as they would from other hosts.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brygga::devkit::client::KommunClient;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::harness::{self, Stack};

/// One flood at a time: each opens thousands of connections on a shared 2-core machine.
static ONE_FLOOD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::new(from.into(), 0)).ok()?;
    tokio::time::timeout(Duration::from_secs(2), socket.connect(to))
        .await
        .ok()?
        .ok()
}

/// Whether the server has closed this connection (EOF or reset), looking only briefly.
async fn closed_by_server(c: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_millis(5), c.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// The first flight of a real TLS client: a ClientHello, to be trickled in.
fn client_hello() -> Vec<u8> {
    let cfg = brygga::access::tls::client_config(
        &brygga::access::tls::load_certs(&harness::certs().join("kommun-ca.pem")).unwrap(),
        None,
    )
    .unwrap();
    let mut conn = rustls::ClientConnection::new(
        Arc::new(cfg),
        rustls_pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

/// Holds as many idle connections to `to` from `from` as it can, opening `per_round` more
/// each round and forgetting those the server closed, until `until`; then says how many
/// were still open at the end.
async fn hold_idle(from: Ipv4Addr, to: SocketAddr, per_round: usize, until: Instant) -> usize {
    let mut held: Vec<TcpStream> = Vec::new();
    while Instant::now() < until {
        for _ in 0..per_round {
            if let Some(c) = connect_from(from, to).await {
                held.push(c);
            }
        }
        let mut still = Vec::with_capacity(held.len());
        for mut c in held {
            if !closed_by_server(&mut c).await {
                still.push(c);
            }
        }
        held = still;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the server's last closes arrive before counting what is held.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut still = 0;
    for mut c in held {
        if !closed_by_server(&mut c).await {
            still += 1;
        }
    }
    still
}

/// Trickles a ClientHello a byte every 100 ms over `n` connections from `from`, until `until`.
async fn trickle_hellos(from: Ipv4Addr, to: SocketAddr, n: usize, until: Instant) {
    let hello = Arc::new(client_hello());
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let hello = hello.clone();
        set.spawn(async move {
            while Instant::now() < until {
                let Some(mut c) = connect_from(from, to).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                for b in hello.iter() {
                    if Instant::now() >= until || c.write_all(&[*b]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// Each municipality asks `n` times, each time on a new connection (a new handshake), and AF
/// posts `n` batches likewise: how many were answered, and the slowest.
async fn served_meanwhile(s: &Arc<Stack>, n: usize) -> (usize, Duration) {
    let certs = harness::certs();
    let mut answered = 0;
    let mut slowest = Duration::ZERO;
    for _ in 0..n {
        let started = Instant::now();
        let st = KommunClient::new(
            &s.url,
            &certs.join("kommun-ca.pem"),
            Some((&s.sthlm.cert, &s.sthlm.key)),
        )
        .unwrap();
        if st
            .post_raw(
                Some(&s.st_token()),
                s.st_xml(brygga::devkit::sim_af::REGISTRERAD),
            )
            .await
            .is_ok_and(|a| a.status == 200)
        {
            answered += 1;
        }
        let gb = KommunClient::new(
            &s.url,
            &certs.join("kommun-ca.pem"),
            Some((&s.gbg.cert, &s.gbg.key)),
        )
        .unwrap();
        if gb
            .post_raw(
                Some(&s.gb_token()),
                s.gb_xml(brygga::devkit::sim_af::REGISTRERAD),
            )
            .await
            .is_ok_and(|a| a.status == 200)
        {
            answered += 1;
        }
        let af = KommunClient::new(
            &s.inner.af_url(),
            &certs.join("af-ca.pem"),
            Some((&certs.join("af-client.pem"), &certs.join("af-client.key"))),
        )
        .unwrap();
        let today = time::OffsetDateTime::now_utc().date();
        let batch = json!({"handelser": [{
            "handelseId": uuid::Uuid::new_v4().to_string(),
            "typ": "AVAKTUALISERAD",
            "personnummer": brygga::devkit::sim_af::AVAKTUALISERAD,
            "tidpunkt": format!("{today}T11:20:09Z"),
            "avaktualisering": {"datum": today.to_string(), "orsakKod": "ARB", "orsakText": "Fått arbete"}
        }]});
        if af
            .post_with_type(None, batch.to_string(), "application/json")
            .await
            .is_ok_and(|a| a.status == 202)
        {
            answered += 1;
        }
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (answered, slowest)
}

/// The metric `name` with every label given in `labels`, summed.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// 10 100 idle connections once filled `limits.max_connections` (counted from accept) and
/// locked every municipality out. Now an idle connection from 127.0.0.2 holds only a
/// handshake place, at most `max_handshakes_per_address` (128) of them at a time, for at most
/// the handshake deadline; the municipalities and AF, each on new connections, are served
/// throughout — with `max_connections` at 50, far below what the flood opens.
#[tokio::test]
async fn idle_connections_and_slow_hellos_from_one_address_lock_nobody_out() {
    let _one = ONE_FLOOD.lock().await;
    let s = Arc::new(
        harness::start_custom(
            |c, _| {
                c.limits.max_connections = 50;
                // Long, so the flood's connections are not simply timed out.
                c.limits.tls_handshake_timeout = Duration::from_secs(10);
            },
            true,
        )
        .await,
    );
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let until = Instant::now() + Duration::from_secs(4);
    let kommun = s.inner.gateway.kommun_addr;
    let af = s.inner.gateway.af_addr;
    let idle_kommun = tokio::spawn(hold_idle(attacker, kommun, 200, until));
    let idle_af = tokio::spawn(hold_idle(attacker, af, 200, until));
    let slow = tokio::spawn(trickle_hellos(attacker, kommun, 100, until));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (answered, slowest) = served_meanwhile(&s, 10).await;
    let held_kommun = idle_kommun.await.unwrap();
    let held_af = idle_af.await.unwrap();
    slow.await.unwrap();
    assert_eq!(answered, 30, "every request on a new connection answered");
    assert!(slowest < Duration::from_secs(3), "{slowest:?}");
    // What one address holds before TLS: at most its share.
    assert!(held_kommun <= 128, "{held_kommun} held on kommun");
    assert!(held_af <= 128, "{held_af} held on af");
    let m = harness::admin_text(s.inner.gateway.admin_addr, "/metrics").await;
    assert!(
        metric(
            &m,
            "brygga_connections_closed_early_total",
            &["listener=\"kommun\"", "reason=\"address_handshakes\""]
        ) + metric(
            &m,
            "brygga_connections_closed_early_total",
            &["listener=\"kommun\"", "reason=\"address_rate\""]
        ) > 0.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "brygga_connections_closed_early_total",
            &["reason=\"max_connections\""]
        ),
        0.0
    );
    eprintln!(
        "one address held {held_kommun} (kommun) and {held_af} (af) idle connections; slowest served request {slowest:?}"
    );
    if let Ok(s) = Arc::try_unwrap(s) {
        s.stop().await;
    }
}

/// From many addresses at once the handshake places run out: then the oldest handshake gives
/// way to the newest, so a client that completes its handshake in milliseconds is still
/// served while 40 addresses hold idle connections.
#[tokio::test]
async fn a_flood_from_many_addresses_gives_way_to_handshakes_that_finish() {
    let _one = ONE_FLOOD.lock().await;
    let s = Arc::new(
        harness::start_custom(
            |c, _| {
                c.limits.max_handshakes = 200;
                c.limits.max_handshakes_per_address = 50;
                c.limits.tls_handshake_timeout = Duration::from_secs(10);
            },
            true,
        )
        .await,
    );
    let until = Instant::now() + Duration::from_secs(4);
    let mut floods = tokio::task::JoinSet::new();
    for i in 0..40u8 {
        let from = Ipv4Addr::new(127, 0, 1, 10 + i);
        floods.spawn(hold_idle(from, s.inner.gateway.kommun_addr, 10, until));
        floods.spawn(hold_idle(from, s.inner.gateway.af_addr, 10, until));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (answered, slowest) = served_meanwhile(&s, 10).await;
    let mut held = 0;
    while let Some(n) = floods.join_next().await {
        held += n.unwrap();
    }
    assert_eq!(answered, 30);
    assert!(slowest < Duration::from_secs(3), "{slowest:?}");
    // Never more than the places of both listeners.
    assert!(held <= 400, "{held}");
    let m = harness::admin_text(s.inner.gateway.admin_addr, "/metrics").await;
    assert!(
        metric(
            &m,
            "brygga_connections_closed_early_total",
            &["reason=\"handshake_evicted\""]
        ) > 0.0,
        "{m}"
    );
    if let Ok(s) = Arc::try_unwrap(s) {
        s.stop().await;
    }
}

/// The gateway process's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// HTTP/2 streams held at window 0: a client that asks for the WSDL on every stream and never
/// lets an answer through once pinned ~10 KB a stream (+181 MiB at 20 000 streams). The WSDL
/// is now shared bytes, and what one connection and one certificate may hold unsent is
/// bounded: past it the connection is closed. `brygga serve` (its own process, so its
/// memory is its own) is attacked with 200 connections × 100 streams of one certificate.
#[tokio::test]
async fn http2_streams_held_at_window_zero_do_not_pin_memory() {
    pin_answers_with_stream_window(0).await;
}

/// The same with a window of one byte: h2 then takes every answer at once and buffers what the
/// window does not let through. Answers stay counted until written, so this is bounded too
/// (before: nothing was counted once handed to h2, and every connection stayed).
#[tokio::test]
async fn http2_streams_held_at_window_one_do_not_pin_memory() {
    pin_answers_with_stream_window(1).await;
}

async fn pin_answers_with_stream_window(window: u32) {
    use http_body_util::Empty;
    let _one = ONE_FLOOD.lock().await;
    let setup = crate::audit::ServeSetup::start(Duration::ZERO, |store, port| {
        crate::audit::config_with_store(store, Some(port))
    })
    .await;
    let mut gw = crate::audit::spawn_gateway(setup.config_file.path());
    let pid = gw.child.id();
    let addr: SocketAddr = {
        let url = reqwest::Url::parse(&gw.url).unwrap();
        format!("127.0.0.1:{}", url.port().unwrap())
            .parse()
            .unwrap()
    };
    // Warm: the WSDL served once, TLS and HTTP/2 set up.
    let client = setup.case_system(&gw.url);
    let _ = client.post_raw(Some(&setup.token), "x").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid);

    const CONNECTIONS: usize = 200;
    const STREAMS: usize = 100;
    let certs = harness::certs();
    let mut held = Vec::new();
    let mut closed = 0;
    for _ in 0..CONNECTIONS {
        let tls = harness::raw_tls(
            addr,
            &certs.join("kommun-ca.pem"),
            (&setup.sthlm.cert, &setup.sthlm.key),
            b"h2",
        )
        .await;
        let Ok((send, conn)) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                // Lets at most `window` bytes of an answer's body through.
                .initial_stream_window_size(window)
                .adaptive_window(false)
                .handshake::<_, Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(tls))
                .await
        else {
            closed += 1;
            continue;
        };
        let conn = tokio::spawn(conn);
        let mut answers = tokio::task::JoinSet::new();
        for _ in 0..STREAMS {
            let mut send = send.clone();
            let req = http::Request::get("https://localhost/kommun/v1?wsdl")
                .body(Empty::new())
                .unwrap();
            answers.spawn(async move {
                send.ready().await.ok()?;
                // The head arrives; the body never can. Held, unread.
                send.send_request(req).await.ok()
            });
        }
        let mut heads = Vec::new();
        while let Some(a) = answers.join_next().await {
            if let Some(r) = a.unwrap() {
                heads.push(r);
            }
        }
        if heads.len() < STREAMS {
            closed += 1;
        }
        held.push((send, conn, heads));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = rss_kib(pid);
    let alive = held.iter().filter(|(_, c, _)| !c.is_finished()).count();
    let streams_held: usize = held
        .iter()
        .filter(|(_, c, _)| !c.is_finished())
        .map(|(_, _, h)| h.len())
        .sum();
    // The gateway still serves.
    let a = client
        .call(
            &setup.token,
            &brygga::model::KommunRequest::HamtaArbetssokandeStatus(
                brygga::devkit::client::example_fraga(
                    &setup.sthlm.orgnr,
                    &setup.sthlm.namn,
                    &setup.sthlm.handlaggare,
                    brygga::devkit::sim_af::REGISTRERAD,
                    "EKB-BESLUT",
                )
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();
    let grew_mib = (during.saturating_sub(before)) as f64 / 1024.0;
    eprintln!(
        "window {window}: RSS {before} KiB -> {during} KiB (+{grew_mib:.1} MiB); {alive} of {CONNECTIONS} connections and {streams_held} streams still held, {closed} closed by the gateway"
    );
    // 16 MiB of unsent answers per certificate, and what the streams and tasks cost beside.
    assert!(grew_mib < 40.0, "+{grew_mib:.1} MiB");
    assert!(alive < CONNECTIONS / 4, "{alive} connections still held");
}
