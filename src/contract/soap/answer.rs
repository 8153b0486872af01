//! Answers and Faults to the municipality, both ways.

use super::*;

pub(super) fn encode_kontor(o: &mut Out, k: &Kontor) {
    o.leaf("Kod", &k.kod);
    o.leaf("Namn", &k.namn);
}

/// Encodes an answer of the `kommun` listener.
pub fn encode_answer(answer: &KommunAnswer) -> String {
    let mut o = Out::envelope();
    match answer {
        KommunAnswer::Status(svar) => o.node("HamtaArbetssokandeStatusSvar", |o| {
            let s = &svar.status;
            o.leaf("Korrelationsid", &svar.korrelationsid.to_string());
            o.node("Arbetssokandestatus", |o| {
                o.boolean("KandAvAf", s.kand_av_af);
                o.boolean("Inskriven", s.inskriven);
                o.opt_date("Inskrivningsdatum", s.inskrivningsdatum);
                o.opt_node("Kontor", s.kontor.as_ref(), encode_kontor);
                o.opt_node("Sokandekategori", s.sokandekategori.as_ref(), |o, k| {
                    o.leaf("Kod", &k.kod);
                    o.leaf("Text", &k.text);
                    o.opt_date("From", k.from);
                });
                o.opt(
                    "OmfattningProcent",
                    s.omfattning_procent.map(|p| p.to_string()).as_deref(),
                );
                o.opt_node(
                    "Avaktualisering",
                    s.avaktualisering.as_ref(),
                    encode_avaktualisering,
                );
                o.opt_node(
                    "SenasteAktivitetsrapport",
                    s.senaste_aktivitetsrapport.as_ref(),
                    |o, r| {
                        o.date("Datum", r.datum);
                        o.leaf("Meddelande", &r.meddelande);
                    },
                );
                o.opt_node("AKassa", s.a_kassa.as_ref(), |o, a| {
                    o.boolean("Medlem", a.medlem);
                    o.opt("Namn", a.namn.as_deref());
                });
                o.boolean("Sekretessmarkering", s.sekretessmarkering);
            });
        }),
        KommunAnswer::Ersattningsbeslut(svar) => o.node("HamtaErsattningsbeslutSvar", |o| {
            let e = &svar.ersattningar;
            o.leaf("Korrelationsid", &svar.korrelationsid.to_string());
            o.node("Ersattningar", |o| {
                for b in &e.beslut {
                    o.node("Beslut", |o| {
                        o.leaf("Typ", b.typ.code());
                        o.leaf("OmfattningProcent", &b.omfattning_procent.to_string());
                        o.date("From", b.from);
                        o.opt_date("Tom", b.tom);
                    });
                }
                o.opt(
                    "AktivitetsstodDagar",
                    e.aktivitetsstod_dagar.map(|d| d.to_string()).as_deref(),
                );
                o.opt_node(
                    "SenasteUtbetalning",
                    e.senaste_utbetalning.as_ref(),
                    |o, u| {
                        o.date("Datum", u.datum);
                        o.leaf("BeloppKr", &lexical::format_decimal(u.belopp.0, 2));
                    },
                );
            });
        }),
        KommunAnswer::Handlingsplan(svar) => o.node("HamtaHandlingsplanSvar", |o| {
            o.leaf("Korrelationsid", &svar.korrelationsid.to_string());
            o.opt_node("Handlingsplan", svar.handlingsplan.as_ref(), |o, h| {
                o.date("Upprattad", h.upprattad);
                o.leaf("Status", h.status.code());
                o.opt_date("NastaUppfoljning", h.nasta_uppfoljning);
                o.boolean("HinderForLampligtArbete", h.hinder_for_lampligt_arbete);
                for a in &h.aktiviteter {
                    o.node("Aktivitet", |o| {
                        o.leaf("Slag", a.slag.code());
                        o.leaf("TypKod", &a.typ_kod);
                        o.leaf("Namn", &a.namn);
                        o.date("From", a.from);
                        o.opt_date("Tom", a.tom);
                        o.opt(
                            "OmfattningProcent",
                            a.omfattning_procent.map(|p| p.to_string()).as_deref(),
                        );
                        o.opt("Anordnare", a.anordnare.as_deref());
                    });
                }
                o.opt_node("Kontor", h.kontor.as_ref(), encode_kontor);
                o.opt_node(
                    "AnsvarigHandlaggare",
                    h.ansvarig_handlaggare.as_ref(),
                    |o, a| {
                        o.leaf("Namn", &a.namn);
                        o.opt("Kontaktvag", a.kontaktvag.as_deref());
                    },
                );
            });
        }),
        KommunAnswer::Aktivitetsplan(svar) => o.node("AnmalAktivitetsplanSvar", |o| {
            o.leaf("Korrelationsid", &svar.korrelationsid.to_string());
            o.node("Kvittens", |o| {
                o.leaf("Referens", &svar.kvittens.referens);
                o.leaf(
                    "Mottagen",
                    &lexical::format_tidpunkt(svar.kvittens.mottagen),
                );
                o.leaf("Status", svar.kvittens.status.code());
            });
        }),
        KommunAnswer::Ping(svar) => o.node("PingSvar", |o| {
            o.leaf("Korrelationsid", &svar.korrelationsid.to_string());
            for t in &svar.tjanster {
                o.node("Tjanst", |o| {
                    o.leaf("Namn", &t.namn);
                    o.leaf("Status", t.status.code());
                    o.opt(
                        "SvarstidMs",
                        t.svarstid_ms.map(|m| m.to_string()).as_deref(),
                    );
                });
            }
        }),
        KommunAnswer::RegistreraPrenumeration(svar) => o.node("RegistreraPrenumerationSvar", |o| {
            o.leaf("Korrelationsid", &svar.korrelationsid.to_string());
            encode_prenumeration(o, &svar.prenumeration);
        }),
        KommunAnswer::AvslutaPrenumeration(svar) => o.node("AvslutaPrenumerationSvar", |o| {
            o.leaf("Korrelationsid", &svar.korrelationsid.to_string());
            encode_prenumeration(o, &svar.prenumeration);
        }),
        KommunAnswer::ListaPrenumerationer(svar) => o.node("ListaPrenumerationerSvar", |o| {
            o.leaf("Korrelationsid", &svar.korrelationsid.to_string());
            for p in &svar.prenumerationer {
                encode_prenumeration(o, p);
            }
        }),
    }
    o.finish()
}

pub(super) fn encode_avaktualisering(o: &mut Out, a: &Avaktualisering) {
    o.date("Datum", a.datum);
    o.leaf("OrsakKod", &a.orsak_kod);
    o.leaf("OrsakText", &a.orsak_text);
}

/// Encodes a SOAP 1.1 Fault with `detail/Fel` and its `faultcode` (`soap:Client` when the
/// caller can fix the request, `soap:MustUnderstand`, or `soap:Server`).
pub fn encode_fault(fel: &Fel, code: &str) -> String {
    let mut o = Out::envelope();
    let _ = write!(
        o.0,
        r#"<soap:Fault><faultcode>{code}</faultcode><faultstring>{}</faultstring><detail>"#,
        escape(&fel.meddelande)
    );
    o.node("Fel", |o| {
        o.leaf("Kalla", fel.kalla.as_str());
        o.leaf("Felkod", &fel.felkod);
        o.leaf("Meddelande", &fel.meddelande);
        o.opt("Falt", fel.falt.as_deref());
        o.leaf("Korrelationsid", &fel.korrelationsid.to_string());
        o.boolean("KanForsokasIgen", fel.kan_forsokas_igen);
        o.opt("Operation", fel.operation.as_deref());
    });
    o.0.push_str("</detail></soap:Fault>");
    o.finish()
}

/// An answer as a case system sees it: data, or a Fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KommunResponse {
    Answer(KommunAnswer),
    Fault {
        faultcode: String,
        faultstring: String,
        fel: Option<Fel>,
    },
}

pub(super) fn decode_kontor(s: &mut Seq<'_>) -> Result<Kontor, DecodeError> {
    Ok(Kontor {
        kod: s.leaf("Kod", text(1, 16))?,
        namn: s.leaf("Namn", text(1, 200))?,
    })
}

pub(super) fn decode_avaktualisering(s: &mut Seq<'_>) -> Result<Avaktualisering, DecodeError> {
    Ok(Avaktualisering {
        datum: s.leaf("Datum", date)?,
        orsak_kod: s.leaf("OrsakKod", text(1, 16))?,
        orsak_text: s.leaf("OrsakText", text(1, 200))?,
    })
}

pub(super) fn decode_sokandekategori(s: &mut Seq<'_>) -> Result<Sokandekategori, DecodeError> {
    Ok(Sokandekategori {
        kod: s.leaf("Kod", pattern(two_digits, "must be two digits"))?,
        text: s.leaf("Text", text(1, 200))?,
        from: s.opt_leaf("From", date)?,
    })
}

pub(super) fn decode_status(s: &mut Seq<'_>) -> Result<Arbetssokandestatus, DecodeError> {
    Ok(Arbetssokandestatus {
        kand_av_af: s.leaf("KandAvAf", boolean)?,
        inskriven: s.leaf("Inskriven", boolean)?,
        inskrivningsdatum: s.opt_leaf("Inskrivningsdatum", date)?,
        kontor: s.opt_node("Kontor", decode_kontor)?,
        sokandekategori: s.opt_node("Sokandekategori", decode_sokandekategori)?,
        omfattning_procent: s.opt_leaf("OmfattningProcent", procent)?,
        avaktualisering: s.opt_node("Avaktualisering", decode_avaktualisering)?,
        senaste_aktivitetsrapport: s.opt_node("SenasteAktivitetsrapport", |s| {
            Ok(Aktivitetsrapport {
                datum: s.leaf("Datum", date)?,
                meddelande: s.leaf("Meddelande", text(1, 500))?,
            })
        })?,
        a_kassa: s.opt_node("AKassa", |s| {
            Ok(AKassa {
                medlem: s.leaf("Medlem", boolean)?,
                namn: s.opt_leaf("Namn", text(1, 200))?,
            })
        })?,
        sekretessmarkering: s.leaf("Sekretessmarkering", boolean)?,
    })
}

pub(super) fn decode_ersattningar(s: &mut Seq<'_>) -> Result<Ersattningar, DecodeError> {
    Ok(Ersattningar {
        beslut: s.many("Beslut", 0, usize::MAX, |s| {
            let path = s.path.clone();
            let b = Ersattningsbeslut {
                typ: s.leaf(
                    "Typ",
                    code(Ersattningstyp::from_code, Ersattningstyp::codes),
                )?,
                omfattning_procent: s.leaf("OmfattningProcent", procent)?,
                from: s.leaf("From", date)?,
                tom: s.opt_leaf("Tom", date)?,
            };
            if b.tom.is_some_and(|tom| tom < b.from) {
                return Err(invalid(&path, "From must not be after Tom"));
            }
            Ok(b)
        })?,
        aktivitetsstod_dagar: s
            .opt_leaf("AktivitetsstodDagar", int(0, 9999))?
            .map(|d| d as u16),
        senaste_utbetalning: s.opt_node("SenasteUtbetalning", |s| {
            Ok(Utbetalning {
                datum: s.leaf("Datum", date)?,
                belopp: Ore(s.leaf("BeloppKr", |t, p| {
                    lexical::parse_decimal(t, 2, 0, 999_999_999).map_err(|e| invalid(p, e))
                })?),
            })
        })?,
    })
}

pub(super) fn decode_handlingsplan(s: &mut Seq<'_>) -> Result<Handlingsplan, DecodeError> {
    Ok(Handlingsplan {
        upprattad: s.leaf("Upprattad", date)?,
        status: s.leaf(
            "Status",
            code(HandlingsplanStatus::from_code, HandlingsplanStatus::codes),
        )?,
        nasta_uppfoljning: s.opt_leaf("NastaUppfoljning", date)?,
        hinder_for_lampligt_arbete: s.leaf("HinderForLampligtArbete", boolean)?,
        aktiviteter: s.many("Aktivitet", 0, 100, |s| {
            Ok(AfAktivitet {
                slag: s.leaf("Slag", code(AktivitetSlag::from_code, AktivitetSlag::codes))?,
                typ_kod: s.leaf("TypKod", text(1, 16))?,
                namn: s.leaf("Namn", text(1, 200))?,
                from: s.leaf("From", date)?,
                tom: s.opt_leaf("Tom", date)?,
                omfattning_procent: s.opt_leaf("OmfattningProcent", procent)?,
                anordnare: s.opt_leaf("Anordnare", text(1, 200))?,
            })
        })?,
        kontor: s.opt_node("Kontor", decode_kontor)?,
        ansvarig_handlaggare: s.opt_node("AnsvarigHandlaggare", |s| {
            Ok(AnsvarigHandlaggare {
                namn: s.leaf("Namn", text(1, 200))?,
                kontaktvag: s.opt_leaf("Kontaktvag", text(1, 200))?,
            })
        })?,
    })
}

pub(super) fn decode_fel(s: &mut Seq<'_>) -> Result<Fel, DecodeError> {
    Ok(Fel {
        kalla: s.leaf("Kalla", |t, p| match t {
            "GATEWAY" => Ok(Kalla::Gateway),
            "AF" => Ok(Kalla::Af),
            _ => Err(invalid(p, "must be GATEWAY or AF")),
        })?,
        felkod: s.leaf(
            "Felkod",
            pattern(
                |t| {
                    let b = t.as_bytes();
                    (3..=64).contains(&b.len())
                        && b[0].is_ascii_uppercase()
                        && b[1..]
                            .iter()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
                },
                "must be a code such as OGILTIGT_FALT (A-Z, 0-9, '_', 3 to 64 characters)",
            ),
        )?,
        meddelande: s.leaf("Meddelande", text(1, 1000))?,
        falt: s.opt_leaf("Falt", text(1, 200))?,
        korrelationsid: s.leaf("Korrelationsid", uuid)?,
        kan_forsokas_igen: s.leaf("KanForsokasIgen", boolean)?,
        operation: s.opt_leaf("Operation", text(1, 64))?,
    })
}

/// A SOAP 1.1 Fault: `faultcode`, `faultstring`, optional `faultactor` and `detail`, in that
/// order and unqualified; brygga's `Fel` in `detail` when there is one.
pub(super) fn decode_fault(el: &Element) -> Result<KommunResponse, DecodeError> {
    let mut children = el.children.iter().peekable();
    let mut take = |name: &str, required: bool| -> Result<Option<&Element>, DecodeError> {
        match children.peek() {
            Some(c) if c.ns.is_none() && c.name == name => Ok(children.next()),
            _ if required => Err(DecodeError::at(
                DecodeKind::Missing,
                &format!("Fault/{name}"),
                "required element is missing",
            )),
            _ => Ok(None),
        }
    };
    let faultcode = take("faultcode", true)?
        .map(|c| c.text.trim().to_owned())
        .unwrap_or_default();
    let faultstring = take("faultstring", true)?
        .map(|c| c.text.trim().to_owned())
        .unwrap_or_default();
    take("faultactor", false)?;
    let detail = take("detail", false)?;
    if let Some(extra) = children.next() {
        return Err(DecodeError::at(
            DecodeKind::Unexpected,
            &format!("Fault/{}", extra.name),
            "element not allowed here",
        ));
    }
    let fel = match detail.and_then(|d| d.children.iter().find(|c| c.is(KOMMUN_NS, "Fel"))) {
        Some(f) => {
            let mut s = Seq::new(f, "Fel".to_owned())?;
            let fel = decode_fel(&mut s)?;
            s.finish()?;
            Some(fel)
        }
        None => None,
    };
    Ok(KommunResponse::Fault {
        faultcode,
        faultstring,
        fel,
    })
}

/// Decodes an answer envelope: an operation's answer or a Fault.
pub fn decode_response(bytes: &[u8], limits: &XmlLimits) -> Result<KommunResponse, DecodeError> {
    let root = xml::parse(bytes, limits)?;
    let el = body_element(&root)?;
    if el.is(SOAP_ENV_NS, "Fault") {
        return decode_fault(el);
    }
    if el.ns.as_deref() != Some(KOMMUN_NS) {
        return Err(DecodeError::doc(
            DecodeKind::UnknownOperation,
            format!("{} is not an answer of this service", el.name),
        ));
    }
    let answer = match el.name.as_str() {
        "HamtaArbetssokandeStatusSvar" => decode_root(el, |s| {
            Ok(KommunAnswer::Status(HamtaArbetssokandeStatusSvar {
                korrelationsid: s.leaf("Korrelationsid", uuid)?,
                status: s.node("Arbetssokandestatus", decode_status)?,
            }))
        })?,
        "HamtaErsattningsbeslutSvar" => decode_root(el, |s| {
            Ok(KommunAnswer::Ersattningsbeslut(
                HamtaErsattningsbeslutSvar {
                    korrelationsid: s.leaf("Korrelationsid", uuid)?,
                    ersattningar: s.node("Ersattningar", decode_ersattningar)?,
                },
            ))
        })?,
        "HamtaHandlingsplanSvar" => decode_root(el, |s| {
            Ok(KommunAnswer::Handlingsplan(HamtaHandlingsplanSvar {
                korrelationsid: s.leaf("Korrelationsid", uuid)?,
                handlingsplan: s.opt_node("Handlingsplan", decode_handlingsplan)?,
            }))
        })?,
        "AnmalAktivitetsplanSvar" => decode_root(el, |s| {
            Ok(KommunAnswer::Aktivitetsplan(AnmalAktivitetsplanSvar {
                korrelationsid: s.leaf("Korrelationsid", uuid)?,
                kvittens: s.node("Kvittens", |s| {
                    Ok(Kvittens {
                        referens: s.leaf("Referens", text(1, 64))?,
                        mottagen: s.leaf("Mottagen", tidpunkt)?,
                        status: s.leaf(
                            "Status",
                            code(KvittensStatus::from_code, KvittensStatus::codes),
                        )?,
                    })
                })?,
            }))
        })?,
        "PingSvar" => decode_root(el, |s| {
            Ok(KommunAnswer::Ping(PingSvar {
                korrelationsid: s.leaf("Korrelationsid", uuid)?,
                tjanster: s.many("Tjanst", 1, 10, |s| {
                    Ok(Tjanst {
                        namn: s.leaf("Namn", text(1, 200))?,
                        status: s
                            .leaf("Status", code(TjanstStatus::from_code, TjanstStatus::codes))?,
                        svarstid_ms: s.opt_leaf("SvarstidMs", int(0, 600_000))?.map(|m| m as u32),
                    })
                })?,
            }))
        })?,
        "RegistreraPrenumerationSvar" => decode_root(el, |s| {
            Ok(KommunAnswer::RegistreraPrenumeration(PrenumerationSvar {
                korrelationsid: s.leaf("Korrelationsid", uuid)?,
                prenumeration: s.node("Prenumeration", decode_prenumeration)?,
            }))
        })?,
        "AvslutaPrenumerationSvar" => decode_root(el, |s| {
            Ok(KommunAnswer::AvslutaPrenumeration(PrenumerationSvar {
                korrelationsid: s.leaf("Korrelationsid", uuid)?,
                prenumeration: s.node("Prenumeration", decode_prenumeration)?,
            }))
        })?,
        "ListaPrenumerationerSvar" => decode_root(el, |s| {
            Ok(KommunAnswer::ListaPrenumerationer(
                ListaPrenumerationerSvar {
                    korrelationsid: s.leaf("Korrelationsid", uuid)?,
                    prenumerationer: s.many("Prenumeration", 0, 100, decode_prenumeration)?,
                },
            ))
        })?,
        other => {
            return Err(DecodeError::doc(
                DecodeKind::UnknownOperation,
                format!("{other} is not an answer of this service"),
            ));
        }
    };
    Ok(KommunResponse::Answer(answer))
}
