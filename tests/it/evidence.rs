//! The evidence holds at its edges: no identity number in anything kept, every request that
//! reaches the SOAP endpoint recorded, the purpose binding what leaves.

use brygga::devkit::sim_af;
use brygga::model::*;

use crate::harness::{self, Stack};

/// Every text kept by the store (audit records, subscriptions, outbox apart from the
/// payloads the law lets travel), as one string.
fn kept_text(store: &std::path::Path) -> String {
    let conn = rusqlite::Connection::open(store).unwrap();
    let mut out = String::new();
    for q in [
        "SELECT body FROM records",
        "SELECT client || ' ' || arende || ' ' || syfte || ' ' || subject FROM subscriptions",
        "SELECT client || ' ' || arende || ' ' || subject || ' ' || coalesce(last_error, '') FROM outbox",
    ] {
        let mut stmt = conn.prepare(q).unwrap();
        for row in stmt.query_map([], |r| r.get::<_, String>(0)).unwrap() {
            out.push_str(&row.unwrap());
            out.push('\n');
        }
    }
    out
}

/// A request of Stockholm's with `f` applied to its XML.
async fn ask_with(
    s: &Stack,
    f: impl FnOnce(String) -> String,
) -> brygga::devkit::client::RawAnswer {
    s.st.post_raw(Some(&s.st_token()), f(s.st_xml(sim_af::REGISTRERAD)))
        .await
        .unwrap()
}

/// A case id, a legal basis, a name or a case worker's HSA-id that embeds a valid
/// personnummer or samordningsnummer is refused, naming the field; nothing of it is kept in
/// the chain, the subscriptions or the outbox.
#[tokio::test]
async fn free_text_that_embeds_an_identity_number_is_refused_and_kept_nowhere() {
    let s = harness::start().await;
    let arende = "EB-2026-004711";
    let cases = [
        (
            "a case id with a personnummer",
            format!("<k:Arendeidentitet>{arende}</k:Arendeidentitet>"),
            "<k:Arendeidentitet>EB-198507099805</k:Arendeidentitet>".to_owned(),
            "Fraga/Arendeidentitet",
        ),
        (
            "a case id with a samordningsnummer written with a dash",
            format!("<k:Arendeidentitet>{arende}</k:Arendeidentitet>"),
            "<k:Arendeidentitet>ärende 701063-2391</k:Arendeidentitet>".to_owned(),
            "Fraga/Arendeidentitet",
        ),
        (
            "a legal basis with one",
            "<k:Lagrum>".to_owned(),
            "<k:Lagrum>198507099805 ".to_owned(),
            "Fraga/Lagrum",
        ),
        (
            "the sender's name with one",
            "<k:Namn>".to_owned(),
            "<k:Namn>197010632391 ".to_owned(),
            "Fraga/Ingivare/Namn",
        ),
        (
            "a case worker's HSA-id with one",
            "<k:Handlaggare>SE2120000142-HL01</k:Handlaggare>".to_owned(),
            "<k:Handlaggare>SE2120000142-198507099805</k:Handlaggare>".to_owned(),
            "Fraga/Ingivare/Handlaggare",
        ),
    ];
    for (what, from, to, field) in &cases {
        let a = ask_with(&s, |x| {
            assert!(x.contains(from.as_str()), "{what}");
            x.replacen(from.as_str(), to, 1)
        })
        .await;
        let fel = harness::fault(&a, 400, "OGILTIGT_FALT");
        assert_eq!(fel.falt.as_deref(), Some(*field), "{what}");
        assert!(
            fel.meddelande.contains("identity number"),
            "{what}: {fel:?}"
        );
    }
    // A subscription under such a case id is not stored.
    let today = time::OffsetDateTime::now_utc().date();
    let f = Fraga {
        arendeidentitet: "EB-198507099805".into(),
        tidsperiod: Tidsperiod::new(today, today + time::Duration::days(3)).unwrap(),
        ..s.st_fraga(sim_af::REGISTRERAD)
    };
    let a =
        s.st.call(&s.st_token(), &KommunRequest::RegistreraPrenumeration(f))
            .await
            .unwrap();
    harness::fault(&a, 400, "OGILTIGT_FALT");
    // A token whose purpose spells one.
    let token = s
        .st_idp
        .token(&s.sthlm.handlaggare, "0180", "X198507099805")
        .unwrap();
    let a = s.ask(Some(&token)).await;
    assert_eq!(a.status.as_u16(), 401);
    assert_eq!(s.af_data_requests(), 0);
    let kept = kept_text(&s.audit_store());
    assert!(
        harness::personnummer_like(&kept).is_empty(),
        "{:?}",
        harness::personnummer_like(&kept)
    );
    assert!(!kept.contains("701063-2391"), "{kept}");
    s.stop().await;
}

/// The legal basis a request states must be one its purpose accepts (whitespace and case
/// aside): "ingen lag alls" is refused with its own Felkod before AF is asked, and the record
/// keeps what was stated, not the configured basis.
#[tokio::test]
async fn the_stated_legal_basis_is_checked_and_kept() {
    let s = harness::start().await;
    let mut fraga = s.st_fraga(sim_af::REGISTRERAD);
    fraga.lagrum = "ingen lag alls".into();
    let a =
        s.st.call(
            &s.st_token(),
            &KommunRequest::HamtaArbetssokandeStatus(fraga),
        )
        .await
        .unwrap();
    let fel = harness::fault(&a, 403, "LAGRUM_EJ_GODTAGET");
    assert_eq!(fel.falt.as_deref(), Some("Fraga/Lagrum"));
    assert_eq!(s.af_data_requests(), 0);
    // Another purpose's basis is not this one's.
    let mut fraga = s.st_fraga(sim_af::REGISTRERAD);
    fraga.lagrum = brygga::devkit::client::example_lagrum("AKT-PLANERING").into();
    harness::fault(
        &s.st
            .call(
                &s.st_token(),
                &KommunRequest::HamtaArbetssokandeStatus(fraga),
            )
            .await
            .unwrap(),
        403,
        "LAGRUM_EJ_GODTAGET",
    );
    // The accepted wording, spaced and cased otherwise, is served; the record says it.
    let mut fraga = s.st_fraga(sim_af::REGISTRERAD);
    let stated = "  11 KAP. 11 a §   socialtjänstlagen;\n5 § förordningen (2008:975)";
    fraga.lagrum = stated.into();
    harness::status(
        &s.st
            .call(
                &s.st_token(),
                &KommunRequest::HamtaArbetssokandeStatus(fraga),
            )
            .await
            .unwrap(),
    );
    let records = harness::audit_records(&s.audit_store());
    let lagrum: Vec<Option<String>> = records.iter().map(|r| r.entry.lagrum.clone()).collect();
    assert_eq!(
        lagrum,
        vec![
            Some("ingen lag alls".to_owned()),
            Some(brygga::devkit::client::example_lagrum("AKT-PLANERING").to_owned()),
            // xs:token collapses the whitespace as the contract reads it.
            Some("11 KAP. 11 a § socialtjänstlagen; 5 § förordningen (2008:975)".to_owned()),
        ]
    );
    assert_eq!(records[0].entry.outcome, "LAGRUM_EJ_GODTAGET");
    s.stop().await;
}

/// Every request that reaches the SOAP endpoint over a verified certificate is a record,
/// whatever its fate: a wrong path or method, a wrong content type, a body too large or too
/// slow. A refused handshake has no identity to record; it is counted by why on `/metrics`.
#[tokio::test]
async fn every_request_over_a_verified_certificate_is_recorded_and_refused_handshakes_counted() {
    use tokio::io::AsyncWriteExt;
    let s = harness::start_custom(
        |c, _| c.limits.body_read_timeout = std::time::Duration::from_millis(300),
        true,
    )
    .await;
    let token = s.st_token();
    let good = s.st_xml(sim_af::REGISTRERAD);
    let mut expected = Vec::new();
    let other_path = brygga::devkit::client::KommunClient::new(
        &s.url.replace("/kommun/v1", "/annat"),
        &harness::certs().join("kommun-ca.pem"),
        Some((&s.sthlm.cert, &s.sthlm.key)),
    )
    .unwrap();
    harness::fault(
        &other_path
            .post_raw(Some(&token), good.clone())
            .await
            .unwrap(),
        404,
        "OKAND_RESURS",
    );
    expected.push("OKAND_RESURS");
    harness::fault(
        &s.st
            .post_with_type(Some(&token), good.clone(), "application/json")
            .await
            .unwrap(),
        415,
        "FEL_MEDIATYP",
    );
    expected.push("FEL_MEDIATYP");
    harness::fault(
        &s.st
            .post_raw(
                Some(&token),
                good.replace("EB-2026-004711", &"x".repeat(300 * 1024)),
            )
            .await
            .unwrap(),
        413,
        "FOR_STOR_BEGARAN",
    );
    expected.push("FOR_STOR_BEGARAN");
    for (method, target, status, felkod) in [
        ("PUT", "/kommun/v1", "405", "METOD_EJ_TILLATEN"),
        ("GET", "/kommun/v1?foo", "404", "OKAND_RESURS"),
    ] {
        let mut tls = harness::tls_as_stockholm(&s, b"http/1.1").await;
        tls.write_all(
            format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let answer = harness::read_answer(&mut tls, std::time::Duration::from_secs(5)).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        expected.push(felkod);
    }
    // A body that stops arriving.
    let mut tls = harness::tls_as_stockholm(&s, b"http/1.1").await;
    tls.write_all(
        format!(
            "POST /kommun/v1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\n\
             Authorization: Bearer {token}\r\nContent-Length: 2000\r\n\r\n<?xml"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let answer = harness::read_answer(&mut tls, std::time::Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    expected.push("LANGSAM_KLIENT");
    // The WSDL is public: no access to record.
    let mut tls = harness::tls_as_stockholm(&s, b"http/1.1").await;
    tls.write_all(b"GET /kommun/v1?wsdl HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(
        harness::read_answer(&mut tls, std::time::Duration::from_secs(5))
            .await
            .starts_with("HTTP/1.1 200")
    );

    let records = harness::audit_records(&s.audit_store());
    let outcomes: Vec<&str> = records.iter().map(|r| r.entry.outcome.as_str()).collect();
    assert_eq!(outcomes, expected);
    for r in &records {
        assert_eq!(r.entry.action, brygga::store::audit::Action::Deny);
        assert_eq!(r.entry.organisation, "212000-0142");
    }

    // Handshakes refused: without a certificate, and with AF's on the municipal listener.
    let ca = harness::certs().join("kommun-ca.pem");
    let none = brygga::devkit::client::KommunClient::new(&s.url, &ca, None).unwrap();
    assert!(none.post_raw(Some(&token), good.clone()).await.is_err());
    let foreign = brygga::devkit::client::KommunClient::new(
        &s.url,
        &ca,
        Some((
            &harness::certs().join("af-client.pem"),
            &harness::certs().join("af-client.key"),
        )),
    )
    .unwrap();
    assert!(foreign.post_raw(Some(&token), good).await.is_err());
    let m = harness::admin_text(s.inner.gateway.admin_addr, "/metrics").await;
    for reason in ["tls_no_certificate", "tls_unknown_ca"] {
        let line = format!(
            "brygga_connections_closed_early_total{{listener=\"kommun\",reason=\"{reason}\"}} 1"
        );
        assert!(m.contains(&line), "{line} in\n{m}");
    }
    assert_eq!(
        harness::audit_records(&s.audit_store()).len(),
        records.len()
    );
    s.stop().await;
}

/// AF is told who asks and why with every person request, as SSBTEK's AF part is, and asked
/// only for what the purpose may see.
#[tokio::test]
async fn af_is_told_who_asks_why_and_under_which_law_and_asked_only_for_what_the_purpose_sees() {
    let s = harness::start().await;
    let uppfoljning = brygga::config::Config::load(&s.files.config)
        .unwrap()
        .syften
        .get("AKT-UPPFOLJNING")
        .unwrap()
        .clone();
    let mut claims = s.st_idp.claims(
        &s.sthlm.handlaggare,
        "0180",
        "AKT-UPPFOLJNING",
        std::time::Duration::from_secs(300),
    );
    claims.enhet = Some("SE2120000142-EKB1".into());
    let token = s.st_idp.sign(&claims).unwrap();
    let ask = |arende: &str| {
        let mut f = s.st_fraga(sim_af::REGISTRERAD);
        f.syfte = "AKT-UPPFOLJNING".into();
        f.lagrum = uppfoljning.lagrum.clone();
        f.arendeidentitet = arende.into();
        f.personuppgiftsbitrade = Some("Exempelbolaget Drift AB".into());
        KommunRequest::HamtaArbetssokandeStatus(f)
    };
    let told = || {
        s.inner
            .sim
            .stats
            .last_asked
            .lock()
            .unwrap()
            .clone()
            .unwrap()
    };

    let answer = s.st.call(&token, &ask("EB-2026-004711")).await.unwrap();
    harness::status(&answer);
    let (fragande, kategorier) = told();
    assert_eq!(fragande.organisationsnummer, "212000-0142");
    assert_eq!(fragande.organisationsnamn, s.sthlm.namn);
    assert_eq!(fragande.handlaggare, s.sthlm.handlaggare);
    assert_eq!(fragande.enhet.as_deref(), Some("SE2120000142-EKB1"));
    assert_eq!(fragande.syfte, "AKT-UPPFOLJNING");
    assert_eq!(fragande.syfte_beskrivning, uppfoljning.beskrivning);
    assert_eq!(fragande.lagrum, uppfoljning.lagrum);
    assert_eq!(
        fragande.personuppgiftsbitrade.as_deref(),
        Some("Exempelbolaget Drift AB")
    );
    // The case as a keyed reference: not the id, stable for the case, another for another.
    let reference = fragande.arendereferens.clone();
    assert!(!reference.contains("EB-2026") && !reference.contains("004711"));
    let mut expected: Vec<String> = uppfoljning
        .kategorier
        .iter()
        .map(|d| d.code().to_owned())
        .collect();
    expected.sort();
    assert_eq!(kategorier, Some(expected.clone()));
    assert!(!expected.contains(&"KONTOR".to_owned()));
    let again = s.st.call(&token, &ask("EB-2026-004711")).await.unwrap();
    harness::status(&again);
    assert_eq!(told().0.arendereferens, reference);
    let other = s.st.call(&token, &ask("EB-2026-000099")).await.unwrap();
    harness::status(&other);
    assert_ne!(told().0.arendereferens, reference);

    // Every person operation carries it, the plan included.
    let plan = KommunRequest::HamtaHandlingsplan(s.st_fraga(sim_af::REGISTRERAD));
    let plan = s.st.call(&s.st_token(), &plan).await.unwrap();
    assert_eq!(plan.status, 200, "{}", String::from_utf8_lossy(&plan.body));
    assert!(matches!(
        harness::answer(&plan),
        KommunAnswer::Handlingsplan(_)
    ));
    assert_eq!(told().0.syfte, "EKB-BESLUT");
    s.stop().await;
}
