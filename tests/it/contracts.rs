//! The published contracts and their examples: brygga reads and writes exactly what they say,
//! checked by brygga's own code and by independent validators (xmllint, a JSON Schema engine).

use std::path::{Path, PathBuf};
use std::process::Command;

use brygga::contract::af_json::{FragandeJson, StatusRequest, StatusResponse};

use brygga::contract::soap::{self, KommunResponse};
use brygga::contract::xml::XmlLimits;
use brygga::model::*;
use brygga::{contract::translate, devkit::sim_af};

use crate::harness;

fn schemas() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

fn read(p: &str) -> Vec<u8> {
    std::fs::read(schemas().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn json(p: &str) -> serde_json::Value {
    serde_json::from_slice(&read(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// Who asks in the examples, as the gateway tells AF: the example configuration's purpose
/// and audit key, the token's case worker as the request names them, no unit.
fn example_fragande(fraga: &Fraga) -> FragandeJson {
    let config =
        brygga::config::Config::load(&brygga::devkit::demo::DemoFiles::default().config).unwrap();
    let syfte = config.syften.get(&fraga.syfte).unwrap();
    let org = fraga.ingivare.organisationsnummer;
    translate::fragande(
        &org,
        fraga,
        &fraga.ingivare.handlaggare,
        None,
        (&syfte.kod, &syfte.beskrivning),
        config
            .pseudonyms
            .case_reference(&org, &fraga.arendeidentitet)
            .unwrap(),
    )
}

/// The categories the example's purpose may see, as AF is asked for them.
fn example_kategorier(fraga: &Fraga) -> Option<Vec<String>> {
    let config =
        brygga::config::Config::load(&brygga::devkit::demo::DemoFiles::default().config).unwrap();
    let mut k: Vec<String> = config
        .syften
        .get(&fraga.syfte)
        .unwrap()
        .kategorier
        .iter()
        .map(|d| d.code().to_owned())
        .collect();
    k.sort();
    Some(k)
}

/// Whether a test needing an outside tool should run: skips with a message naming the tool,
/// unless BRYGGA_TEST_STRICT=1 makes a missing tool a failure.
pub fn tool_available(tool: &str, probe: &[&str]) -> bool {
    tool_from_package(tool, probe, "libxml2-utils")
}

/// Where an outside tool comes from, as the skip message names it. A plain `&str` is a Debian
/// package.
pub enum Package {
    Debian(&'static str),
    /// A PyPI requirement with its pinned version, e.g. `sslyze==6.3.1`.
    Pip(&'static str),
}

impl From<&'static str> for Package {
    fn from(debian: &'static str) -> Self {
        Package::Debian(debian)
    }
}

impl std::fmt::Display for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Package::Debian(p) => write!(f, "Debian: apt-get install {p}"),
            Package::Pip(p) => write!(f, "PyPI: pip install {p}"),
        }
    }
}

/// The same for a tool from another package.
pub fn tool_from_package(tool: &str, probe: &[&str], package: impl Into<Package>) -> bool {
    let ok = Command::new(tool)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip(&format!("{tool} not found"), &package.into());
    }
    ok
}

/// Says that the running test skips because `why`, naming how to install what it needs; under
/// BRYGGA_TEST_STRICT=1 fails instead. Written to the process's stderr directly: libtest
/// captures `eprintln!` and shows it only for failing tests, which would hide every skip.
pub fn skip(why: &str, package: &Package) {
    if std::env::var("BRYGGA_TEST_STRICT").as_deref() == Ok("1") {
        panic!("{why}, and it is required (BRYGGA_TEST_STRICT=1); install it ({package})");
    }
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let line = format!("SKIPPED {test}: {why}; install it ({package}) to run this check\n");
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[test]
fn the_request_example_translates_to_the_af_request_example() {
    let req = soap::decode_request(
        &read("kommun/v1/examples/HamtaArbetssokandeStatus.request.xml"),
        &XmlLimits::default(),
    )
    .unwrap();
    let KommunRequest::HamtaArbetssokandeStatus(fraga) = &req else {
        panic!("{req:?}")
    };
    assert_eq!(
        fraga.korrelationsid.to_string(),
        "3f1c6a52-8b9e-4c1f-9a57-0d6e2b7c4a10"
    );
    let af = serde_json::to_value(translate::person_request(
        fraga,
        example_fragande(fraga),
        example_kategorier(fraga),
    ))
    .unwrap();
    assert_eq!(af, json("af/v1/examples/arbetssokande-status.request.json"));
    // And back: brygga's encoding of the request decodes to the same model.
    let again =
        soap::decode_request(soap::encode_request(&req).as_bytes(), &XmlLimits::default()).unwrap();
    assert_eq!(again, req);
}

#[test]
fn the_af_answer_example_translates_to_the_soap_answer_example() {
    let af: StatusResponse =
        serde_json::from_value(json("af/v1/examples/arbetssokande-status.response.json")).unwrap();
    let expected = match soap::decode_response(
        &read("kommun/v1/examples/HamtaArbetssokandeStatus.response.xml"),
        &XmlLimits::default(),
    )
    .unwrap()
    {
        KommunResponse::Answer(KommunAnswer::Status(s)) => s,
        other => panic!("{other:?}"),
    };
    let ours = HamtaArbetssokandeStatusSvar {
        korrelationsid: expected.korrelationsid,
        status: translate::status_from_af(&af).unwrap(),
    };
    assert_eq!(ours, expected);
    let encoded = soap::encode_answer(&KommunAnswer::Status(ours));
    assert_eq!(
        soap::decode_response(encoded.as_bytes(), &XmlLimits::default()).unwrap(),
        KommunResponse::Answer(KommunAnswer::Status(expected))
    );
    // The simulator's fixed registered person is exactly the example.
    let p = Personnummer::parse(sim_af::REGISTRERAD).unwrap();
    assert_eq!(sim_af::status_for(&p).unwrap(), af);
}

#[test]
fn the_fault_example_decodes() {
    match soap::decode_response(
        &read("kommun/v1/examples/Fel.fault.xml"),
        &XmlLimits::default(),
    )
    .unwrap()
    {
        KommunResponse::Fault {
            faultcode,
            fel: Some(f),
            ..
        } => {
            assert_eq!(faultcode, "soap:Client");
            assert_eq!(f.felkod, "OGILTIGT_FALT");
            assert_eq!(f.falt.as_deref(), Some("Fraga/Personidentitet"));
        }
        other => panic!("{other:?}"),
    }
}

/// The independent JSON Schema oracle: every schema of `schemas/af/v1` registered by its `$id`.
pub fn validator(schema: &str) -> jsonschema::Validator {
    static REGISTRY: std::sync::OnceLock<jsonschema::Registry<'static>> =
        std::sync::OnceLock::new();
    let registry = REGISTRY.get_or_init(|| {
        let mut resources = Vec::new();
        for entry in std::fs::read_dir(schemas().join("af/v1")).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().ends_with(".schema.json") {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                let id = v["$id"].as_str().unwrap().to_owned();
                resources.push((id, v));
            }
        }
        jsonschema::Registry::new()
            .extend(resources)
            .unwrap()
            .prepare()
            .unwrap()
    });
    let path = if schema.contains('/') {
        schema.to_owned()
    } else {
        format!("af/v1/{schema}.schema.json")
    };
    jsonschema::options()
        .with_registry(registry)
        .should_validate_formats(true)
        .build(&json(&path))
        .unwrap_or_else(|e| panic!("{schema}: {e}"))
}

#[test]
fn json_examples_and_brygga_output_follow_the_af_schemas() {
    let pairs = [
        (
            "arbetssokande-status-request",
            "arbetssokande-status.request.json",
        ),
        (
            "arbetssokande-status-response",
            "arbetssokande-status.response.json",
        ),
        (
            "ersattningsbeslut-request",
            "ersattningsbeslut.request.json",
        ),
        (
            "ersattningsbeslut-response",
            "ersattningsbeslut.response.json",
        ),
        ("handlingsplan-request", "handlingsplan.request.json"),
        ("handlingsplan-response", "handlingsplan.response.json"),
        ("aktivitetsplan-request", "aktivitetsplan.request.json"),
        ("aktivitetsplan-response", "aktivitetsplan.response.json"),
        ("handelser-request", "handelser.request.json"),
        ("health-response", "health.response.json"),
        ("token-response", "token.response.json"),
    ];
    for (schema, example) in pairs {
        let v = validator(schema);
        let errors: Vec<String> = v
            .iter_errors(&json(&format!("af/v1/examples/{example}")))
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{example}: {errors:?}");
    }
    // What brygga sends, and what the simulator answers for many persons, follow the schemas.
    let req_v = validator("arbetssokande-status-request");
    let resp_v = validator("arbetssokande-status-response");
    let ers_v = validator("ersattningsbeslut-response");
    let plan_v = validator("handlingsplan-response");
    let mut persons: Vec<String> = sim_af::FIXED_PERSONS
        .iter()
        .map(|p| p.personnummer.to_owned())
        .collect();
    for serial in 0..300u32 {
        let base = format!(
            "19{:02}{:02}{:02}{:03}",
            40 + serial % 60,
            1 + serial % 12,
            1 + serial % 28,
            serial
        );
        let d: Vec<u8> = base[2..].bytes().map(|b| b - b'0').collect();
        persons.push(format!(
            "{base}{}",
            brygga::model::ident::luhn_check_digit(&d)
        ));
    }
    let check = |v: &jsonschema::Validator, value: serde_json::Value| {
        let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?} in {value}");
    };
    let asking = brygga::devkit::client::example_fraga(
        "2120000142",
        "Stockholms stad",
        "SE2120000142-HL01",
        sim_af::REGISTRERAD,
        "EKB-BESLUT",
    )
    .unwrap();
    let fragande = example_fragande(&asking);
    for pnr in persons {
        let p = Personnummer::parse(&pnr).unwrap();
        let req = StatusRequest {
            personnummer: p.expose(),
            from_datum: "2026-01-01".into(),
            tom_datum: "2026-06-30".into(),
            fragande: fragande.clone(),
            kategorier: Some(vec!["REGISTRERING".into(), "KONTOR".into()]),
        };
        check(&req_v, serde_json::to_value(&req).unwrap());
        if let Some(answer) = sim_af::status_for(&p) {
            check(&resp_v, serde_json::to_value(&answer).unwrap());
            assert!(translate::status_from_af(&answer).is_ok());
        }
        let e = sim_af::ersattningar_for(&p);
        check(&ers_v, serde_json::to_value(&e).unwrap());
        assert!(translate::ersattningar_from_af(&e).is_ok());
        let h = sim_af::handlingsplan_for(&p);
        check(&plan_v, serde_json::to_value(&h).unwrap());
        assert!(translate::handlingsplan_from_af(&h).is_ok());
    }
    let plan = brygga::devkit::client::example_plan().unwrap();
    let fraga = brygga::devkit::client::example_fraga(
        "2120000142",
        "Stockholms stad",
        "SE2120000142-HL01",
        sim_af::REGISTRERAD,
        "AKT-PLANERING",
    )
    .unwrap();
    let body = translate::aktivitetsplan_request(
        &fraga,
        Kommunkod::parse("0180").unwrap(),
        &plan,
        example_fragande(&fraga),
    );
    check(
        &validator("aktivitetsplan-request"),
        serde_json::to_value(&body).unwrap(),
    );
}

fn xml_example(name: &str) -> Vec<u8> {
    read(&format!("kommun/v1/examples/{name}"))
}

fn request(name: &str) -> KommunRequest {
    soap::decode_request(&xml_example(name), &XmlLimits::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn answer(name: &str) -> KommunAnswer {
    match soap::decode_response(&xml_example(name), &XmlLimits::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
    {
        KommunResponse::Answer(a) => a,
        other => panic!("{name}: {other:?}"),
    }
}

/// Every operation's SOAP request translates to its AF request example, AF's answer example
/// to its SOAP answer example, and each encodes back to the same model.
#[test]
fn every_example_pair_translates_into_the_other() {
    for op in ["HamtaErsattningsbeslut", "HamtaHandlingsplan"] {
        let req = request(&format!("{op}.request.xml"));
        let fraga = req.fraga().unwrap();
        let af_name = if op == "HamtaErsattningsbeslut" {
            "ersattningsbeslut"
        } else {
            "handlingsplan"
        };
        assert_eq!(
            serde_json::to_value(translate::person_request(
                fraga,
                example_fragande(fraga),
                example_kategorier(fraga)
            ))
            .unwrap(),
            json(&format!("af/v1/examples/{af_name}.request.json")),
            "{op}"
        );
        let expected = answer(&format!("{op}.response.xml"));
        let ours = match op {
            "HamtaErsattningsbeslut" => {
                KommunAnswer::Ersattningsbeslut(HamtaErsattningsbeslutSvar {
                    korrelationsid: fraga.korrelationsid,
                    ersattningar: translate::ersattningar_from_af(
                        &serde_json::from_value(json(
                            "af/v1/examples/ersattningsbeslut.response.json",
                        ))
                        .unwrap(),
                    )
                    .unwrap(),
                })
            }
            _ => KommunAnswer::Handlingsplan(HamtaHandlingsplanSvar {
                korrelationsid: fraga.korrelationsid,
                handlingsplan: translate::handlingsplan_from_af(
                    &serde_json::from_value(json("af/v1/examples/handlingsplan.response.json"))
                        .unwrap(),
                )
                .unwrap(),
            }),
        };
        assert_eq!(ours, expected, "{op}");
        let again =
            soap::decode_response(soap::encode_answer(&ours).as_bytes(), &XmlLimits::default())
                .unwrap();
        assert_eq!(again, KommunResponse::Answer(ours), "{op}");
        assert_eq!(
            soap::decode_request(soap::encode_request(&req).as_bytes(), &XmlLimits::default())
                .unwrap(),
            req
        );
    }

    let req = request("AnmalAktivitetsplan.request.xml");
    let KommunRequest::AnmalAktivitetsplan(fraga, plan) = &req else {
        panic!("{req:?}")
    };
    let body = translate::aktivitetsplan_request(
        fraga,
        Kommunkod::parse("0180").unwrap(),
        plan,
        example_fragande(fraga),
    );
    assert_eq!(
        serde_json::to_value(&body).unwrap(),
        json("af/v1/examples/aktivitetsplan.request.json")
    );
    let (_, _, parsed) = translate::aktivitetsplan_from_request(&body).unwrap();
    assert_eq!(&parsed, plan);
    let kvittens = translate::kvittens_from_af(
        &serde_json::from_value(json("af/v1/examples/aktivitetsplan.response.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        KommunAnswer::Aktivitetsplan(AnmalAktivitetsplanSvar {
            korrelationsid: fraga.korrelationsid,
            kvittens
        }),
        answer("AnmalAktivitetsplan.response.xml")
    );

    let KommunRequest::Ping(id) = request("Ping.request.xml") else {
        panic!()
    };
    let KommunAnswer::Ping(ping) = answer("Ping.response.xml") else {
        panic!()
    };
    assert_eq!(ping.korrelationsid, id);

    // Events: AF's JSON plus the subscriber's case id is the SOAP event.
    let batch: brygga::contract::af_json::HandelserRequest =
        serde_json::from_value(json("af/v1/examples/handelser.request.json")).unwrap();
    assert_eq!(batch.handelser.len(), 6);
    for typ in HandelseTyp::ALL {
        let name = typ.code().to_lowercase();
        let af: brygga::contract::af_json::HandelseJson =
            serde_json::from_value(json(&format!("af/v1/examples/handelse.{name}.json"))).unwrap();
        let model = translate::handelse_from_af(&af).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(model.handelse.typ(), *typ);
        assert!(batch.handelser.contains(&af), "{name} is in the batch");
        let ours = ArbetssokandeHandelse {
            af: model,
            arendeidentitet: "EB-2026-004711".into(),
        };
        let expected = soap::decode_handelse(
            &xml_example(&format!("ArbetssokandeHandelse.{name}.xml")),
            &XmlLimits::default(),
        )
        .unwrap();
        assert_eq!(ours, expected, "{name}");
        assert_eq!(
            soap::decode_handelse(
                soap::encode_handelse(&ours).as_bytes(),
                &XmlLimits::default()
            )
            .unwrap(),
            ours
        );
        assert_eq!(
            translate::handelse_to_af(&ours.af),
            af,
            "{name} back to JSON"
        );
    }
    let kvittens = soap::decode_handelse_kvittens(
        &xml_example("ArbetssokandeHandelseKvittens.xml"),
        &XmlLimits::default(),
    )
    .unwrap();
    assert_eq!(
        soap::decode_handelse_kvittens(
            soap::encode_handelse_kvittens(&kvittens).as_bytes(),
            &XmlLimits::default()
        )
        .unwrap(),
        kvittens
    );
}

#[tokio::test]
async fn xml_examples_and_gateway_messages_follow_the_xsd() {
    if !tool_available("xmllint", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(schemas().join("kommun/v1/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 18);

    // Everything the gateway writes: answers of every operation, Faults, requests, events.
    let s = harness::start().await;
    let token = s.st_token();
    let plan_token = s
        .st_idp
        .token(&s.sthlm.handlaggare, "0180", "AKT-PLANERING")
        .unwrap();
    let mut bodies: Vec<bytes::Bytes> = Vec::new();
    for p in sim_af::FIXED_PERSONS {
        for req in [
            KommunRequest::HamtaArbetssokandeStatus(s.st_fraga(p.personnummer)),
            KommunRequest::HamtaErsattningsbeslut(s.st_fraga(p.personnummer)),
            KommunRequest::HamtaHandlingsplan(s.st_fraga(p.personnummer)),
        ] {
            bodies.push(s.st.call(&token, &req).await.unwrap().body);
            bodies.push(soap::encode_request(&req).into());
        }
    }
    let mut planning = s.st_fraga(sim_af::REGISTRERAD);
    planning.syfte = "AKT-PLANERING".into();
    planning.lagrum = brygga::devkit::client::example_lagrum("AKT-PLANERING").into();
    let plan = KommunRequest::AnmalAktivitetsplan(
        planning,
        brygga::devkit::client::example_plan().unwrap(),
    );
    bodies.push(s.st.call(&plan_token, &plan).await.unwrap().body);
    bodies.push(soap::encode_request(&plan).into());
    bodies.push(
        s.st.call(&token, &KommunRequest::Ping(uuid::Uuid::new_v4()))
            .await
            .unwrap()
            .body,
    );
    bodies.push(s.st.post_raw(Some(&token), "<x/>").await.unwrap().body);
    bodies.push(
        s.st.post_raw(None, s.st_xml(sim_af::OKAND))
            .await
            .unwrap()
            .body,
    );
    bodies.push(
        s.st.post_raw(
            Some(&token),
            s.st_xml(sim_af::OKAND)
                .replace(sim_af::OKAND, "200112249827"),
        )
        .await
        .unwrap()
        .body,
    );
    // A hostile element name: the Fault that names it is still valid XML and valid to the XSD.
    let hostile = s.st_xml(sim_af::OKAND).replace(
        "</k:Fraga>",
        &format!(
            "<k:x850709-9805{}>1</k:x850709-9805{}></k:Fraga>",
            "A".repeat(3000),
            "A".repeat(3000)
        ),
    );
    bodies.push(s.st.post_raw(Some(&token), hostile).await.unwrap().body);
    s.stop().await;
    for typ in HandelseTyp::ALL {
        let name = typ.code().to_lowercase();
        let e = soap::decode_handelse(
            &xml_example(&format!("ArbetssokandeHandelse.{name}.xml")),
            &XmlLimits::default(),
        )
        .unwrap();
        bodies.push(soap::encode_handelse(&e).into());
    }
    for (i, b) in bodies.iter().enumerate() {
        let p = dir.path().join(format!("message-{i}.xml"));
        std::fs::write(&p, b).unwrap();
        files.push(p);
    }
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(schemas().join("kommun/v1/brygga-kommun-v1-soap.xsd"))
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "xmllint: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The WSDLs load and name every operation.
    for wsdl in ["brygga-kommun-v1.wsdl", "brygga-handelse-v1.wsdl"] {
        let out = Command::new("xmllint")
            .arg("--noout")
            .arg(schemas().join("kommun/v1").join(wsdl))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{wsdl}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let wsdl = String::from_utf8(read("kommun/v1/brygga-kommun-v1.wsdl")).unwrap();
    for op in Operation::ALL {
        assert!(
            wsdl.contains(&format!("name=\"{}\"", op.name())),
            "{} in the WSDL",
            op.name()
        );
    }
}

/// The subscription operations' examples: brygga reads each and writes it back the same.
#[test]
fn subscription_examples_decode_and_encode_back() {
    for op in [
        "RegistreraPrenumeration",
        "AvslutaPrenumeration",
        "ListaPrenumerationer",
    ] {
        let req = request(&format!("{op}.request.xml"));
        assert_eq!(req.operation().name(), op);
        let again =
            soap::decode_request(soap::encode_request(&req).as_bytes(), &XmlLimits::default())
                .unwrap();
        assert_eq!(again, req, "{op} request");
        let a = answer(&format!("{op}.response.xml"));
        let again =
            soap::decode_response(soap::encode_answer(&a).as_bytes(), &XmlLimits::default())
                .unwrap();
        assert_eq!(again, KommunResponse::Answer(a), "{op} answer");
    }
    // A subscription list names no person.
    let list = String::from_utf8(xml_example("ListaPrenumerationer.response.xml")).unwrap();
    assert!(!list.contains("Personidentitet"));
}
