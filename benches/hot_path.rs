//! Micro-benchmarks of the per-request work on the gateway's hot path: the CPU budget of one
//! exchange, stage by stage. `cargo bench` runs them.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use brygga::access::identity::{IdpKeys, Presenter, TokenRules, VerifiedTokens, verify_token};
use brygga::contract::af_json::StatusResponse;
use brygga::contract::soap;
use brygga::contract::xml::XmlLimits;
use brygga::devkit::client::TokenMinter;
use brygga::model::*;
use brygga::{contract::translate, devkit::sim_af};
use criterion::{Criterion, criterion_group, criterion_main};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn example(name: &str) -> Vec<u8> {
    std::fs::read(root().join("schemas/kommun/v1/examples").join(name)).unwrap()
}

fn identifiers(c: &mut Criterion) {
    c.bench_function("personnummer parse", |b| {
        b.iter(|| Personnummer::parse(black_box("198507099805")))
    });
    c.bench_function("organisationsnummer parse", |b| {
        b.iter(|| Organisationsnummer::parse(black_box("162120000142")))
    });
}

fn soap_codec(c: &mut Criterion) {
    let limits = XmlLimits::default();
    for op in [
        "HamtaArbetssokandeStatus",
        "HamtaErsattningsbeslut",
        "HamtaHandlingsplan",
        "AnmalAktivitetsplan",
        "Ping",
    ] {
        let request = example(&format!("{op}.request.xml"));
        c.bench_function(&format!("SOAP decode request {op}"), |b| {
            b.iter(|| soap::decode_request(black_box(&request), &limits).unwrap())
        });
        let decoded = soap::decode_request(&request, &limits).unwrap();
        c.bench_function(&format!("SOAP encode request {op}"), |b| {
            b.iter(|| soap::encode_request(black_box(&decoded)))
        });
        let answer = example(&format!("{op}.response.xml"));
        let soap::KommunResponse::Answer(model) = soap::decode_response(&answer, &limits).unwrap()
        else {
            panic!()
        };
        c.bench_function(&format!("SOAP encode answer {op}"), |b| {
            b.iter(|| soap::encode_answer(black_box(&model)))
        });
        c.bench_function(&format!("SOAP decode answer {op}"), |b| {
            b.iter(|| soap::decode_response(black_box(&answer), &limits).unwrap())
        });
    }
}

fn json_and_translation(c: &mut Criterion) {
    let body =
        std::fs::read(root().join("schemas/af/v1/examples/arbetssokande-status.response.json"))
            .unwrap();
    c.bench_function("JSON decode AF status answer", |b| {
        b.iter(|| serde_json::from_slice::<StatusResponse>(black_box(&body)).unwrap())
    });
    // As brygga reads AF's JSON: the whole body checked to be UTF-8, paths kept for errors,
    // nothing after the value.
    c.bench_function("JSON decode AF status answer, checked (parse_json)", |b| {
        b.iter(|| {
            brygga::contract::validate::parse_json::<StatusResponse>(black_box(&body)).unwrap()
        })
    });
    let af: StatusResponse = serde_json::from_slice(&body).unwrap();
    c.bench_function("JSON encode AF status answer", |b| {
        b.iter(|| serde_json::to_vec(black_box(&af)).unwrap())
    });
    c.bench_function("translate AF status answer to model", |b| {
        b.iter(|| translate::status_from_af(black_box(&af)).unwrap())
    });
    let fraga = brygga::devkit::client::example_fraga(
        "2120000142",
        "Stockholms stad",
        "SE2120000142-HL01",
        sim_af::REGISTRERAD,
        "EKB-BESLUT",
    )
    .unwrap();
    let fragande = brygga::contract::af_json::FragandeJson {
        organisationsnummer: "212000-0142".into(),
        organisationsnamn: "Stockholms stad".into(),
        handlaggare: "SE2120000142-HL01".into(),
        enhet: None,
        syfte: "EKB-BESLUT".into(),
        syfte_beskrivning: "Beslut om eller kontroll av ekonomiskt bistånd".into(),
        lagrum: "11 kap. 11 a § socialtjänstlagen".into(),
        arendereferens: "a1:AAAAAAAAAAAAAAAAAAAAAA".into(),
        personuppgiftsbitrade: None,
    };
    let kategorier: Vec<String> = vec!["KONTOR".into(), "REGISTRERING".into()];
    c.bench_function("translate request to AF JSON", |b| {
        b.iter(|| {
            serde_json::to_vec(&translate::person_request(
                black_box(&fraga),
                fragande.clone(),
                Some(kategorier.clone()),
            ))
            .unwrap()
        })
    });
}

fn jwt(c: &mut Criterion) {
    let rules = TokenRules {
        audience: "urn:se:brygga:kommun:v1".into(),
        leeway: 30,
        max_lifetime: 3600,
        replay_protection: false,
    };
    let certs = root().join("certs-example");
    let idp = IdpKeys::load(
        "https://idp.stockholm.example/",
        "ES256",
        &certs.join("idp-0180.jwks.json"),
    )
    .unwrap();
    let minter = TokenMinter::load(
        &certs.join("idp-0180.key"),
        "https://idp.stockholm.example/",
        "urn:se:brygga:kommun:v1",
    )
    .unwrap();
    let token = minter
        .sign(&minter.claims(
            "SE2120000142-HL01",
            "0180",
            "EKB-BESLUT",
            Duration::from_secs(3600),
        ))
        .unwrap();
    c.bench_function("JWT ES256 verify", |b| {
        b.iter(|| verify_token(&idp, &rules, black_box(&token)).unwrap())
    });
    let cache = VerifiedTokens::new(10_000);
    let at = Presenter {
        client: "stockholm",
        idp: &idp,
        binding_required: false,
        certificate: None,
    };
    c.bench_function("JWT ES256 verify, cached", |b| {
        b.iter(|| cache.verify(&at, &rules, black_box(&token)).unwrap())
    });
}

/// What the limits add to a request: the client's rate and place, the operation's rate and
/// the quota towards AF, each under its limit (the common case), and a refusal.
fn limits(c: &mut Criterion) {
    use brygga::access::limit::{ClientRule, Configured, Limiter, Rate};
    let rate = |per_second, burst| {
        let rate = Rate { per_second, burst };
        Configured {
            rate,
            quota: rate.quota().unwrap(),
        }
    };
    let rule = |name: &str, r| ClientRule {
        name: name.into(),
        rate: r,
        per_operation: std::collections::HashMap::from([(
            Operation::HamtaArbetssokandeStatus,
            rate(1_000_000_000, 1_000_000_000),
        )]),
        max_concurrent: 64,
    };
    let open = Limiter::from_rules(
        vec![rule("stockholm", rate(1_000_000_000, 1_000_000_000))],
        Some(rate(1_000_000_000, 1_000_000_000)),
        governor::clock::DefaultClock::default(),
    );
    c.bench_function("limits: client, operation and AF quota, admitted", |b| {
        b.iter(|| {
            let place = open.admit(black_box("stockholm")).unwrap();
            open.admit_operation("stockholm", Operation::HamtaArbetssokandeStatus)
                .unwrap();
            open.admit_af().unwrap();
            drop(place);
        })
    });
    let closed = Limiter::from_rules(
        vec![rule("stockholm", rate(1, 1))],
        None,
        governor::clock::DefaultClock::default(),
    );
    drop(closed.admit("stockholm").unwrap());
    // At one a second, nearly every check in the run is a refusal.
    c.bench_function("limits: client refused", |b| {
        b.iter(|| black_box(closed.admit(black_box("stockholm")).is_err()))
    });
}

/// What counting a request costs: the request counter, its latency histogram and the status
/// page's window (an answered request), and the same for an AF call.
fn metrics(c: &mut Criterion) {
    use brygga::error::Felkod;
    use brygga::ops::metrics::Metrics;
    use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
    let m = Metrics::new(Histogram::new(exponential_buckets(0.0001, 2.0, 15)));
    let took = std::time::Duration::from_micros(1800);
    c.bench_function("metrics: one answered request counted", |b| {
        b.iter(|| {
            m.request(
                black_box("HamtaArbetssokandeStatus"),
                Some(black_box("stockholm")),
                None,
                took,
            )
        })
    });
    c.bench_function("metrics: one refused request counted", |b| {
        b.iter(|| {
            m.request(
                black_box("HamtaArbetssokandeStatus"),
                Some(black_box("stockholm")),
                Some(Felkod::SyfteEjTillatet),
                took,
            )
        })
    });
    c.bench_function("metrics: one AF call counted", |b| {
        b.iter(|| m.af_call(black_box("HamtaArbetssokandeStatus"), None, took))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    targets = identifiers, soap_codec, json_and_translation, jwt, limits, metrics
}
criterion_main!(benches);
