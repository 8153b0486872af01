//! The exchange end to end: answers for the fixed persons, and a Fault naming the problem for
//! every kind of bad request. Refused requests never reach AF.

use brygga::devkit::sim_af;
use brygga::model::*;

use crate::harness::{self, fault, status};

#[tokio::test]
async fn registered_person_gets_the_full_answer() {
    let s = harness::start().await;
    let fraga = s.st_fraga(sim_af::REGISTRERAD);
    let id = fraga.korrelationsid;
    let a =
        s.st.call(
            &s.st_token(),
            &KommunRequest::HamtaArbetssokandeStatus(fraga),
        )
        .await
        .unwrap();
    let svar = status(&a);
    assert_eq!(svar.korrelationsid, id, "Korrelationsid is echoed");
    let seen = s.inner.sim.stats.last_caller.lock().unwrap().clone();
    assert_eq!(
        seen,
        Some((id.to_string(), s.sthlm.handlaggare.clone())),
        "AF-TrackingId is the Korrelationsid, AF-EndUserId the case worker"
    );
    let st = svar.status;
    assert!(st.kand_av_af && st.inskriven && !st.sekretessmarkering);
    assert_eq!(
        st.inskrivningsdatum
            .map(brygga::model::ident::format_date)
            .as_deref(),
        Some("2025-09-01")
    );
    assert_eq!(st.kontor.as_ref().map(|k| k.kod.as_str()), Some("10021"));
    let kat = st.sokandekategori.unwrap();
    assert_eq!((kat.kod.as_str(), kat.text.as_str()), ("11", "Arbetslös"));
    assert_eq!(st.omfattning_procent, Some(100));
    assert!(st.avaktualisering.is_none());
    assert_eq!(
        st.senaste_aktivitetsrapport.unwrap().meddelande,
        "Aktivitetsrapport inlämnad i tid"
    );
    assert_eq!(
        st.a_kassa.unwrap().namn.as_deref(),
        Some("Unionens arbetslöshetskassa")
    );
    s.stop().await;
}

#[tokio::test]
async fn deregistered_protected_and_unknown_persons() {
    let s = harness::start().await;
    let token = s.st_token();
    let call = |pnr: &'static str| {
        let req = KommunRequest::HamtaArbetssokandeStatus(s.st_fraga(pnr));
        let client = s.st.clone();
        let token = token.clone();
        async move { status(&client.call(&token, &req).await.unwrap()).status }
    };

    let dereg = call(sim_af::AVAKTUALISERAD).await;
    assert!(dereg.kand_av_af && !dereg.inskriven);
    let av = dereg.avaktualisering.expect("deregistration");
    assert_eq!(
        (av.orsak_kod.as_str(), av.orsak_text.as_str()),
        ("AV02", "Fått arbete")
    );
    assert_eq!(brygga::model::ident::format_date(av.datum), "2026-10-15");

    let protected = call(sim_af::SKYDDAD).await;
    assert!(protected.sekretessmarkering && protected.inskriven);
    assert!(
        protected.kontor.is_none(),
        "office data is removed for a protected identity"
    );

    let unknown = call(sim_af::OKAND).await;
    assert!(!unknown.kand_av_af && !unknown.inskriven);
    assert!(unknown.inskrivningsdatum.is_none() && unknown.sokandekategori.is_none());

    // Any valid synthetic number gets a deterministic answer, samordningsnummer included.
    let a = call("197010632391").await;
    let b = call("197010632391").await;
    assert_eq!(a, b);
    s.stop().await;
}

#[tokio::test]
async fn goteborg_is_served_with_its_own_certificate_and_token() {
    let s = harness::start().await;
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
    status(
        &s.gb
            .call(&token, &KommunRequest::HamtaArbetssokandeStatus(fraga))
            .await
            .unwrap(),
    );
    s.stop().await;
}

#[tokio::test]
async fn the_af_token_is_fetched_once_and_reused() {
    let s = harness::start().await;
    let token = s.st_token();
    for _ in 0..5 {
        status(
            &s.st
                .post_raw(Some(&token), s.st_xml(sim_af::REGISTRERAD))
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        s.inner
            .sim
            .stats
            .token_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(s.af_data_requests(), 5);
    s.stop().await;
}

/// Each case: a change to a valid request, the Felkod and the field the Fault must name.
#[tokio::test]
async fn bad_requests_get_a_fault_naming_the_problem() {
    let s = harness::start().await;
    let token = s.st_token();
    let good = s.st_xml(sim_af::REGISTRERAD);
    let pnr = sim_af::REGISTRERAD;
    let el = |name: &str| {
        let start = good.find(&format!("<k:{name}>")).unwrap();
        let end_tag = format!("</k:{name}>");
        let end = good.find(&end_tag).unwrap() + end_tag.len();
        good[start..end].to_owned()
    };
    let without = |name: &str| good.replace(&el(name), "");
    let cases: Vec<(&str, String, &str, Option<&str>)> = vec![
        (
            "bad check digit",
            good.replace(pnr, "198507099806"),
            "OGILTIGT_FALT",
            Some("Fraga/Personidentitet"),
        ),
        (
            "impossible date",
            good.replace(pnr, "198502309801"),
            "OGILTIGT_FALT",
            Some("Fraga/Personidentitet"),
        ),
        (
            "eleven digits",
            good.replace(pnr, "19850709980"),
            "OGILTIGT_FALT",
            Some("Fraga/Personidentitet"),
        ),
        (
            "letters",
            good.replace(pnr, "1985O7O998O5"),
            "OGILTIGT_FALT",
            Some("Fraga/Personidentitet"),
        ),
        (
            "missing Korrelationsid",
            without("Korrelationsid"),
            "FALT_SAKNAS",
            Some("Fraga/Korrelationsid"),
        ),
        (
            "missing Ingivare",
            without("Ingivare"),
            "FALT_SAKNAS",
            Some("Fraga/Ingivare"),
        ),
        (
            "missing Handlaggare",
            without("Handlaggare"),
            "FALT_SAKNAS",
            Some("Fraga/Ingivare/Handlaggare"),
        ),
        (
            "missing Arendeidentitet",
            without("Arendeidentitet"),
            "FALT_SAKNAS",
            Some("Fraga/Arendeidentitet"),
        ),
        (
            "missing Personidentitet",
            without("Personidentitet"),
            "FALT_SAKNAS",
            Some("Fraga/Personidentitet"),
        ),
        (
            "missing Tidsperiod",
            without("Tidsperiod"),
            "FALT_SAKNAS",
            Some("Fraga/Tidsperiod"),
        ),
        (
            "missing Syfte",
            without("Syfte"),
            "FALT_SAKNAS",
            Some("Fraga/Syfte"),
        ),
        (
            "missing Lagrum",
            without("Lagrum"),
            "FALT_SAKNAS",
            Some("Fraga/Lagrum"),
        ),
        (
            "From after Tom",
            good.replace("<k:From>2026-06-01</k:From>", "<k:From>2026-12-24</k:From>"),
            "OGILTIGT_FALT",
            Some("Fraga/Tidsperiod"),
        ),
        (
            "impossible From",
            good.replace("2026-06-01", "2026-02-30"),
            "OGILTIGT_FALT",
            Some("Fraga/Tidsperiod/From"),
        ),
        (
            "bad orgnr check digit",
            good.replace("162120000142", "162120000143"),
            "OGILTIGT_FALT",
            Some("Fraga/Ingivare/Organisationsnummer"),
        ),
        (
            "bad Korrelationsid",
            good.replace(
                &el("Korrelationsid"),
                "<k:Korrelationsid>not-a-uuid</k:Korrelationsid>",
            ),
            "OGILTIGT_FALT",
            Some("Fraga/Korrelationsid"),
        ),
        (
            "empty Arendeidentitet",
            good.replace(
                &el("Arendeidentitet"),
                "<k:Arendeidentitet> </k:Arendeidentitet>",
            ),
            "OGILTIGT_FALT",
            Some("Fraga/Arendeidentitet"),
        ),
        (
            "lower-case Syfte",
            good.replace("EKB-BESLUT", "ekb-beslut"),
            "OGILTIGT_FALT",
            Some("Fraga/Syfte"),
        ),
        (
            "element of our namespace added",
            good.replace("</k:Fraga>", "<k:Extra>x</k:Extra></k:Fraga>"),
            "OVANTAT_ELEMENT",
            Some("Fraga/Extra"),
        ),
        (
            "Fraga in no namespace",
            good.replace("<k:Fraga>", "<Fraga>")
                .replace("</k:Fraga>", "</Fraga>"),
            "OGILTIGT_FALT",
            Some("Fraga"),
        ),
        (
            "malformed XML",
            good[..good.len() - 30].to_owned(),
            "OGILTIG_XML",
            None,
        ),
        ("not SOAP", "<a>b</a>".to_owned(), "INTE_SOAP", None),
        (
            "unknown operation",
            good.replace("HamtaArbetssokandeStatus", "HamtaAllt"),
            "OKAND_OPERATION",
            None,
        ),
        (
            "DTD",
            format!("<!DOCTYPE x [<!ENTITY e \"e\">]>{}", &good[38..]),
            "OTILLATEN_XML",
            None,
        ),
        (
            "entity",
            good.replace("EB-2026-004711", "&e;"),
            "OTILLATEN_XML",
            None,
        ),
        (
            "deep nesting",
            good.replace("<k:Lagrum>", &"<x:a xmlns:x=\"urn:x\">".repeat(40)),
            "XML_FOR_DJUP",
            None,
        ),
        (
            "too many elements",
            good.replace(
                "</k:Fraga>",
                &format!("{}</k:Fraga>", "<x:e xmlns:x=\"urn:x\"/>".repeat(2100)),
            ),
            "XML_FOR_MANGA_ELEMENT",
            None,
        ),
        (
            "text too long",
            good.replace(
                "</k:Fraga>",
                &format!(
                    "<x:e xmlns:x=\"urn:x\">{}</x:e></k:Fraga>",
                    "x".repeat(17 * 1024)
                ),
            ),
            "XML_FOR_LANG_TEXT",
            None,
        ),
        (
            "attribute too long",
            good.replace(
                "<k:Fraga>",
                &format!("<k:Fraga a=\"{}\">", "x".repeat(2000)),
            ),
            "XML_FOR_STORA_ATTRIBUT",
            None,
        ),
        (
            "period over a year",
            good.replace("<k:From>2026-06-01</k:From>", "<k:From>2025-06-01</k:From>"),
            "OGILTIGT_FALT",
            Some("Fraga/Tidsperiod"),
        ),
        (
            "declared non-UTF-8",
            good.replace("UTF-8", "ISO-8859-1"),
            "OGILTIG_XML",
            None,
        ),
        // What stands in the wrong place is named, not what is expected there.
        (
            "Lagrum before Syfte",
            good.replace(&el("Syfte"), "SYFTE-HERE")
                .replace(&el("Lagrum"), &el("Syfte"))
                .replace("SYFTE-HERE", &el("Lagrum")),
            "OVANTAT_ELEMENT",
            Some("Fraga/Lagrum"),
        ),
        (
            "Syfte twice",
            good.replace(&el("Syfte"), &format!("{0}{0}", el("Syfte"))),
            "OVANTAT_ELEMENT",
            Some("Fraga/Syfte"),
        ),
        (
            "an unknown element before Korrelationsid",
            good.replace("<k:Fraga>", "<k:Fraga><k:Okand>x</k:Okand>"),
            "OVANTAT_ELEMENT",
            Some("Fraga/Okand"),
        ),
    ];
    for (name, body, code, field) in cases {
        let a = s.st.post_raw(Some(&token), body).await.unwrap();
        let f = fault(&a, 400, code);
        assert_eq!(f.falt.as_deref(), field, "{name}: {}", f.meddelande);
        assert_eq!(f.kalla, Kalla::Gateway, "{name}");
        assert!(!f.kan_forsokas_igen, "{name}");
        assert!(
            !f.meddelande.contains(pnr) && !f.meddelande.contains("198507099806"),
            "{name}: the message must not echo the number"
        );
    }
    // Latin-1 bytes where UTF-8 is required.
    let latin1: Vec<u8> = good
        .replace("socialtjänstlagen", "socialtj\u{1}nstlagen")
        .into_bytes()
        .into_iter()
        .map(|b| if b == 1 { 0xe4 } else { b })
        .collect();
    fault(
        &s.st.post_raw(Some(&token), latin1).await.unwrap(),
        400,
        "OGILTIG_XML",
    );
    assert_eq!(s.af_data_requests(), 0, "no refused request reached AF");
    s.stop().await;
}

/// A Fault carries the caller's Korrelationsid whenever it could be read (so the case system
/// can match it to its request) and names the operation; a fresh id only when there is none.
#[tokio::test]
async fn a_fault_keeps_the_callers_korrelationsid_and_names_the_operation() {
    let s = harness::start().await;
    let token = s.st_token();
    let fraga = s.st_fraga(sim_af::REGISTRERAD);
    let id = fraga.korrelationsid;
    let good =
        brygga::contract::soap::encode_request(&KommunRequest::HamtaArbetssokandeStatus(fraga));
    for (what, body, felkod) in [
        (
            "a bad check digit",
            good.replace(sim_af::REGISTRERAD, "198507099806"),
            "OGILTIGT_FALT",
        ),
        (
            "Syfte missing",
            good.replace("<k:Syfte>EKB-BESLUT</k:Syfte>", ""),
            "FALT_SAKNAS",
        ),
        (
            "an element out of order",
            good.replace("</k:Fraga>", "<k:Syfte>EKB-BESLUT</k:Syfte></k:Fraga>"),
            "OVANTAT_ELEMENT",
        ),
    ] {
        let f = fault(
            &s.st.post_raw(Some(&token), body).await.unwrap(),
            400,
            felkod,
        );
        assert_eq!(f.korrelationsid, id, "{what}");
        assert_eq!(
            f.operation.as_deref(),
            Some("HamtaArbetssokandeStatus"),
            "{what}"
        );
    }
    // No readable id: a fresh one, and no operation when that could not be read either.
    let f = fault(
        &s.st
            .post_raw(Some(&token), "<a>not soap</a>")
            .await
            .unwrap(),
        400,
        "INTE_SOAP",
    );
    assert_ne!(f.korrelationsid, id);
    assert_eq!(f.operation, None);
    s.stop().await;
}

#[tokio::test]
async fn tolerated_extension_elements_are_dropped() {
    let s = harness::start().await;
    let body = s.st_xml(sim_af::REGISTRERAD).replace(
        "</k:Fraga>",
        "<ext:Framtida xmlns:ext=\"urn:example:extension\"><ext:Falt>1</ext:Falt></ext:Framtida></k:Fraga>",
    );
    status(&s.st.post_raw(Some(&s.st_token()), body).await.unwrap());
    s.stop().await;
}

#[tokio::test]
async fn http_level_refusals() {
    let s = harness::start().await;
    let token = s.st_token();
    let good = s.st_xml(sim_af::REGISTRERAD);
    let a =
        s.st.post_with_type(Some(&token), good.clone(), "application/json")
            .await
            .unwrap();
    let f = fault(&a, 415, "FEL_MEDIATYP");
    assert_eq!(f.falt.as_deref(), Some("Content-Type"));
    fault(
        &s.st
            .post_with_type(Some(&token), good.clone(), "text/xml; charset=iso-8859-1")
            .await
            .unwrap(),
        415,
        "FEL_MEDIATYP",
    );
    let big = good.replace("EB-2026-004711", &"x".repeat(300 * 1024));
    fault(
        &s.st.post_raw(Some(&token), big).await.unwrap(),
        413,
        "FOR_STOR_BEGARAN",
    );

    let other = brygga::devkit::client::KommunClient::new(
        &s.url.replace("/kommun/v1", "/annat"),
        &s.files.certs.join("kommun-ca.pem"),
        Some((&s.sthlm.cert, &s.sthlm.key)),
    )
    .unwrap();
    fault(
        &other.post_raw(Some(&token), good).await.unwrap(),
        404,
        "OKAND_RESURS",
    );
    assert_eq!(s.af_data_requests(), 0);
    s.stop().await;
}

#[tokio::test]
async fn policy_refusals_name_the_rule() {
    let s = harness::start().await;
    let token = s.st_token();
    let good = s.st_xml(sim_af::REGISTRERAD);

    // Handlaggare must be the token's sub.
    let other_worker = s
        .st_idp
        .token("SE2120000142-HL02", "0180", "EKB-BESLUT")
        .unwrap();
    let f = fault(
        &s.st
            .post_raw(Some(&other_worker), good.clone())
            .await
            .unwrap(),
        403,
        "HANDLAGGARE_MATCHAR_EJ",
    );
    assert_eq!(f.falt.as_deref(), Some("Fraga/Ingivare/Handlaggare"));

    // Ingivare must be the certificate's organisation.
    let gbg_orgnr = good.replace("162120000142", "162120001355");
    fault(
        &s.st.post_raw(Some(&token), gbg_orgnr).await.unwrap(),
        403,
        "INGIVARE_MATCHAR_EJ",
    );

    // Syfte must be the token's purpose.
    let planning = s
        .st_idp
        .token(&s.sthlm.handlaggare, "0180", "AKT-PLANERING")
        .unwrap();
    fault(
        &s.st.post_raw(Some(&planning), good.clone()).await.unwrap(),
        403,
        "SYFTE_MATCHAR_EJ",
    );

    // Göteborg may use EKB-BESLUT only.
    let gb_xml = good
        .replace("162120000142", "162120001355")
        .replace("SE2120000142-HL01", &s.gbg.handlaggare)
        .replace("EKB-BESLUT", "AKT-PLANERING");
    let gb_token = s
        .gb_idp
        .token(&s.gbg.handlaggare, "1480", "AKT-PLANERING")
        .unwrap();
    fault(
        &s.gb.post_raw(Some(&gb_token), gb_xml).await.unwrap(),
        403,
        "SYFTE_EJ_TILLATET",
    );

    assert_eq!(s.af_data_requests(), 0, "no refused request reached AF");
    s.stop().await;
}

/// A W3C `traceparent` from the case system goes on to AF in the same trace with brygga's own
/// span; without one (or with a broken one) AF gets a trace named after the Korrelationsid.
#[tokio::test]
async fn the_trace_context_is_carried_to_af() {
    let s = harness::start().await;
    let last = || {
        brygga::ops::tracectx::TraceContext::parse(
            &s.inner
                .sim
                .stats
                .last_traceparent
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_default(),
        )
        .expect("AF got a valid traceparent")
    };
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let a =
        s.st.post_with_headers(
            Some(&s.st_token()),
            s.st_xml(sim_af::REGISTRERAD),
            "text/xml; charset=utf-8",
            &[("traceparent", incoming), ("tracestate", "kommun=ek7")],
        )
        .await
        .unwrap();
    let korrelationsid = status(&a).korrelationsid;
    let sent = last();
    assert_eq!(
        s.inner.sim.stats.last_tracestate.lock().unwrap().as_deref(),
        Some("kommun=ek7")
    );
    assert_eq!(sent.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(sent.parent_id.as_deref(), Some("00f067aa0ba902b7"));
    assert_eq!(sent.flags, "01");
    for header in [None, Some("00-zzzz-00f067aa0ba902b7-01")] {
        let extra: Vec<(&str, &str)> = header.iter().map(|h| ("traceparent", *h)).collect();
        let a =
            s.st.post_with_headers(
                Some(&s.st_token()),
                s.st_xml(sim_af::REGISTRERAD),
                "text/xml; charset=utf-8",
                &extra,
            )
            .await
            .unwrap();
        let id = status(&a).korrelationsid;
        assert_eq!(last().trace_id, id.simple().to_string(), "{header:?}");
    }
    assert_ne!(korrelationsid.simple().to_string(), sent.trace_id);
    s.stop().await;
}
