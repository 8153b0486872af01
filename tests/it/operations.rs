//! Every operation of interface v1 through the gateway and the AF simulator, and the
//! published WSDL.

use brygga::devkit::sim_af;
use brygga::model::*;

use crate::harness::{self, answer, fault};

fn example_answer(name: &str) -> KommunAnswer {
    let bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schemas/kommun/v1/examples")
            .join(name),
    )
    .unwrap();
    match brygga::contract::soap::decode_response(&bytes, &Default::default()).unwrap() {
        brygga::contract::soap::KommunResponse::Answer(a) => a,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn benefit_decisions_and_handlingsplan_for_the_example_person() {
    let s = harness::start().await;
    let token = s.st_token();
    let fraga = s.st_fraga(sim_af::REGISTRERAD);
    let id = fraga.korrelationsid;
    let got = answer(
        &s.st
            .call(&token, &KommunRequest::HamtaErsattningsbeslut(fraga))
            .await
            .unwrap(),
    );
    let KommunAnswer::Ersattningsbeslut(mut expected) =
        example_answer("HamtaErsattningsbeslut.response.xml")
    else {
        panic!()
    };
    expected.korrelationsid = id;
    assert_eq!(
        got,
        KommunAnswer::Ersattningsbeslut(expected),
        "exactly the published example"
    );

    let fraga = s.st_fraga(sim_af::REGISTRERAD);
    let id = fraga.korrelationsid;
    let got = answer(
        &s.st
            .call(&token, &KommunRequest::HamtaHandlingsplan(fraga))
            .await
            .unwrap(),
    );
    let KommunAnswer::Handlingsplan(mut expected) =
        example_answer("HamtaHandlingsplan.response.xml")
    else {
        panic!()
    };
    expected.korrelationsid = id;
    assert_eq!(got, KommunAnswer::Handlingsplan(expected));

    // A person AF does not know has neither.
    let KommunAnswer::Handlingsplan(none) = answer(
        &s.st
            .call(
                &token,
                &KommunRequest::HamtaHandlingsplan(s.st_fraga(sim_af::OKAND)),
            )
            .await
            .unwrap(),
    ) else {
        panic!()
    };
    assert!(none.handlingsplan.is_none());
    let KommunAnswer::Ersattningsbeslut(none) = answer(
        &s.st
            .call(
                &token,
                &KommunRequest::HamtaErsattningsbeslut(s.st_fraga(sim_af::OKAND)),
            )
            .await
            .unwrap(),
    ) else {
        panic!()
    };
    assert!(none.ersattningar.beslut.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn an_activity_plan_is_received_then_updated() {
    let s = harness::start().await;
    let token = s
        .st_idp
        .token(&s.sthlm.handlaggare, "0180", "AKT-PLANERING")
        .unwrap();
    let mut fraga = s.st_fraga(sim_af::REGISTRERAD);
    fraga.syfte = "AKT-PLANERING".into();
    fraga.lagrum = brygga::devkit::client::example_lagrum("AKT-PLANERING").into();
    let plan = brygga::devkit::client::example_plan().unwrap();
    let req = KommunRequest::AnmalAktivitetsplan(fraga.clone(), plan.clone());
    let KommunAnswer::Aktivitetsplan(first) = answer(&s.st.call(&token, &req).await.unwrap())
    else {
        panic!()
    };
    assert_eq!(first.kvittens.status, KvittensStatus::Mottagen);
    assert!(first.kvittens.referens.starts_with("AKP-"));
    let KommunAnswer::Aktivitetsplan(second) = answer(&s.st.call(&token, &req).await.unwrap())
    else {
        panic!()
    };
    assert_eq!(second.kvittens.status, KvittensStatus::Uppdaterad);
    assert_eq!(second.kvittens.referens, first.kvittens.referens);

    // More than 40 hours a week at the same time is refused before AF.
    let before = s.af_data_requests();
    let mut heavy = plan.clone();
    heavy.aktiviteter[0].timmar_per_vecka = Tiondelstimmar(300);
    let xml = brygga::contract::soap::encode_request(&KommunRequest::AnmalAktivitetsplan(
        fraga.clone(),
        heavy,
    ));
    let f = fault(
        &s.st.post_raw(Some(&token), xml).await.unwrap(),
        400,
        "OGILTIGT_FALT",
    );
    assert_eq!(f.falt.as_deref(), Some("Aktivitetsplan"));
    assert!(f.meddelande.contains("55 hours"), "{}", f.meddelande);
    // An activity ending before it starts names the activity.
    let good = brygga::contract::soap::encode_request(&req);
    let reversed = good.replacen("<k:Tom>2027-05-31</k:Tom>", "<k:Tom>2026-11-01</k:Tom>", 1);
    let f = fault(
        &s.st.post_raw(Some(&token), reversed).await.unwrap(),
        400,
        "OGILTIGT_FALT",
    );
    assert_eq!(f.falt.as_deref(), Some("Aktivitetsplan/Aktivitet[1]"));
    let unknown_kind = good.replacen("<k:Slag>SPRAK</k:Slag>", "<k:Slag>YOGA</k:Slag>", 1);
    let f = fault(
        &s.st.post_raw(Some(&token), unknown_kind).await.unwrap(),
        400,
        "OGILTIGT_FALT",
    );
    assert_eq!(f.falt.as_deref(), Some("Aktivitetsplan/Aktivitet[1]/Slag"));
    assert!(
        f.meddelande.contains("OKA_FORMAGA_ARBETE_STUDIER"),
        "the message lists the codes"
    );
    assert_eq!(s.af_data_requests(), before);

    // Göteborg may not report plans.
    let gb_token = s
        .gb_idp
        .token(&s.gbg.handlaggare, "1480", "EKB-BESLUT")
        .unwrap();
    let gb = good
        .replace("162120000142", "162120001355")
        .replace("SE2120000142-HL01", &s.gbg.handlaggare)
        .replace("AKT-PLANERING", "EKB-BESLUT");
    fault(
        &s.gb.post_raw(Some(&gb_token), gb).await.unwrap(),
        403,
        "OPERATION_EJ_TILLATEN",
    );
    s.stop().await;
}

#[tokio::test]
async fn ping_reports_af_health() {
    let s = harness::start().await;
    let id = uuid::Uuid::new_v4();
    let KommunAnswer::Ping(p) = answer(
        &s.st
            .call(&s.st_token(), &KommunRequest::Ping(id))
            .await
            .unwrap(),
    ) else {
        panic!()
    };
    assert_eq!(p.korrelationsid, id);
    assert_eq!(p.tjanster.len(), 1);
    assert_eq!(p.tjanster[0].status, TjanstStatus::Ok);
    s.stop().await;

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let s = harness::start_custom(
        |c, _| {
            c.af.base_url = format!("https://localhost:{port}");
            c.af.token_url = format!("https://localhost:{port}/oauth2/token");
        },
        false,
    )
    .await;
    let KommunAnswer::Ping(p) = answer(
        &s.st
            .call(&s.st_token(), &KommunRequest::Ping(id))
            .await
            .unwrap(),
    ) else {
        panic!()
    };
    assert_eq!(
        p.tjanster[0].status,
        TjanstStatus::EjNabar,
        "Ping answers even when AF is down"
    );
    s.stop().await;
}

#[tokio::test]
async fn the_wsdl_and_its_xsd_are_published() {
    let s = harness::start().await;
    let ca = brygga::access::tls::load_certs(&s.files.certs.join("kommun-ca.pem")).unwrap();
    let identity = brygga::config::CertAndKey {
        chain: brygga::access::tls::load_certs(&s.sthlm.cert).unwrap(),
        key: brygga::access::tls::load_key(&s.sthlm.key).unwrap(),
    };
    let cfg =
        brygga::access::tls::client_config(&ca, Some((identity.chain, identity.key))).unwrap();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .build()
        .unwrap();
    let wsdl = http.get(format!("{}?wsdl", s.url)).send().await.unwrap();
    assert_eq!(wsdl.status(), 200);
    let text = wsdl.text().await.unwrap();
    assert!(
        text.contains("schemaLocation=\"v1?xsd=brygga-kommun-v1.xsd\""),
        "the import points at the gateway"
    );
    for op in Operation::ALL {
        assert!(text.contains(op.name()));
    }
    let xsd = http
        .get(format!("{}?xsd=brygga-kommun-v1.xsd", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(xsd.status(), 200);
    assert!(
        xsd.text()
            .await
            .unwrap()
            .contains("targetNamespace=\"urn:se:brygga:kommun:v1\"")
    );
    let other = http
        .get(format!("{}?xsd=../../etc/passwd", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    s.stop().await;
}
