//! Property tests: every valid model survives municipal XML → model → AF JSON → model →
//! municipal XML unchanged, and no byte string makes a decoder panic.

use brygga::contract::af_json as af;
use brygga::contract::soap::{self, KommunResponse};
use brygga::contract::translate;
use brygga::contract::xml::XmlLimits;
use brygga::model::*;
use proptest::prelude::*;
use time::{Date, OffsetDateTime, UtcOffset};

fn date() -> impl Strategy<Value = Date> {
    (1900i32..2100, 1u8..=12, 1u8..=28).prop_map(|(y, m, d)| {
        Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d).unwrap()
    })
}

/// Text as `xs:token` keeps it: words joined by single spaces, within `max` characters.
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(
        "[A-Za-zÅÄÖåäöé0-9.,&<>'\"/-]{1,12}( [A-Za-zÅÄÖåäöé0-9.,&<>'\"/-]{1,12}){0,4}",
    )
    .unwrap()
    .prop_map(move |s| {
        s.chars()
            .take(max)
            .collect::<String>()
            .trim_end()
            .to_owned()
    })
    .prop_filter("not empty", |s| !s.is_empty())
}

fn kod(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex("[A-Z0-9]{1,16}")
        .unwrap()
        .prop_map(move |s| s.chars().take(max).collect())
}

fn two_digits() -> impl Strategy<Value = String> {
    (0u8..100).prop_map(|n| format!("{n:02}"))
}

fn one_of<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(all)
}

fn tidpunkt() -> impl Strategy<Value = OffsetDateTime> {
    (
        date(),
        0u8..24,
        0u8..60,
        0u8..60,
        0u32..1000,
        -14 * 4..=14 * 4i32,
    )
        .prop_map(|(d, h, m, s, ms, quarter)| {
            let offset = UtcOffset::from_whole_seconds(quarter * 15 * 60).unwrap();
            d.with_hms_milli(h, m, s, ms as u16)
                .unwrap()
                .assume_offset(offset)
        })
}

fn personnummer() -> impl Strategy<Value = Personnummer> {
    (
        date().prop_filter("with century", |d| d.year() >= 1900),
        0u16..1000,
        any::<bool>(),
    )
        .prop_map(|(d, serial, samordning)| {
            let day = d.day() + if samordning { 60 } else { 0 };
            let base = format!(
                "{:04}{:02}{:02}{:03}",
                d.year(),
                u8::from(d.month()),
                day,
                serial
            );
            let digits: Vec<u8> = base[2..].bytes().map(|b| b - b'0').collect();
            Personnummer::parse(&format!("{base}{}", ident::luhn_check_digit(&digits))).unwrap()
        })
}

fn status() -> impl Strategy<Value = Arbetssokandestatus> {
    (
        (any::<bool>(), any::<bool>(), proptest::option::of(date())),
        proptest::option::of((kod(16), text(200)).prop_map(|(kod, namn)| Kontor { kod, namn })),
        proptest::option::of(
            (two_digits(), text(200), proptest::option::of(date()))
                .prop_map(|(kod, text, from)| Sokandekategori { kod, text, from }),
        ),
        proptest::option::of(0u8..=100),
        proptest::option::of((date(), kod(16), text(200)).prop_map(
            |(datum, orsak_kod, orsak_text)| Avaktualisering {
                datum,
                orsak_kod,
                orsak_text,
            },
        )),
        proptest::option::of(
            (date(), text(500))
                .prop_map(|(datum, meddelande)| Aktivitetsrapport { datum, meddelande }),
        ),
        proptest::option::of(
            (any::<bool>(), proptest::option::of(text(200)))
                .prop_map(|(medlem, namn)| AKassa { medlem, namn }),
        ),
        any::<bool>(),
    )
        .prop_map(
            |(
                (kand, inskriven, inskrivningsdatum),
                kontor,
                sokandekategori,
                omfattning_procent,
                avaktualisering,
                senaste_aktivitetsrapport,
                a_kassa,
                sekretessmarkering,
            )| {
                Arbetssokandestatus {
                    kand_av_af: kand || inskriven,
                    inskriven,
                    inskrivningsdatum,
                    kontor,
                    sokandekategori,
                    omfattning_procent,
                    avaktualisering,
                    senaste_aktivitetsrapport,
                    a_kassa,
                    sekretessmarkering,
                }
            },
        )
}

fn ersattningar() -> impl Strategy<Value = Ersattningar> {
    let beslut = (
        one_of(Ersattningstyp::ALL),
        0u8..=100,
        date(),
        proptest::option::of(0i64..400),
    )
        .prop_map(|(typ, omfattning_procent, from, len)| Ersattningsbeslut {
            typ,
            omfattning_procent,
            from,
            tom: len.map(|l| from + time::Duration::days(l)),
        });
    (
        proptest::collection::vec(beslut, 0..4),
        proptest::option::of(0u16..=9999),
        proptest::option::of(
            (date(), 0u64..=999_999_999).prop_map(|(datum, o)| Utbetalning {
                datum,
                belopp: Ore(o),
            }),
        ),
    )
        .prop_map(
            |(beslut, aktivitetsstod_dagar, senaste_utbetalning)| Ersattningar {
                beslut,
                aktivitetsstod_dagar,
                senaste_utbetalning,
            },
        )
}

fn handlingsplan() -> impl Strategy<Value = Option<Handlingsplan>> {
    let aktivitet = (
        one_of(AktivitetSlag::ALL),
        kod(16),
        text(200),
        date(),
        proptest::option::of(date()),
        proptest::option::of(0u8..=100),
        proptest::option::of(text(200)),
    )
        .prop_map(
            |(slag, typ_kod, namn, from, tom, omfattning_procent, anordnare)| AfAktivitet {
                slag,
                typ_kod,
                namn,
                from,
                tom,
                omfattning_procent,
                anordnare,
            },
        );
    proptest::option::of(
        (
            date(),
            one_of(HandlingsplanStatus::ALL),
            proptest::option::of(date()),
            any::<bool>(),
            proptest::collection::vec(aktivitet, 0..4),
            proptest::option::of((kod(16), text(200)).prop_map(|(kod, namn)| Kontor { kod, namn })),
            proptest::option::of(
                (text(200), proptest::option::of(text(200)))
                    .prop_map(|(namn, kontaktvag)| AnsvarigHandlaggare { namn, kontaktvag }),
            ),
        )
            .prop_map(
                |(
                    upprattad,
                    status,
                    nasta_uppfoljning,
                    hinder_for_lampligt_arbete,
                    aktiviteter,
                    kontor,
                    ansvarig_handlaggare,
                )| Handlingsplan {
                    upprattad,
                    status,
                    nasta_uppfoljning,
                    hinder_for_lampligt_arbete,
                    aktiviteter,
                    kontor,
                    ansvarig_handlaggare,
                },
            ),
    )
}

fn plan() -> impl Strategy<Value = Aktivitetsplan> {
    let aktivitet = (
        one_of(AktivitetskravSlag::ALL),
        5u16..=80,
        one_of(Omfattning::ALL),
        date(),
        0i64..300,
        any::<bool>(),
        text(200),
    )
        .prop_map(
            |(slag, hours, omfattning, from, len, with_orgnr, namn)| KravAktivitet {
                slag,
                timmar_per_vecka: Tiondelstimmar(hours),
                omfattning,
                period: Tidsperiod::new(from, from + time::Duration::days(len)).unwrap(),
                anordnare: Anordnare {
                    organisationsnummer: with_orgnr
                        .then(|| Organisationsnummer::parse("2120000142").unwrap()),
                    namn,
                },
            },
        );
    (text(64), date(), proptest::collection::vec(aktivitet, 1..5))
        .prop_map(|(plan_id, beslutsdatum, aktiviteter)| Aktivitetsplan {
            plan_id,
            beslutsdatum,
            aktiviteter,
        })
        .prop_filter("at most 40 h at once", |p| {
            p.peak_hours() <= MAX_TIMMAR_PER_VECKA
        })
}

fn program() -> impl Strategy<Value = Program> {
    (kod(16), text(200), date(), proptest::option::of(date())).prop_map(|(kod, namn, from, tom)| {
        Program {
            kod,
            namn,
            from,
            tom,
        }
    })
}

fn handelse() -> impl Strategy<Value = AfHandelse> {
    let detail = prop_oneof![
        Just(Handelse::Inskriven),
        (date(), kod(16), text(200)).prop_map(|(datum, orsak_kod, orsak_text)| {
            Handelse::Avaktualiserad(Avaktualisering {
                datum,
                orsak_kod,
                orsak_text,
            })
        }),
        (two_digits(), text(200), proptest::option::of(date())).prop_map(|(kod, text, from)| {
            Handelse::SokandekategoriAndrad(Sokandekategori { kod, text, from })
        }),
        program().prop_map(Handelse::ProgramStartat),
        program().prop_map(Handelse::ProgramAvslutat),
        (date(), text(200), text(500)).prop_map(|(datum, aktivitet, meddelande)| {
            Handelse::UteblivenAktivitet(UteblivenAktivitet {
                datum,
                aktivitet,
                meddelande,
            })
        }),
    ];
    (any::<u128>(), tidpunkt(), personnummer(), detail).prop_map(
        |(id, tidpunkt, personidentitet, handelse)| AfHandelse {
            handelse_id: uuid::Uuid::from_u128(id),
            tidpunkt,
            personidentitet,
            handelse,
        },
    )
}

fn xml_round_trip(answer: &KommunAnswer) -> String {
    let xml = soap::encode_answer(answer);
    match soap::decode_response(xml.as_bytes(), &XmlLimits::default()) {
        Ok(KommunResponse::Answer(back)) => assert_eq!(&back, answer),
        other => panic!("{other:?}\n{xml}"),
    }
    xml
}

fn json_round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(v: &T) -> T {
    serde_json::from_str(&serde_json::to_string(v).unwrap()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn status_survives_xml_and_json(st in status(), id in any::<u128>()) {
        let korrelationsid = uuid::Uuid::from_u128(id);
        let answer = KommunAnswer::Status(HamtaArbetssokandeStatusSvar { korrelationsid, status: st.clone() });
        let xml = xml_round_trip(&answer);
        let af = json_round_trip(&translate::status_to_af(&st, &["SEKRETESS_FBF"]));
        let back = translate::status_from_af(&af).unwrap();
        prop_assert_eq!(&back, &st);
        prop_assert_eq!(soap::encode_answer(&KommunAnswer::Status(HamtaArbetssokandeStatusSvar { korrelationsid, status: back })), xml);
    }

    #[test]
    fn benefit_decisions_survive_xml_and_json(e in ersattningar()) {
        let answer = KommunAnswer::Ersattningsbeslut(HamtaErsattningsbeslutSvar { korrelationsid: uuid::Uuid::nil(), ersattningar: e.clone() });
        let xml = xml_round_trip(&answer);
        let back = translate::ersattningar_from_af(&json_round_trip(&translate::ersattningar_to_af(&e))).unwrap();
        prop_assert_eq!(&back, &e);
        prop_assert_eq!(soap::encode_answer(&KommunAnswer::Ersattningsbeslut(HamtaErsattningsbeslutSvar { korrelationsid: uuid::Uuid::nil(), ersattningar: back })), xml);
    }

    #[test]
    fn handlingsplan_survives_xml_and_json(h in handlingsplan()) {
        let answer = KommunAnswer::Handlingsplan(HamtaHandlingsplanSvar { korrelationsid: uuid::Uuid::nil(), handlingsplan: h.clone() });
        let xml = xml_round_trip(&answer);
        let back = translate::handlingsplan_from_af(&json_round_trip(&translate::handlingsplan_to_af(h.as_ref()))).unwrap();
        prop_assert_eq!(&back, &h);
        prop_assert_eq!(soap::encode_answer(&KommunAnswer::Handlingsplan(HamtaHandlingsplanSvar { korrelationsid: uuid::Uuid::nil(), handlingsplan: back })), xml);
    }

    #[test]
    fn plans_and_receipts_survive_xml_and_json(p in plan(), pnr in personnummer(), referens in text(64), mottagen in tidpunkt(), updated in any::<bool>()) {
        let mut fraga = brygga::devkit::client::example_fraga("2120000142", "Stockholms stad", "SE2120000142-HL01", "198507099805", "AKT-PLANERING").unwrap();
        fraga.personidentitet = pnr;
        let req = KommunRequest::AnmalAktivitetsplan(fraga.clone(), p.clone());
        let decoded = soap::decode_request(soap::encode_request(&req).as_bytes(), &XmlLimits::default()).unwrap();
        prop_assert_eq!(&decoded, &req);
        let fragande = translate::fragande(&fraga.ingivare.organisationsnummer, &fraga, &fraga.ingivare.handlaggare, None, ("AKT-PLANERING", "Planering"), "a1:AAAAAAAAAAAAAAAAAAAAAA".into());
        let json = json_round_trip(&translate::aktivitetsplan_request(&fraga, Kommunkod::parse("0180").unwrap(), &p, fragande.clone()));
        prop_assert_eq!(&json.fragande, &fragande);
        prop_assert!(translate::check_fragande(&json.fragande).is_ok());
        let (back_pnr, _, back) = translate::aktivitetsplan_from_request(&json).unwrap();
        prop_assert_eq!(&back, &p);
        prop_assert_eq!(back_pnr, fraga.personidentitet);

        let kvittens = Kvittens { referens, mottagen, status: if updated { KvittensStatus::Uppdaterad } else { KvittensStatus::Mottagen } };
        let answer = KommunAnswer::Aktivitetsplan(AnmalAktivitetsplanSvar { korrelationsid: uuid::Uuid::nil(), kvittens: kvittens.clone() });
        xml_round_trip(&answer);
        prop_assert_eq!(translate::kvittens_from_af(&json_round_trip(&translate::kvittens_to_af(&kvittens))).unwrap(), kvittens);
    }

    #[test]
    fn events_survive_json_and_xml(h in handelse(), arende in text(64)) {
        let af_json: af::HandelseJson = json_round_trip(&translate::handelse_to_af(&h));
        let model = translate::handelse_from_af(&af_json).unwrap();
        prop_assert_eq!(&model, &h);
        let event = ArbetssokandeHandelse { af: model, arendeidentitet: arende };
        let xml = soap::encode_handelse(&event);
        prop_assert_eq!(soap::decode_handelse(xml.as_bytes(), &XmlLimits::default()).unwrap(), event);
    }

    #[test]
    fn requests_survive_xml(pnr in personnummer(), from in date(), len in 0i64..366, op in 0u8..4) {
        let mut f = brygga::devkit::client::example_fraga("2120000142", "Stockholms stad", "SE2120000142-HL01", "198507099805", "EKB-BESLUT").unwrap();
        f.personidentitet = pnr;
        f.tidsperiod = Tidsperiod::new(from, from + time::Duration::days(len)).unwrap();
        let req = match op {
            0 => KommunRequest::HamtaArbetssokandeStatus(f),
            1 => KommunRequest::HamtaErsattningsbeslut(f),
            2 => KommunRequest::HamtaHandlingsplan(f),
            _ => KommunRequest::Ping(f.korrelationsid),
        };
        prop_assert_eq!(soap::decode_request(soap::encode_request(&req).as_bytes(), &XmlLimits::default()).unwrap(), req);
    }

    #[test]
    fn no_byte_string_makes_a_decoder_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let limits = XmlLimits::default();
        let _ = soap::decode_request(&bytes, &limits);
        let _ = soap::decode_response(&bytes, &limits);
        let _ = soap::decode_handelse(&bytes, &limits);
        let _ = soap::decode_handelse_kvittens(&bytes, &limits);
        let _ = brygga::contract::validate::validate(&bytes);
    }

    #[test]
    fn no_xml_shaped_input_makes_a_decoder_panic(s in "(<[a-zA-Z:]{1,6}( xmlns(:[a-z]{1,3})?=\"[a-z:]{0,20}\")?>|</[a-zA-Z:]{1,6}>|&[a-z#0-9]{0,6};|[^<&]{0,10}){0,40}") {
        let _ = soap::decode_request(s.as_bytes(), &XmlLimits::default());
        let _ = brygga::contract::validate::validate(s.as_bytes());
    }
}
