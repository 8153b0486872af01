//! Purpose-bound access: answers minimised to what the purpose may see, purposes narrowed per
//! operation, and case workers limited to the client's own HSA-id prefixes.

use brygga::devkit::sim_af;
use brygga::model::*;

use crate::harness::{self, answer, fault, status};

#[tokio::test]
async fn a_purpose_that_may_not_see_benefit_decisions_gets_an_answer_without_them() {
    let s = harness::start().await;
    let token = s
        .st_idp
        .token(&s.sthlm.handlaggare, "0180", "AKT-PLANERING")
        .unwrap();
    let mut fraga = s.st_fraga(sim_af::REGISTRERAD);
    fraga.syfte = "AKT-PLANERING".into();
    fraga.lagrum = brygga::devkit::client::example_lagrum("AKT-PLANERING").into();
    let KommunAnswer::Ersattningsbeslut(e) = answer(
        &s.st
            .call(&token, &KommunRequest::HamtaErsattningsbeslut(fraga))
            .await
            .unwrap(),
    ) else {
        panic!()
    };
    assert!(
        e.ersattningar.beslut.is_empty()
            && e.ersattningar.senaste_utbetalning.is_none()
            && e.ersattningar.aktivitetsstod_dagar.is_none()
    );
    // The same question for deciding on ekonomiskt bistånd sees them.
    let KommunAnswer::Ersattningsbeslut(e) = answer(
        &s.st
            .call(
                &s.st_token(),
                &KommunRequest::HamtaErsattningsbeslut(s.st_fraga(sim_af::REGISTRERAD)),
            )
            .await
            .unwrap(),
    ) else {
        panic!()
    };
    assert!(!e.ersattningar.beslut.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn follow_up_sees_registration_and_reports_but_not_category_office_or_a_kassa() {
    let s = harness::start().await;
    let token = s
        .st_idp
        .token(&s.sthlm.handlaggare, "0180", "AKT-UPPFOLJNING")
        .unwrap();
    let mut fraga = s.st_fraga(sim_af::REGISTRERAD);
    fraga.syfte = "AKT-UPPFOLJNING".into();
    fraga.lagrum = brygga::devkit::client::example_lagrum("AKT-UPPFOLJNING").into();
    let st = status(
        &s.st
            .call(&token, &KommunRequest::HamtaArbetssokandeStatus(fraga))
            .await
            .unwrap(),
    )
    .status;
    assert!(st.kand_av_af && st.inskriven && st.inskrivningsdatum.is_some());
    assert!(st.senaste_aktivitetsrapport.is_some());
    assert!(st.sokandekategori.is_none() && st.omfattning_procent.is_none());
    assert!(st.kontor.is_none() && st.a_kassa.is_none());
    // Its handlingsplan has the plan and activities but not the office.
    let mut fraga = s.st_fraga(sim_af::REGISTRERAD);
    fraga.syfte = "AKT-UPPFOLJNING".into();
    fraga.lagrum = brygga::devkit::client::example_lagrum("AKT-UPPFOLJNING").into();
    let KommunAnswer::Handlingsplan(h) = answer(
        &s.st
            .call(&token, &KommunRequest::HamtaHandlingsplan(fraga))
            .await
            .unwrap(),
    ) else {
        panic!()
    };
    let plan = h.handlingsplan.expect("plan");
    assert!(!plan.aktiviteter.is_empty() && plan.kontor.is_none());
    s.stop().await;
}

#[tokio::test]
async fn a_purpose_not_allowed_for_the_operation_is_refused() {
    let s = harness::start().await;
    let mut fraga = s.st_fraga(sim_af::REGISTRERAD);
    fraga.syfte = "EKB-BESLUT".into();
    let req =
        KommunRequest::AnmalAktivitetsplan(fraga, brygga::devkit::client::example_plan().unwrap());
    let f = fault(
        &s.st.call(&s.st_token(), &req).await.unwrap(),
        403,
        "SYFTE_EJ_TILLATET",
    );
    assert!(
        f.meddelande.contains("AnmalAktivitetsplan"),
        "{}",
        f.meddelande
    );
    assert_eq!(s.af_data_requests(), 0);
    s.stop().await;
}

#[tokio::test]
async fn a_case_worker_outside_the_clients_prefixes_is_refused() {
    let s = harness::start().await;
    let outsider = "SE2321000016-4HK5";
    let token = s.st_idp.token(outsider, "0180", "EKB-BESLUT").unwrap();
    let xml = s
        .st_xml(sim_af::REGISTRERAD)
        .replace(&s.sthlm.handlaggare, outsider);
    let f = fault(
        &s.st.post_raw(Some(&token), xml).await.unwrap(),
        403,
        "HANDLAGGARE_EJ_BEHORIG",
    );
    assert_eq!(f.falt.as_deref(), Some("Fraga/Ingivare/Handlaggare"));
    assert_eq!(s.af_data_requests(), 0);
    s.stop().await;
}

#[test]
fn check_config_names_unknown_categories_and_bad_narrowing() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("config/example.toml"))
        .unwrap()
        .replacen("\"ERSATTNINGAR\"]", "\"LONER\"]", 1)
        .replace(
            "AnmalAktivitetsplan = [\"AKT-PLANERING\"]",
            "AnmalAktivitetsplan = [\"EKB-OKAND\"]",
        );
    let file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile_in(root.join("config"))
        .unwrap();
    std::fs::write(file.path(), text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_brygga"))
        .args(["check-config", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("syften[0].kategorier[7]: 'LONER' is not a data category"),
        "{text}"
    );
    assert!(text.contains("clients[0].syften_per_operation.AnmalAktivitetsplan: 'EKB-OKAND' is not among this client's syften"), "{text}");
}

#[tokio::test]
async fn a_handlaggare_other_than_the_tokens_sub_is_refused() {
    let s = harness::start().await;
    let other = s
        .st_idp
        .token("SE2120000142-HL02", "0180", "EKB-BESLUT")
        .unwrap();
    let f = fault(
        &s.st
            .post_raw(Some(&other), s.st_xml(sim_af::REGISTRERAD))
            .await
            .unwrap(),
        403,
        "HANDLAGGARE_MATCHAR_EJ",
    );
    assert_eq!(f.falt.as_deref(), Some("Fraga/Ingivare/Handlaggare"));
    assert_eq!(s.af_data_requests(), 0);
    s.stop().await;
}

#[tokio::test]
async fn an_operation_the_client_may_not_call_is_refused() {
    let s = harness::start().await;
    // Göteborg may not call HamtaHandlingsplan.
    let fraga = brygga::devkit::client::example_fraga(
        &s.gbg.orgnr,
        &s.gbg.namn,
        &s.gbg.handlaggare,
        sim_af::REGISTRERAD,
        "EKB-BESLUT",
    )
    .unwrap();
    let token = s
        .gb_idp
        .token(&s.gbg.handlaggare, "1480", "EKB-BESLUT")
        .unwrap();
    let f = fault(
        &s.gb
            .call(&token, &KommunRequest::HamtaHandlingsplan(fraga))
            .await
            .unwrap(),
        403,
        "OPERATION_EJ_TILLATEN",
    );
    assert!(f.meddelande.contains("HamtaHandlingsplan"));
    assert_eq!(s.af_data_requests(), 0);
    s.stop().await;
}

#[tokio::test]
async fn a_protected_persons_handlingsplan_has_no_office_or_providers() {
    let s = harness::start().await;
    let KommunAnswer::Handlingsplan(h) = answer(
        &s.st
            .call(
                &s.st_token(),
                &KommunRequest::HamtaHandlingsplan(s.st_fraga(sim_af::SKYDDAD)),
            )
            .await
            .unwrap(),
    ) else {
        panic!()
    };
    let plan = h.handlingsplan.expect("plan");
    assert!(plan.kontor.is_none(), "the office would place the person");
    assert!(plan.aktiviteter.iter().all(|a| a.anordnare.is_none()));
    // An unprotected person's plan keeps them for a purpose that may see them.
    let KommunAnswer::Handlingsplan(h) = answer(
        &s.st
            .call(
                &s.st_token(),
                &KommunRequest::HamtaHandlingsplan(s.st_fraga("197010632391")),
            )
            .await
            .unwrap(),
    ) else {
        panic!()
    };
    assert!(h.handlingsplan.expect("plan").kontor.is_some());
    s.stop().await;
}
