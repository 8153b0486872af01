//! `brygga demo`: the AF simulator, the gateway and a case-system client on loopback with the
//! example certificates; every step is checked and reported. `--serve` keeps them running on
//! the configured ports for other tools.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::config::Config;
use crate::contract::soap::KommunResponse;
use crate::devkit::client::{KommunClient, TokenMinter, example_fraga};
use crate::devkit::sim_af::{self, RunningSim, SimSettings};
use crate::gateway::start::{self, RunningGateway};
use crate::model::*;

/// Where the demo finds its files.
#[derive(Debug, Clone)]
pub struct DemoFiles {
    pub config: PathBuf,
    pub sim_config: PathBuf,
    pub certs: PathBuf,
}

impl Default for DemoFiles {
    /// The example files in the working directory when it is a checkout, else in the checkout
    /// the binary was built from.
    fn default() -> Self {
        let here = Path::new(".");
        let root =
            if here.join("config/example.toml").is_file() && here.join("certs-example").is_dir() {
                here
            } else {
                Path::new(env!("CARGO_MANIFEST_DIR"))
            };
        Self {
            config: root.join("config/example.toml"),
            sim_config: root.join("config/af-sim.example.toml"),
            certs: root.join("certs-example"),
        }
    }
}

/// The simulator and gateway of a demo, started together.
pub struct DemoStack {
    pub sim: RunningSim,
    pub gateway: RunningGateway,
    pub config: Config,
    /// Where the audit store is: `--data-dir`, or a temporary directory removed at the end.
    pub data_dir: PathBuf,
    /// The case-system simulators that receive AF's events, by client name (`start` only).
    pub case_systems: Vec<(String, crate::devkit::sim_kommun::RunningKommunSim)>,
    _temporary: Option<tempfile::TempDir>,
}

impl DemoStack {
    /// Starts the simulator, points the gateway at it and starts the gateway. With
    /// `ephemeral`, every listener takes a free loopback port.
    pub async fn start(
        files: &DemoFiles,
        ephemeral: bool,
        data_dir: Option<&Path>,
    ) -> Result<Self, String> {
        let mut config = Config::load(&files.config).map_err(|e| e.to_string())?;
        let mut sim_settings = SimSettings::load(&files.sim_config)?;
        if ephemeral {
            let any = "127.0.0.1:0".parse().map_err(|_| "address")?;
            sim_settings.bind = any;
            config.kommun_bind = any;
            config.admin_bind = any;
            config.events.bind = any;
        } else {
            // The demo's keys are public: keep the gateway on loopback even on its usual ports.
            config.kommun_bind.set_ip([127, 0, 0, 1].into());
            config.events.bind.set_ip([127, 0, 0, 1].into());
        }
        // A case-system simulator for every client with an event endpoint: on a free port, or
        // on the endpoint's own.
        let mut case_systems = Vec::new();
        for (name, endpoint) in config.endpoints.iter_mut() {
            let port = if ephemeral {
                0
            } else {
                endpoint
                    .url
                    .parse::<http::Uri>()
                    .ok()
                    .and_then(|u| u.port_u16())
                    .unwrap_or(0)
            };
            let settings = crate::devkit::sim_kommun::KommunSimSettings {
                bind: ([127, 0, 0, 1], port).into(),
                cert: files.certs.join("kommun-sim.pem"),
                key: files.certs.join("kommun-sim.key"),
                client_ca: files.certs.join("kommun-ca.pem"),
            };
            let sim = crate::devkit::sim_kommun::start(&settings, None).await?;
            endpoint.url = sim.url();
            case_systems.push((name.clone(), sim));
        }
        let mut stack = Self::start_with(config, sim_settings, true, data_dir).await?;
        stack.case_systems = case_systems;
        Ok(stack)
    }

    /// The outbox's depth now (none when it cannot be read).
    pub fn gateway_depth(&self) -> Option<crate::store::outbox::Depth> {
        self.gateway.outbox.depth().ok()
    }

    /// The case-system simulator of a client.
    pub fn case_system(
        &self,
        client: &str,
    ) -> Option<&crate::devkit::sim_kommun::RunningKommunSim> {
        self.case_systems
            .iter()
            .find(|(n, _)| n == client)
            .map(|(_, s)| s)
    }

    /// Starts the simulator with `sim_settings` and the gateway with `config`; with
    /// `point_at_sim`, the gateway's AF URLs are set to the simulator's address. The audit
    /// store goes into `data_dir` (created if needed), or into a fresh temporary directory.
    pub async fn start_with(
        mut config: Config,
        sim_settings: SimSettings,
        point_at_sim: bool,
        data_dir: Option<&Path>,
    ) -> Result<Self, String> {
        let (data_dir, temporary) = match data_dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
                (d.to_owned(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("brygga-demo-")
                    .tempdir()
                    .map_err(|e| format!("a temporary data directory: {e}"))?;
                (t.path().to_owned(), Some(t))
            }
        };
        config.audit.store = data_dir.join("audit.db");
        let sim = sim_af::start(sim_settings).await?;
        if point_at_sim {
            config.af.base_url = format!("https://localhost:{}", sim.addr.port());
            config.af.token_url = format!("{}/oauth2/token", config.af.base_url);
        }
        let gateway = start::start(config.clone()).await?;
        Ok(Self {
            sim,
            gateway,
            config,
            data_dir,
            case_systems: Vec::new(),
            _temporary: temporary,
        })
    }

    /// Where AF posts its events (the `af` listener).
    pub fn af_url(&self) -> String {
        format!(
            "https://localhost:{}{}",
            self.gateway.af_addr.port(),
            crate::gateway::events::EVENTS_PATH
        )
    }

    pub fn kommun_url(&self) -> String {
        format!(
            "https://localhost:{}/kommun/v1",
            self.gateway.kommun_addr.port()
        )
    }

    pub async fn shutdown(self) {
        self.gateway.shutdown().await;
        self.sim.shutdown().await;
        for (_, s) in self.case_systems {
            s.shutdown().await;
        }
    }
}

/// A municipality of the example set-up, with its files.
pub struct ExampleClient {
    pub kommunkod: String,
    pub orgnr: String,
    pub namn: String,
    pub handlaggare: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub idp_key: PathBuf,
    pub issuer: String,
}

/// The example clients of a configuration, with their files in `certs`.
pub fn example_clients(config: &Config, certs: &Path) -> Vec<ExampleClient> {
    crate::devkit::certs::EXAMPLE_MUNICIPALITIES
        .iter()
        .filter_map(|(kod, namn, orgnr)| {
            let c = config
                .clients
                .iter()
                .find(|c| c.kommunkod.to_string() == *kod)?;
            Some(ExampleClient {
                kommunkod: kod.to_string(),
                orgnr: c.orgnr.to_string(),
                namn: namn.to_string(),
                handlaggare: format!("SE{orgnr}-HL01"),
                cert: certs.join(format!("klient-{kod}.pem")),
                key: certs.join(format!("klient-{kod}.key")),
                idp_key: certs.join(format!("idp-{kod}.key")),
                issuer: c.idp.issuer.clone(),
            })
        })
        .collect()
}

/// What a step expects.
enum Expect {
    Answer(fn(&KommunAnswer) -> bool),
    Fault(StatusCode, &'static str),
}

struct Outcome {
    name: String,
    passed: bool,
    got: String,
    ms: f64,
}

/// A one-line summary of an answer for the report (no personal data).
fn summary(a: &KommunAnswer) -> String {
    match a {
        KommunAnswer::Status(s) => format!(
            "known={} registered={} protected={}",
            s.status.kand_av_af, s.status.inskriven, s.status.sekretessmarkering
        ),
        KommunAnswer::Ersattningsbeslut(e) => {
            format!("{} decision(s)", e.ersattningar.beslut.len())
        }
        KommunAnswer::Handlingsplan(h) => match &h.handlingsplan {
            Some(p) => format!(
                "plan {}, {} activit(ies)",
                p.status.code(),
                p.aktiviteter.len()
            ),
            None => "no plan".to_owned(),
        },
        KommunAnswer::Aktivitetsplan(k) => format!(
            "receipt {} {}",
            k.kvittens.status.code(),
            k.kvittens.referens
        ),
        KommunAnswer::Ping(p) => p
            .tjanster
            .iter()
            .map(|t| format!("{} {}", t.namn, t.status.code()))
            .collect::<Vec<_>>()
            .join(", "),
        KommunAnswer::RegistreraPrenumeration(p) | KommunAnswer::AvslutaPrenumeration(p) => {
            let p = &p.prenumeration;
            format!(
                "subscription {} until {}",
                p.status.code(),
                crate::model::ident::format_date(p.period.tom())
            )
        }
        KommunAnswer::ListaPrenumerationer(l) => {
            format!("{} subscription(s)", l.prenumerationer.len())
        }
    }
}

async fn step(
    name: &str,
    expect: Expect,
    fut: impl Future<Output = Result<crate::devkit::client::RawAnswer, String>>,
) -> Outcome {
    let t = Instant::now();
    let result = fut.await;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let (passed, got) = match result {
        Err(e) => (false, format!("transport error: {e}")),
        Ok(a) => {
            let code = a.status.as_u16();
            match (a.decode(), &expect) {
                (Ok(KommunResponse::Answer(ans)), Expect::Answer(check)) => (
                    a.status == StatusCode::OK && check(&ans),
                    format!("{code} {}", summary(&ans)),
                ),
                (Ok(KommunResponse::Fault { fel: Some(f), .. }), Expect::Fault(st, felkod)) => (
                    a.status == *st && f.felkod == *felkod,
                    format!(
                        "{code} Fault {} ({}){}",
                        f.felkod,
                        f.kalla.as_str(),
                        f.falt.map(|x| format!(" at {x}")).unwrap_or_default()
                    ),
                ),
                (Ok(KommunResponse::Fault { fel, .. }), _) => (
                    false,
                    format!("{code} unexpected Fault {:?}", fel.map(|f| f.felkod)),
                ),
                (Ok(KommunResponse::Answer(_)), _) => (false, format!("{code} unexpected answer")),
                (Err(e), _) => (false, format!("{code} undecodable answer: {e}")),
            }
        }
    };
    Outcome {
        name: name.to_owned(),
        passed,
        got,
        ms,
    }
}

fn status_is(a: &KommunAnswer, f: fn(&Arbetssokandestatus) -> bool) -> bool {
    matches!(a, KommunAnswer::Status(s) if f(&s.status))
}

/// Runs the demo on free loopback ports; returns whether every step behaved as expected.
pub async fn run(files: &DemoFiles, data_dir: Option<&Path>) -> Result<bool, String> {
    let stack = DemoStack::start(files, true, data_dir).await?;
    let url = stack.kommun_url();
    let ca = files.certs.join("kommun-ca.pem");
    let clients = example_clients(&stack.config, &files.certs);
    let (sthlm, gbg) = match clients.as_slice() {
        [a, b, ..] => (a, b),
        _ => return Err("the configuration lacks the example municipalities 0180 and 1480".into()),
    };
    let aud = stack.config.token_rules.audience.clone();
    let st_client = KommunClient::new(&url, &ca, Some((&sthlm.cert, &sthlm.key)))?;
    let gb_client = KommunClient::new(&url, &ca, Some((&gbg.cert, &gbg.key)))?;
    let st_idp = TokenMinter::load(&sthlm.idp_key, &sthlm.issuer, &aud)?;
    let gb_idp = TokenMinter::load(&gbg.idp_key, &gbg.issuer, &aud)?;
    // Stockholm's case worker's token names the unit and function, which the records keep.
    let st_token = {
        let mut c = st_idp.claims(
            &sthlm.handlaggare,
            "0180",
            "EKB-BESLUT",
            std::time::Duration::from_secs(300),
        );
        c.enhet = Some(format!("SE{}-EKB1", sthlm.orgnr.replace('-', "")));
        c.funktion = Some("Handläggare ekonomiskt bistånd".into());
        st_idp.sign(&c)?
    };
    let st_plan_token = st_idp.token(&sthlm.handlaggare, "0180", "AKT-PLANERING")?;
    let gb_token = gb_idp.token(&gbg.handlaggare, "1480", "EKB-BESLUT")?;
    let fraga = |c: &ExampleClient, pnr: &str, syfte: &str| {
        example_fraga(&c.orgnr, &c.namn, &c.handlaggare, pnr, syfte)
    };

    println!(
        "brygga demo: AF simulator on {}, gateway on {}, admin on {}",
        stack.sim.addr, stack.gateway.kommun_addr, stack.gateway.admin_addr
    );
    println!(
        "Stockholms stad (0180) and Göteborgs stad (1480) call the gateway over mTLS with ES256 tokens.\n"
    );

    let mut outcomes = Vec::new();
    type Check = fn(&KommunAnswer) -> bool;
    let fixed: [(&str, &str, Expect); 5] = [
        (
            "registered jobseeker",
            sim_af::REGISTRERAD,
            Expect::Answer(|a| {
                status_is(a, |s| {
                    s.inskriven && s.kontor.is_some() && s.sokandekategori.is_some()
                })
            }),
        ),
        (
            "deregistered (got a job)",
            sim_af::AVAKTUALISERAD,
            Expect::Answer(|a| status_is(a, |s| !s.inskriven && s.avaktualisering.is_some())),
        ),
        (
            "protected identity: office removed",
            sim_af::SKYDDAD,
            Expect::Answer(|a| status_is(a, |s| s.sekretessmarkering && s.kontor.is_none())),
        ),
        (
            "not known to AF",
            sim_af::OKAND,
            Expect::Answer(|a| status_is(a, |s| !s.kand_av_af && !s.inskriven)),
        ),
        (
            "AF fails for this person",
            sim_af::AF_FEL,
            Expect::Fault(StatusCode::BAD_GATEWAY, "AF_FEL"),
        ),
    ];
    for (label, pnr, expect) in fixed {
        let req = KommunRequest::HamtaArbetssokandeStatus(fraga(sthlm, pnr, "EKB-BESLUT")?);
        outcomes.push(
            step(
                &format!("HamtaArbetssokandeStatus: {label}"),
                expect,
                st_client.call(&st_token, &req),
            )
            .await,
        );
    }
    // A subscription for the coming three months.
    let following = |f: Fraga| -> Result<Fraga, String> {
        let today = time::OffsetDateTime::now_utc().date();
        let tidsperiod = Tidsperiod::new(today, today + time::Duration::days(90))
            .ok_or("a period of three months")?;
        Ok(Fraga { tidsperiod, ..f })
    };
    let case = |f: Fraga| PrenumerationsFraga {
        korrelationsid: uuid::Uuid::new_v4(),
        ingivare: f.ingivare,
        arendeidentitet: f.arendeidentitet,
        syfte: f.syfte,
    };
    let others: [(&str, KommunRequest, &str, Check); 6] = [
        (
            "HamtaErsattningsbeslut: registered jobseeker",
            KommunRequest::HamtaErsattningsbeslut(fraga(sthlm, sim_af::REGISTRERAD, "EKB-BESLUT")?),
            &st_token,
            |a| matches!(a, KommunAnswer::Ersattningsbeslut(e) if !e.ersattningar.beslut.is_empty()),
        ),
        (
            "HamtaHandlingsplan: registered jobseeker",
            KommunRequest::HamtaHandlingsplan(fraga(sthlm, sim_af::REGISTRERAD, "EKB-BESLUT")?),
            &st_token,
            |a| matches!(a, KommunAnswer::Handlingsplan(h) if h.handlingsplan.as_ref().is_some_and(|p| !p.aktiviteter.is_empty())),
        ),
        (
            "AnmalAktivitetsplan: three activities, 40 h/week",
            KommunRequest::AnmalAktivitetsplan(
                fraga(sthlm, sim_af::REGISTRERAD, "AKT-PLANERING")?,
                crate::devkit::client::example_plan()?,
            ),
            &st_plan_token,
            |a| matches!(a, KommunAnswer::Aktivitetsplan(k) if k.kvittens.status == KvittensStatus::Mottagen),
        ),
        (
            "Ping: AF health",
            KommunRequest::Ping(uuid::Uuid::new_v4()),
            &st_token,
            |a| matches!(a, KommunAnswer::Ping(p) if p.tjanster.iter().all(|t| t.status == TjanstStatus::Ok)),
        ),
        (
            "RegistreraPrenumeration: follow AF's events in the case",
            KommunRequest::RegistreraPrenumeration(following(fraga(
                sthlm,
                sim_af::REGISTRERAD,
                "EKB-BESLUT",
            )?)?),
            &st_token,
            |a| matches!(a, KommunAnswer::RegistreraPrenumeration(p) if p.prenumeration.status == PrenumerationStatus::Aktiv),
        ),
        (
            "ListaPrenumerationer: the case's subscriptions",
            KommunRequest::ListaPrenumerationer(case(fraga(
                sthlm,
                sim_af::REGISTRERAD,
                "EKB-BESLUT",
            )?)),
            &st_token,
            |a| matches!(a, KommunAnswer::ListaPrenumerationer(l) if l.prenumerationer.len() == 1),
        ),
    ];
    for (label, req, token, check) in others {
        outcomes.push(step(label, Expect::Answer(check), st_client.call(token, &req)).await);
    }
    // AF reports a missed activity for the person Stockholm follows: Stockholm's case system
    // gets it, Göteborg's does not.
    outcomes.push(event_flow(&stack, &files.certs).await);
    let extra_records = 2; // its receipt from AF and its delivery to Stockholm
    let req = KommunRequest::AvslutaPrenumeration(fraga(sthlm, sim_af::REGISTRERAD, "EKB-BESLUT")?);
    outcomes.push(
        step(
            "AvslutaPrenumeration: the case is closed",
            Expect::Answer(|a| matches!(a, KommunAnswer::AvslutaPrenumeration(p) if p.prenumeration.status == PrenumerationStatus::Avslutad)),
            st_client.call(&st_token, &req),
        )
        .await,
    );
    let req = KommunRequest::HamtaArbetssokandeStatus(fraga(gbg, "197010632391", "EKB-BESLUT")?);
    outcomes.push(
        step(
            "Göteborg: samordningsnummer, derived answer",
            Expect::Answer(|a| status_is(a, |s| s.kand_av_af && s.inskriven)),
            gb_client.call(&gb_token, &req),
        )
        .await,
    );

    // Error cases: each must be refused with its own code, naming the problem.
    let good = crate::contract::soap::encode_request(&KommunRequest::HamtaArbetssokandeStatus(
        fraga(sthlm, sim_af::REGISTRERAD, "EKB-BESLUT")?,
    ));
    let bad_digit = good.replace(sim_af::REGISTRERAD, "198507099806");
    outcomes.push(
        step(
            "bad check digit in Personidentitet",
            Expect::Fault(StatusCode::BAD_REQUEST, "OGILTIGT_FALT"),
            st_client.post_raw(Some(&st_token), bad_digit),
        )
        .await,
    );
    let no_syfte = good.replace("<k:Syfte>EKB-BESLUT</k:Syfte>", "");
    outcomes.push(
        step(
            "missing Syfte",
            Expect::Fault(StatusCode::BAD_REQUEST, "FALT_SAKNAS"),
            st_client.post_raw(Some(&st_token), no_syfte),
        )
        .await,
    );
    outcomes.push(
        step(
            "malformed XML",
            Expect::Fault(StatusCode::BAD_REQUEST, "OGILTIG_XML"),
            st_client.post_raw(Some(&st_token), good[..good.len() / 2].to_owned()),
        )
        .await,
    );
    outcomes.push(
        step(
            "no token",
            Expect::Fault(StatusCode::UNAUTHORIZED, "TOKEN_SAKNAS"),
            st_client.post_raw(None, good.clone()),
        )
        .await,
    );
    let expired = st_idp.sign(&{
        let mut c = st_idp.claims(
            &sthlm.handlaggare,
            "0180",
            "EKB-BESLUT",
            Duration::from_secs(60),
        );
        c.exp = c.iat.saturating_sub(3600);
        c.nbf = c.exp.saturating_sub(300);
        c
    })?;
    outcomes.push(
        step(
            "expired token",
            Expect::Fault(StatusCode::UNAUTHORIZED, "TOKEN_UTGANGET"),
            st_client.post_raw(Some(&expired), good.clone()),
        )
        .await,
    );
    let foreign = st_idp.token(&sthlm.handlaggare, "1480", "EKB-BESLUT")?;
    outcomes.push(
        step(
            "token for another municipality",
            Expect::Fault(StatusCode::FORBIDDEN, "FEL_KOMMUN"),
            st_client.post_raw(Some(&foreign), good.clone()),
        )
        .await,
    );
    outcomes.push(
        step(
            "Göteborg's token on Stockholm's certificate",
            Expect::Fault(StatusCode::UNAUTHORIZED, "TOKEN_OKAND_NYCKEL"),
            st_client.post_raw(Some(&gb_token), good.clone()),
        )
        .await,
    );

    let width = outcomes
        .iter()
        .map(|o| o.name.chars().count())
        .max()
        .unwrap_or(10);
    for o in &outcomes {
        println!(
            "{} {:<width$}  {:>7.1} ms  {}",
            if o.passed { "ok  " } else { "FAIL" },
            o.name,
            o.ms,
            o.got
        );
    }
    // Each answered data step reached AF once, no refused request did, one token served all.
    let passed = outcomes.iter().filter(|o| o.passed).count();
    let data = stack
        .sim
        .stats
        .data_requests
        .load(std::sync::atomic::Ordering::Relaxed);
    let tokens = stack
        .sim
        .stats
        .token_requests
        .load(std::sync::atomic::Ordering::Relaxed);
    let reached = 5 + 3 + 1; // fixed persons, three data operations, Göteborg
    let af_ok = data == reached && tokens == 1;
    let failed = outcomes.iter().filter(|o| !o.passed).count() + usize::from(!af_ok);
    println!(
        "\n{} steps, {} passed, {} failed. AF saw {data} data request(s) (expected {reached}: refused requests never reach AF) and {tokens} token request(s) (expected 1: the token is reused).",
        outcomes.len(),
        passed,
        outcomes.len() - passed,
    );
    if !af_ok {
        println!("FAIL the requests that reached AF are not the expected ones");
    }
    let DemoStack {
        sim,
        gateway,
        config,
        data_dir,
        case_systems,
        _temporary,
    } = stack;
    gateway.shutdown().await;
    sim.shutdown().await;
    for (_, s) in case_systems {
        s.shutdown().await;
    }
    // One record per request the case systems made (the event flow is one step but three
    // records: the subscription aside, AF's event received, and its delivery).
    let requests = (outcomes.len() as u64).saturating_sub(1);
    let audited = audit_report(config, &data_dir, requests + extra_records).await?;
    Ok(failed == 0 && audited)
}

/// AF pushes an event about the person Stockholm follows, as AF does (its client certificate,
/// a JSON batch to the `af` listener); the step passes when Stockholm's case system has
/// receipted it and Göteborg's has nothing.
async fn event_flow(stack: &DemoStack, certs: &Path) -> Outcome {
    let name = "AF event: missed activity, to the subscriber only";
    let t = Instant::now();
    let today = time::OffsetDateTime::now_utc().date();
    let id = uuid::Uuid::new_v4();
    let batch = serde_json::json!({"handelser": [{
        "handelseId": id.to_string(),
        "typ": "UTEBLIVEN_AKTIVITET",
        "personnummer": sim_af::REGISTRERAD,
        "tidpunkt": crate::model::lexical::format_tidpunkt(time::OffsetDateTime::now_utc()),
        "uteblivenAktivitet": {"datum": today.to_string(), "aktivitet": "Rusta och matcha",
            "meddelande": "Deltog inte i planerat möte hos leverantören."}
    }]});
    let result = async {
        let af = KommunClient::new(
            &stack.af_url(),
            &certs.join("af-ca.pem"),
            Some((&certs.join("af-client.pem"), &certs.join("af-client.key"))),
        )?;
        let a = af
            .post_with_type(None, batch.to_string(), "application/json")
            .await?;
        if a.status != StatusCode::ACCEPTED {
            return Err(format!("AF's batch got HTTP {}", a.status.as_u16()));
        }
        let (st, gb) = (
            stack
                .case_system("stockholm")
                .ok_or("no Stockholm case system")?,
            stack
                .case_system("goteborg")
                .ok_or("no Göteborg case system")?,
        );
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while !st.state.received().iter().any(|m| m.handelse_id == id) {
            if Instant::now() > deadline {
                return Err("Stockholm's case system did not get it within 10 s".into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // Its delivery is recorded after the receipt arrives: wait for the outbox to say so.
        while stack.gateway_depth().is_some_and(|d| d.pending > 0) {
            if Instant::now() > deadline {
                return Err("the delivery was not marked done within 10 s".into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok(gb.state.received().len())
    }
    .await;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let (passed, got) = match result {
        Ok(0) => (
            true,
            "202, delivered to Stockholm (receipted), not to Göteborg".to_owned(),
        ),
        Ok(n) => (false, format!("Göteborg received {n} event(s)")),
        Err(e) => (false, e),
    };
    Outcome {
        name: name.to_owned(),
        passed,
        got,
        ms,
    }
}

/// The demo's end: every request has its record, the chain verifies, and the DPO's extract
/// for the registered example person.
async fn audit_report(config: Config, data_dir: &Path, requests: u64) -> Result<bool, String> {
    let store = data_dir.join("audit.db");
    let records: i64 = crate::store::audit::open(&store)
        .and_then(|c| {
            // After the chain's genesis (record 0).
            c.query_row("SELECT count(*) FROM records WHERE seq > 0", [], |r| {
                r.get(0)
            })
            .map_err(|e| crate::store::audit::AuditError::Store(e.to_string()))
        })
        .map_err(|e| e.to_string())?;
    let one_each = records as u64 == requests;
    println!(
        "\n{} audit: {records} record(s) for {requests} request(s), in {}",
        if one_each { "ok  " } else { "FAIL" },
        store.display()
    );
    let dpo = crate::cli::dpo::Store {
        path: store,
        config: Some(config),
        operator: "demo".into(),
    };
    print!("\n$ brygga audit verify\n");
    let verified = crate::cli::dpo::verify(&dpo, &[], None, false).await?;
    println!("\n$ brygga audit query --personnummer <the registered example person>");
    crate::cli::dpo::query(
        &dpo,
        crate::cli::dpo::Query {
            personnummer: Some(sim_af::REGISTRERAD.into()),
            arende: None,
            from: None,
            to: None,
            format: crate::cli::extract::Format::Text,
            output: None,
            public_keys: Vec::new(),
            syfte: Some("demo".into()),
        },
    )
    .await?;
    Ok(one_each && verified)
}

/// The example configuration's text made to run beside anything else on loopback: every
/// listener on a free port and the rate limits out of reach (for the bench, and for tests
/// that start `brygga serve` on a copy of it).
pub fn on_free_ports_unlimited(example: &str) -> String {
    example
        .replace("0.0.0.0:8443", "127.0.0.1:0")
        .replace("127.0.0.1:9090", "127.0.0.1:0")
        .replace("0.0.0.0:8444", "127.0.0.1:0")
        .replace(
            "rate = { per_second = 20, burst = 40 }",
            "rate = { per_second = 1000000, burst = 1000000 }",
        )
        .replace("max_concurrent = 16", "max_concurrent = 100000")
        .replace(
            "af_rate = { per_second = 100, burst = 200 }",
            "af_rate = { per_second = 1000000, burst = 1000000 }",
        )
}

fn abs(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| p.to_owned())
        .display()
        .to_string()
}

/// Starts the simulator and gateway on the configured ports, prints one JSON line describing
/// them, and serves until SIGINT or SIGTERM.
pub async fn serve(
    files: &DemoFiles,
    data_dir: Option<&Path>,
    traffic: Option<f64>,
) -> Result<(), String> {
    let stack = DemoStack::start(files, false, data_dir).await?;
    let clients: Vec<_> = example_clients(&stack.config, &files.certs)
        .iter()
        .map(|c| {
            let case_system = stack
                .config
                .clients
                .iter()
                .find(|k| k.kommunkod.to_string() == c.kommunkod)
                .and_then(|k| stack.case_system(&k.name))
                .map(|s| s.url());
            serde_json::json!({
                "orgnr": c.orgnr, "kommunkod": c.kommunkod, "handlaggare": c.handlaggare,
                "cert": abs(&c.cert), "key": abs(&c.key), "idp_key": abs(&c.idp_key),
                "idp_alg": "ES256", "iss": c.issuer, "aud": stack.config.token_rules.audience,
                "kommun_sim_url": case_system,
            })
        })
        .collect();
    let line = serde_json::json!({
        "kommun_url": stack.kommun_url(),
        "admin_url": format!("http://{}", stack.gateway.admin_addr),
        "af_sim_url": format!("https://localhost:{}", stack.sim.addr.port()),
        "af_url": stack.af_url(),
        "kommun_sim_url": stack.case_system("stockholm").map(|s| s.url()),
        "af_client": {
            "ca": abs(&files.certs.join("af-ca.pem")),
            "cert": abs(&files.certs.join("af-client.pem")),
            "key": abs(&files.certs.join("af-client.key")),
        },
        "ca": abs(&files.certs.join("kommun-ca.pem")),
        "audit_store": abs(&stack.config.audit.store),
        "clients": clients,
    });
    println!("{line}");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let client = match traffic {
        Some(rate) => Some(tokio::spawn(demo_traffic(
            stack.kommun_url(),
            example_clients(&stack.config, &files.certs),
            files.certs.join("kommun-ca.pem"),
            stack.config.token_rules.audience.clone(),
            rate,
            stopped,
        ))),
        None => None,
    };
    crate::gateway::signal::wait_for_signal().await;
    tracing::info!("signal received; draining");
    let _ = stop.send(true);
    if let Some(client) = client {
        let _ = client.await;
    }
    stack.shutdown().await;
    Ok(())
}

/// The demo's case systems at work, `rate` requests a second until `stop`: both example
/// municipalities ask for status and decisions, check AF with `Ping`, and one request in ten
/// is refused by the policy (a case worker other than the token's), so `/status` and
/// `/metrics` show live numbers with errors in them.
async fn demo_traffic(
    url: String,
    clients: Vec<ExampleClient>,
    ca: PathBuf,
    audience: String,
    rate: f64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut senders = Vec::new();
    for c in &clients {
        match (
            KommunClient::new(&url, &ca, Some((&c.cert, &c.key))),
            TokenMinter::load(&c.idp_key, &c.issuer, &audience),
        ) {
            (Ok(client), Ok(minter)) => senders.push((c, client, minter)),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "demo traffic: a client could not be set up");
            }
        }
    }
    if senders.is_empty() {
        return;
    }
    let persons = [
        crate::devkit::sim_af::REGISTRERAD,
        crate::devkit::sim_af::AVAKTUALISERAD,
        crate::devkit::sim_af::OKAND,
    ];
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.clamp(0.1, 1000.0)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u64.. {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let (c, client, minter) = &senders[(n as usize) % senders.len()];
        let person = persons[(n as usize / senders.len()) % persons.len()];
        let refused = n % 10 == 9;
        let sub = if refused {
            format!("{}X", c.handlaggare)
        } else {
            c.handlaggare.clone()
        };
        let request = match example_fraga(&c.orgnr, &c.namn, &c.handlaggare, person, "EKB-BESLUT") {
            Ok(f) if n % 7 == 3 => KommunRequest::Ping(f.korrelationsid),
            Ok(f) if n % 3 == 1 => KommunRequest::HamtaErsattningsbeslut(f),
            Ok(f) => KommunRequest::HamtaArbetssokandeStatus(f),
            Err(_) => continue,
        };
        let Ok(token) = minter.token(&sub, &c.kommunkod, "EKB-BESLUT") else {
            continue;
        };
        let (client, body) = (
            client.clone(),
            crate::contract::soap::encode_request(&request),
        );
        // Each request on its own: a slow answer does not hold the next back.
        tokio::spawn(async move {
            let _ = client.post_raw(Some(&token), body).await;
        });
    }
}
