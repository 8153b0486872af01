//! Protocol corners, each refused with its own error: a JWS extension marked critical, SOAP
//! header entries that must be understood, XML that only looks well-formed, HTTP/1.1 without
//! exactly one Host, and 405 answers that name what is allowed — on every listener.

use std::time::Duration;

use brygga::contract::soap::KommunResponse;
use brygga::devkit::sim_af;
use tokio::io::AsyncWriteExt;

use crate::harness::{self, Stack};

/// Stockholm's request with `f` applied to its XML text.
async fn ask_with(
    s: &Stack,
    f: impl FnOnce(String) -> String,
) -> brygga::devkit::client::RawAnswer {
    s.st.post_raw(Some(&s.st_token()), f(s.st_xml(sim_af::REGISTRERAD)))
        .await
        .unwrap()
}

/// The Fault's faultcode and Felkod.
fn faultcode(a: &brygga::devkit::client::RawAnswer) -> (String, String) {
    match a.decode().unwrap() {
        KommunResponse::Fault {
            faultcode,
            fel: Some(fel),
            ..
        } => (faultcode, fel.felkod),
        other => panic!("expected a Fault, got {other:?}"),
    }
}

/// RFC 7515 §4.1.11: a token whose header makes an extension critical is refused, since
/// brygga understands none; the same claims without `crit` are accepted.
#[tokio::test]
async fn a_token_with_a_critical_header_extension_is_refused() {
    let s = harness::start().await;
    let normal = s.st_token();
    let header = jsonwebtoken::decode_header(&normal).unwrap();
    let key =
        jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(&s.sthlm.idp_key).unwrap()).unwrap();
    let claims = s.st_idp.claims(
        &s.sthlm.handlaggare,
        "0180",
        "EKB-BESLUT",
        Duration::from_secs(300),
    );
    for crit in [
        vec!["urn:example:ext".to_owned()],
        vec!["exp".to_owned()],
        vec![],
    ] {
        let mut h = header.clone();
        h.crit = Some(crit.clone());
        let token = jsonwebtoken::encode(&h, &claims, &key).unwrap();
        let a =
            s.st.post_raw(Some(&token), s.st_xml(sim_af::REGISTRERAD))
                .await
                .unwrap();
        let fel = harness::fault(&a, 401, "TOKEN_KRITISK_UTOKNING");
        assert!(fel.meddelande.contains("crit"), "{crit:?}: {fel:?}");
    }
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    harness::status(
        &s.st
            .post_raw(Some(&token), s.st_xml(sim_af::REGISTRERAD))
            .await
            .unwrap(),
    );
    assert_eq!(s.af_data_requests(), 1);
    s.stop().await;
}

/// SOAP 1.1 §4.2.3: a header entry for brygga marked mustUnderstand true, in any lexical
/// form of xs:boolean, gets a `soap:MustUnderstand` Fault; false, or another actor's entry,
/// is ignored; a value that is no boolean is named.
#[tokio::test]
async fn a_header_entry_marked_must_understand_is_refused_in_every_spelling() {
    let s = harness::start().await;
    let with_header = |entry: String| {
        move |xml: String| {
            xml.replacen(
                "<soap:Body>",
                &format!("<soap:Header>{entry}</soap:Header><soap:Body>"),
                1,
            )
        }
    };
    for value in ["1", "true", " true ", "\n1\t", " 1"] {
        let entry =
            format!(r#"<x:Sak xmlns:x="urn:example" soap:mustUnderstand="{value}">a</x:Sak>"#);
        let a = ask_with(&s, with_header(entry)).await;
        assert_eq!(a.status.as_u16(), 400, "{value:?}");
        let (code, felkod) = faultcode(&a);
        assert_eq!(
            (code.as_str(), felkod.as_str()),
            ("soap:MustUnderstand", "OFORSTADD_HEADER"),
            "{value:?}"
        );
    }
    for ignored in [
        r#"<x:Sak xmlns:x="urn:example" soap:mustUnderstand="0">a</x:Sak>"#,
        r#"<x:Sak xmlns:x="urn:example" soap:mustUnderstand="false">a</x:Sak>"#,
        r#"<x:Sak xmlns:x="urn:example">a</x:Sak>"#,
        r#"<x:Sak xmlns:x="urn:example" soap:actor="urn:another" soap:mustUnderstand="1">a</x:Sak>"#,
        // Not the SOAP attribute: no namespace.
        r#"<x:Sak xmlns:x="urn:example" mustUnderstand="1">a</x:Sak>"#,
    ] {
        harness::status(&ask_with(&s, with_header(ignored.to_owned())).await);
    }
    let a = ask_with(
        &s,
        with_header(r#"<x:Sak xmlns:x="urn:example" soap:mustUnderstand="yes"/>"#.to_owned()),
    )
    .await;
    let fel = harness::fault(&a, 400, "OGILTIGT_FALT");
    assert_eq!(fel.falt.as_deref(), Some("Header/Sak/@mustUnderstand"));
    s.stop().await;
}

/// XML that a lenient reader would take: a declaration after the start, a processing
/// instruction named xml, an attribute twice under two prefixes of one namespace, and text
/// straight inside Envelope, Header or Body. Each is refused before the token's case worker
/// is asked about anything, and AF hears nothing.
#[tokio::test]
async fn xml_that_only_looks_well_formed_is_refused() {
    let s = harness::start().await;
    type Edit = Box<dyn FnOnce(String) -> String>;
    let cases: Vec<(&str, Edit, &str, &str)> = vec![
        (
            "whitespace before the declaration",
            Box::new(|x| format!(" {x}")),
            "OGILTIG_XML",
            "very first",
        ),
        (
            "a comment before the declaration",
            Box::new(|x| format!("<!-- c -->{x}")),
            "OGILTIG_XML",
            "very first",
        ),
        (
            "a second declaration inside",
            Box::new(|x| x.replacen("<soap:Body>", "<soap:Body><?xml version=\"1.0\"?>", 1)),
            "OGILTIG_XML",
            "very first",
        ),
        (
            "a processing instruction named XmL",
            Box::new(|x| x.replacen("<soap:Body>", "<soap:Body><?XmL x?>", 1)),
            "OGILTIG_XML",
            "named xml",
        ),
        (
            "an attribute twice by namespace and name",
            Box::new(|x| {
                x.replacen(
                    "<soap:Body>",
                    r#"<soap:Body xmlns:p="urn:x" xmlns:q="urn:x" p:a="1" q:a="2">"#,
                    1,
                )
            }),
            "OGILTIG_XML",
            "appears twice",
        ),
        (
            "text inside Envelope",
            Box::new(|x| x.replacen("<soap:Body>", "stray<soap:Body>", 1)),
            "INTE_SOAP",
            "Envelope",
        ),
        (
            "text inside Body",
            Box::new(|x| x.replacen("</soap:Body>", "stray</soap:Body>", 1)),
            "INTE_SOAP",
            "Body",
        ),
        (
            "text inside Header",
            Box::new(|x| {
                x.replacen(
                    "<soap:Body>",
                    "<soap:Header>stray</soap:Header><soap:Body>",
                    1,
                )
            }),
            "INTE_SOAP",
            "Header",
        ),
    ];
    for (what, edit, felkod, says) in cases {
        let a = ask_with(&s, edit).await;
        let fel = harness::fault(&a, 400, felkod);
        assert!(
            fel.meddelande.contains(says) || fel.falt.as_deref() == Some(says),
            "{what}: {fel:?}"
        );
    }
    assert_eq!(s.af_data_requests(), 0);
    // A byte-order mark and whitespace between elements are fine.
    harness::status(&ask_with(&s, |x| format!("\u{FEFF}{x}")).await);
    s.stop().await;
}

/// RFC 9112 §3.2: an HTTP/1.1 request without Host, or any request with two, is answered
/// 400 naming the Host header, in each listener's own format; HTTP/1.0 may omit it.
#[tokio::test]
async fn http11_without_exactly_one_host_is_refused_on_every_listener() {
    let s = harness::start().await;
    let heads = [
        ("no Host", "HTTP/1.1\r\n"),
        (
            "two Hosts",
            "HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\n",
        ),
        ("two Hosts, HTTP/1.0", "HTTP/1.0\r\nHost: a\r\nHost: b\r\n"),
        (
            "a Host with user info",
            "HTTP/1.1\r\nHost: user@localhost\r\n",
        ),
    ];
    for (what, head) in heads {
        let request = |path: &str| format!("GET {path} {head}Connection: close\r\n\r\n");
        let mut kommun = harness::tls_as_stockholm(&s, b"http/1.1").await;
        kommun
            .write_all(request("/kommun/v1?wsdl").as_bytes())
            .await
            .unwrap();
        let answer = harness::read_answer(&mut kommun, Duration::from_secs(5)).await;
        assert!(answer.contains(" 400 "), "kommun, {what}: {answer}");
        assert!(
            answer.contains("<k:Felkod>FELAKTIG_HTTP</k:Felkod>"),
            "kommun, {what}: {answer}"
        );
        assert!(
            answer.contains("<k:Falt>Host</k:Falt>"),
            "kommun, {what}: {answer}"
        );

        let mut af = harness::tls_as_af(&s, b"http/1.1").await;
        af.write_all(request("/af/v1/handelser").as_bytes())
            .await
            .unwrap();
        let answer = harness::read_answer(&mut af, Duration::from_secs(5)).await;
        assert!(answer.contains(" 400 "), "af, {what}: {answer}");
        assert!(
            answer.contains("\"felkod\":\"FELAKTIG_HTTP\""),
            "af, {what}: {answer}"
        );
        assert!(answer.contains("\"falt\":\"Host\""), "af, {what}: {answer}");

        let mut admin = tokio::net::TcpStream::connect(s.inner.gateway.admin_addr)
            .await
            .unwrap();
        admin
            .write_all(request("/healthz").as_bytes())
            .await
            .unwrap();
        let answer = harness::read_answer(&mut admin, Duration::from_secs(5)).await;
        assert!(answer.contains(" 400 "), "admin, {what}: {answer}");
        assert!(answer.contains("Host"), "admin, {what}: {answer}");
    }
    // HTTP/1.0 without Host is served.
    let mut kommun = harness::tls_as_stockholm(&s, b"http/1.1").await;
    kommun
        .write_all(b"GET /kommun/v1?wsdl HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let answer = harness::read_answer(&mut kommun, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    s.stop().await;
}

/// Every 405 says what is allowed (RFC 9110 §15.5.6): the kommun endpoint GET, HEAD and POST,
/// the af listener POST, the admin listener GET and HEAD; a path that is not there is 404
/// whatever the method.
#[tokio::test]
async fn method_not_allowed_names_what_is_allowed_on_every_listener() {
    let s = harness::start().await;
    let check = |answer: &str, allow: &str, where_: &str| {
        assert!(answer.starts_with("HTTP/1.1 405"), "{where_}: {answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains(&format!("\r\nallow: {}\r\n", allow.to_ascii_lowercase())),
            "{where_}: {answer}"
        );
    };
    let request = |method: &str, path: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    for method in ["PUT", "DELETE", "PATCH"] {
        let mut kommun = harness::tls_as_stockholm(&s, b"http/1.1").await;
        kommun
            .write_all(request(method, "/kommun/v1").as_bytes())
            .await
            .unwrap();
        check(
            &harness::read_answer(&mut kommun, Duration::from_secs(5)).await,
            "GET, HEAD, POST",
            "kommun",
        );
    }
    for method in ["GET", "PUT"] {
        let mut af = harness::tls_as_af(&s, b"http/1.1").await;
        af.write_all(request(method, "/af/v1/handelser").as_bytes())
            .await
            .unwrap();
        check(
            &harness::read_answer(&mut af, Duration::from_secs(5)).await,
            "POST",
            "af",
        );
    }
    for method in ["POST", "DELETE"] {
        let mut admin = tokio::net::TcpStream::connect(s.inner.gateway.admin_addr)
            .await
            .unwrap();
        admin
            .write_all(request(method, "/metrics").as_bytes())
            .await
            .unwrap();
        check(
            &harness::read_answer(&mut admin, Duration::from_secs(5)).await,
            "GET, HEAD",
            "admin",
        );
        let mut admin = tokio::net::TcpStream::connect(s.inner.gateway.admin_addr)
            .await
            .unwrap();
        admin
            .write_all(request(method, "/nothing-here").as_bytes())
            .await
            .unwrap();
        let answer = harness::read_answer(&mut admin, Duration::from_secs(5)).await;
        assert!(
            answer.starts_with("HTTP/1.1 404"),
            "admin {method}: {answer}"
        );
    }
    s.stop().await;
}

/// HEAD is answered wherever GET is (RFC 9110 §9.3.2): the same head, its length, no body.
#[tokio::test]
async fn head_is_answered_wherever_get_is() {
    let s = harness::start().await;
    let request = |method: &str, path: &str| {
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    };
    let length = |answer: &str| -> usize {
        answer
            .to_ascii_lowercase()
            .split("\r\ncontent-length: ")
            .nth(1)
            .and_then(|r| r.split("\r\n").next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no length: {answer}"))
    };
    let body = |answer: &str| answer.split("\r\n\r\n").nth(1).unwrap_or("").len();
    for path in ["/kommun/v1?wsdl", "/kommun/v1?xsd=brygga-kommun-v1.xsd"] {
        let mut get = harness::tls_as_stockholm(&s, b"http/1.1").await;
        get.write_all(request("GET", path).as_bytes())
            .await
            .unwrap();
        let got = harness::read_answer(&mut get, Duration::from_secs(5)).await;
        let mut head = harness::tls_as_stockholm(&s, b"http/1.1").await;
        head.write_all(request("HEAD", path).as_bytes())
            .await
            .unwrap();
        let headed = harness::read_answer(&mut head, Duration::from_secs(5)).await;
        assert!(headed.starts_with("HTTP/1.1 200"), "{path}: {headed}");
        assert_eq!(length(&headed), length(&got), "{path}");
        assert_eq!(length(&got), body(&got), "{path}");
        assert_eq!(body(&headed), 0, "{path}: {headed}");
    }
    for path in ["/healthz", "/metrics", "/status"] {
        let mut admin = tokio::net::TcpStream::connect(s.inner.gateway.admin_addr)
            .await
            .unwrap();
        admin
            .write_all(request("HEAD", path).as_bytes())
            .await
            .unwrap();
        let headed = harness::read_answer(&mut admin, Duration::from_secs(5)).await;
        assert!(headed.starts_with("HTTP/1.1 200"), "{path}: {headed}");
        assert!(length(&headed) > 0, "{path}: {headed}");
        assert_eq!(body(&headed), 0, "{path}: {headed}");
    }
    s.stop().await;
}

/// The request target names one authority, the one in Host, and never with user@.
#[tokio::test]
async fn a_request_target_naming_another_authority_or_userinfo_is_refused() {
    let s = harness::start().await;
    for (what, line) in [
        (
            "absolute form, another host",
            "GET https://elsewhere.example/kommun/v1?wsdl HTTP/1.1\r\nHost: localhost\r\n",
        ),
        (
            "absolute form with userinfo",
            "GET https://user@localhost/kommun/v1?wsdl HTTP/1.1\r\nHost: localhost\r\n",
        ),
    ] {
        let mut kommun = harness::tls_as_stockholm(&s, b"http/1.1").await;
        kommun
            .write_all(format!("{line}Connection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let answer = harness::read_answer(&mut kommun, Duration::from_secs(5)).await;
        assert!(answer.contains(" 400 "), "{what}: {answer}");
        assert!(answer.contains("FELAKTIG_HTTP"), "{what}: {answer}");
    }
    // The same authority in absolute form is served.
    let mut kommun = harness::tls_as_stockholm(&s, b"http/1.1").await;
    kommun
        .write_all(b"GET https://localhost/kommun/v1?wsdl HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = harness::read_answer(&mut kommun, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // HTTP/2: an :authority with userinfo.
    let tls = harness::tls_as_stockholm(&s, b"h2").await;
    let (mut send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake::<_, http_body_util::Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://user@localhost/kommun/v1?wsdl")
        .body(http_body_util::Empty::new())
        .unwrap();
    let r = send.send_request(req).await.unwrap();
    assert_eq!(r.status(), 400);
    s.stop().await;
}
