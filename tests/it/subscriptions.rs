//! Subscriptions to AF's events as a case system makes them: register, list, end, over the
//! real gateway; what is stored names no person; each call is in the audit chain.

use brygga::devkit::sim_af;
use brygga::model::*;
use brygga::store::audit::Action;

use crate::harness::{self, Stack, answer, fault};

/// A request about `pnr` in the case `arende`, for events from today for `days` days.
fn fraga(s: &Stack, pnr: &str, arende: &str, days: i64) -> Fraga {
    let today = time::OffsetDateTime::now_utc().date();
    Fraga {
        arendeidentitet: arende.into(),
        tidsperiod: Tidsperiod::new(today, today + time::Duration::days(days)).unwrap(),
        ..s.st_fraga(pnr)
    }
}

fn list(s: &Stack, arende: &str) -> KommunRequest {
    let f = s.st_fraga(sim_af::REGISTRERAD);
    KommunRequest::ListaPrenumerationer(PrenumerationsFraga {
        korrelationsid: uuid::Uuid::new_v4(),
        ingivare: f.ingivare,
        arendeidentitet: arende.into(),
        syfte: f.syfte,
    })
}

async fn call(s: &Stack, req: &KommunRequest) -> brygga::devkit::client::RawAnswer {
    s.st.call(&s.st_token(), req).await.unwrap()
}

fn subscription(a: KommunAnswer) -> Prenumeration {
    match a {
        KommunAnswer::RegistreraPrenumeration(p) | KommunAnswer::AvslutaPrenumeration(p) => {
            p.prenumeration
        }
        other => panic!("expected a subscription, got {other:?}"),
    }
}

fn listed(a: KommunAnswer) -> Vec<Prenumeration> {
    match a {
        KommunAnswer::ListaPrenumerationer(l) => l.prenumerationer,
        other => panic!("expected a list, got {other:?}"),
    }
}

#[tokio::test]
async fn a_case_system_registers_lists_and_ends_a_subscription() {
    let s = harness::start().await;
    let before = s.af_data_requests();
    let reg = KommunRequest::RegistreraPrenumeration(fraga(&s, sim_af::REGISTRERAD, "EB-1", 90));
    let first = subscription(answer(&call(&s, &reg).await));
    assert_eq!(first.status, PrenumerationStatus::Aktiv);
    assert_eq!(first.arendeidentitet, "EB-1");
    assert_eq!(first.syfte, "EKB-BESLUT");
    assert_eq!((first.period.tom() - first.period.from()).whole_days(), 90);

    // The same case and person again, for longer: the same subscription, extended.
    let longer =
        KommunRequest::RegistreraPrenumeration(fraga(&s, sim_af::REGISTRERAD, "EB-1", 180));
    let extended = subscription(answer(&call(&s, &longer).await));
    assert_eq!(extended.id, first.id);
    assert_eq!(
        (extended.period.tom() - extended.period.from()).whole_days(),
        180
    );
    // Another person in the same case: a subscription of its own.
    let other =
        KommunRequest::RegistreraPrenumeration(fraga(&s, sim_af::AVAKTUALISERAD, "EB-1", 30));
    let second = subscription(answer(&call(&s, &other).await));
    assert_ne!(second.id, first.id);

    let in_case = listed(answer(&call(&s, &list(&s, "EB-1")).await));
    assert_eq!(
        in_case.iter().map(|p| p.id).collect::<Vec<_>>(),
        [first.id, second.id]
    );
    assert!(listed(answer(&call(&s, &list(&s, "EB-2")).await)).is_empty());

    let end = KommunRequest::AvslutaPrenumeration(fraga(&s, sim_af::REGISTRERAD, "EB-1", 1));
    let ended = subscription(answer(&call(&s, &end).await));
    assert_eq!(
        (ended.id, ended.status),
        (first.id, PrenumerationStatus::Avslutad)
    );
    assert!(ended.avslutad.is_some());
    // Ending it again: there is nothing to end.
    let fel = fault(&call(&s, &end).await, 404, "PRENUMERATION_SAKNAS");
    assert!(!fel.kan_forsokas_igen);
    let after = listed(answer(&call(&s, &list(&s, "EB-1")).await));
    assert_eq!(after[0].status, PrenumerationStatus::Avslutad);
    assert_eq!(after[1].status, PrenumerationStatus::Aktiv);
    assert_eq!(s.af_data_requests(), before, "subscriptions never reach AF");

    let store = s.audit_store();
    let config = s.inner.config.clone();
    let _data = s.stop().await;

    // The store keeps a pseudonym of the `subscriptions` domain, never the number.
    let raw = std::fs::read(&store).unwrap();
    let text = String::from_utf8_lossy(&raw);
    for pnr in [sim_af::REGISTRERAD, sim_af::AVAKTUALISERAD] {
        assert!(!text.contains(pnr) && !text.contains(&pnr[2..]));
    }
    let pseudonym = config
        .pseudonyms
        .pseudonym(
            "subscriptions",
            &Personnummer::parse(sim_af::REGISTRERAD).unwrap(),
        )
        .unwrap();
    let conn = rusqlite::Connection::open(&store).unwrap();
    let subjects: Vec<String> = conn
        .prepare("SELECT subject FROM subscriptions ORDER BY registered, id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(subjects.contains(&pseudonym), "{subjects:?}");

    // Every call is in the audit chain, as brygga's own processing: nothing was disclosed.
    let records: Vec<brygga::store::audit::Record> = conn
        .prepare("SELECT body FROM records WHERE seq > 0 ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|b| serde_json::from_str(&b.unwrap()).unwrap())
        .collect();
    assert_eq!(records.len(), 8);
    let reg = &records[0].entry;
    assert_eq!(reg.operation, "RegistreraPrenumeration");
    assert_eq!(
        (reg.action, reg.direction.as_str()),
        (Action::Read, "kommun-till-brygga")
    );
    assert_eq!(
        reg.subject,
        config
            .pseudonyms
            .pseudonym("audit", &Personnummer::parse(sim_af::REGISTRERAD).unwrap())
    );
    assert!(reg.kategorier.is_empty() && reg.af_status.is_none());
    let listing = &records[3].entry;
    assert_eq!(listing.operation, "ListaPrenumerationer");
    assert_eq!(
        (listing.subject.as_deref(), listing.arende.as_deref()),
        (None, Some("EB-1"))
    );
    assert_eq!(records[6].entry.outcome, "PRENUMERATION_SAKNAS");
    assert_eq!(records[6].entry.action, Action::Deny);
}

#[tokio::test]
async fn subscriptions_follow_the_policy_and_the_contract() {
    let s = harness::start().await;
    // Göteborg's client may not use the follow-up purpose, for subscriptions or anything else.
    let gb = s
        .gb_idp
        .token(&s.gbg.handlaggare, "1480", "AKT-UPPFOLJNING")
        .unwrap();
    let f = brygga::devkit::client::example_fraga(
        &s.gbg.orgnr,
        &s.gbg.namn,
        &s.gbg.handlaggare,
        sim_af::REGISTRERAD,
        "AKT-UPPFOLJNING",
    )
    .unwrap();
    let refused =
        s.gb.call(&gb, &KommunRequest::RegistreraPrenumeration(f))
            .await
            .unwrap();
    fault(&refused, 403, "SYFTE_EJ_TILLATET");

    // A subscription that would already have ended.
    let past = KommunRequest::RegistreraPrenumeration(s.st_fraga(sim_af::REGISTRERAD));
    let fel = fault(&call(&s, &past).await, 400, "OGILTIGT_FALT");
    assert_eq!(fel.falt.as_deref(), Some("Fraga/Tidsperiod/Tom"));

    // Listing names the case worker of the token, like every other request.
    let mut other_worker = list(&s, "EB-1");
    if let KommunRequest::ListaPrenumerationer(l) = &mut other_worker {
        l.ingivare.handlaggare = HsaId::parse("SE2120000142-HL02").unwrap();
    }
    fault(
        &call(&s, &other_worker).await,
        403,
        "HANDLAGGARE_MATCHAR_EJ",
    );

    // A list request without its case: the field is named.
    let xml = brygga::contract::soap::encode_request(&list(&s, "EB-1"));
    let start = xml.find("<k:Arendeidentitet>").unwrap();
    let end = xml.find("</k:Arendeidentitet>").unwrap() + "</k:Arendeidentitet>".len();
    let broken = format!("{}{}", &xml[..start], &xml[end..]);
    let fel = fault(
        &s.st.post_raw(Some(&s.st_token()), broken).await.unwrap(),
        400,
        "FALT_SAKNAS",
    );
    assert_eq!(fel.falt.as_deref(), Some("Arendeidentitet"));
    s.stop().await;
}
