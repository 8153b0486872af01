//! The log extract (registerutdrag) as a document, HSLF-FS 2016:40 4 kap. 9 §: a header that
//! says whom it concerns (never the number), the period, who made it and when, and whether the
//! chain verified; then each access: what (operation, data categories), who (case worker,
//! unit, function, organisation), when, why (purpose and its description, the legal basis the
//! caller stated), the processor when there is one, and whether the identity is protected.
//! Text, HTML and PDF for people; JSON carries the proof `brygga audit verify --export`
//! checks away from the store.

use serde::{Deserialize, Serialize};

use crate::cli::pdf::{self, Line};
use crate::store::audit::{Entry, Proof};

/// The extract's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// What the document is: a log extract, or a sample for review.
    pub title: String,
    /// Whom or what it concerns, in words; never the identity number.
    pub concerns: String,
    /// The period it covers.
    pub period: String,
    /// Who made it, and when (UTC).
    pub made_by: String,
    pub made_at: String,
    /// Why it was made, as the operator said.
    pub reason: Option<String>,
    /// The chain's verification when it was made: whether it verified, and what it said.
    pub chain_verified: bool,
    pub chain: String,
    /// The chain's id.
    pub chain_id: Option<String>,
}

/// One access as the extract shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub seq: u64,
    /// The record's entry, as the chain holds it.
    pub entry: Entry,
    /// The purpose's description, from the configuration.
    pub syfte_beskrivning: Option<String>,
}

/// The whole extract, as its JSON form is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extract {
    pub extract: Header,
    pub records: Vec<Row>,
    /// What proves the records are in the chain; absent when the chain could not prove it.
    pub proof: Option<Proof>,
}

/// The forms an extract is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Html,
    Pdf,
    Json,
}

pub fn render(x: &Extract, format: Format) -> Vec<u8> {
    match format {
        Format::Text => text(x).into_bytes(),
        Format::Html => html(x).into_bytes(),
        Format::Pdf => pdf(x),
        Format::Json => {
            let mut out = serde_json::to_vec_pretty(x).unwrap_or_default();
            out.push(b'\n');
            out
        }
    }
}

/// The header's lines, label and value, as a person may be shown them.
fn header_fields(h: &Header) -> Vec<(&'static str, String)> {
    header_values(h)
        .into_iter()
        .map(|(k, v)| (k, crate::model::lexical::shown(&v)))
        .collect()
}

fn header_values(h: &Header) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("Concerns", h.concerns.clone()),
        ("Period", h.period.clone()),
        ("Made by", format!("{} at {} (UTC)", h.made_by, h.made_at)),
    ];
    if let Some(r) = &h.reason {
        out.push(("Reason", r.clone()));
    }
    out.push((
        "Audit chain",
        format!(
            "{}{}",
            h.chain,
            h.chain_id
                .as_ref()
                .map(|c| format!(" (chain {c})"))
                .unwrap_or_default()
        ),
    ));
    out
}

/// A record's lines, label and value (what, who, when, why), as a person may be shown them:
/// a control or formatting character a case system slipped in is written out, not obeyed.
fn row_fields(r: &Row) -> Vec<(&'static str, String)> {
    row_values(r)
        .into_iter()
        .map(|(k, v)| (k, crate::model::lexical::shown(&v)))
        .collect()
}

fn row_values(r: &Row) -> Vec<(&'static str, String)> {
    let e = &r.entry;
    let or_dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let mut who = or_dash(&e.handlaggare);
    if let Some(u) = &e.enhet {
        who.push_str(&format!(", unit {u}"));
    }
    if let Some(f) = &e.funktion {
        who.push_str(&format!(", function {f}"));
    }
    who.push_str(&format!(", organisation {}", e.organisation));
    let why = match (&e.syfte, &r.syfte_beskrivning) {
        (Some(k), Some(b)) => format!("{k} — {b}"),
        (Some(k), None) => k.clone(),
        (None, _) => "-".into(),
    };
    let mut out = vec![
        ("When", format!("{} (UTC)", e.time)),
        (
            "What",
            format!(
                "{} ({}), outcome {}; data categories: {}",
                e.operation,
                e.action.as_str(),
                e.outcome,
                if e.kategorier.is_empty() {
                    "none".to_owned()
                } else {
                    e.kategorier.join(", ")
                }
            ),
        ),
        ("Who", who),
        ("Why", why),
        ("Legal basis", or_dash(&e.lagrum)),
    ];
    if let Some(p) = &e.personuppgiftsbitrade {
        out.push(("Processor (personuppgiftsbiträde)", p.clone()));
    }
    if e.skyddad_identitet {
        out.push((
            "Protected identity",
            "yes: AF marks the person's identity as protected (sekretessmarkering)".into(),
        ));
    }
    if let Some(sample) = &e.sample {
        out.push((
            "Sample drawn",
            format!(
                "{}: {} of {} access(es) from {} before {}: records {}",
                sample.id,
                sample.records.len(),
                sample.population,
                sample.from,
                sample.to,
                sample
                    .records
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if let Some(review) = &e.review {
        out.push((
            "Review",
            format!(
                "record {}: {}{}{}",
                review.record,
                review.verdict.as_str(),
                review
                    .sample
                    .as_ref()
                    .map(|s| format!(", sample {s}"))
                    .unwrap_or_default(),
                review
                    .reference
                    .as_ref()
                    .map(|r| format!(", follow-up {r}"))
                    .unwrap_or_default()
            ),
        ));
    }
    out.push((
        "Case, correlation",
        format!("{} / {}", or_dash(&e.arende), e.korrelationsid),
    ));
    out
}

/// The title of a log extract.
pub const EXTRACT_TITLE: &str = "Log extract (registerutdrag) from brygga's audit chain";
/// The title of a sample drawn for review.
pub const SAMPLE_TITLE: &str = "Sample for review (loggkontroll) from brygga's audit chain";

fn text(x: &Extract) -> String {
    let mut out = format!("{}\n\n", x.extract.title);
    for (k, v) in header_fields(&x.extract) {
        out.push_str(&format!("{k:<12} {v}\n"));
    }
    out.push_str(&format!("\n{} record(s)\n", x.records.len()));
    for r in &x.records {
        out.push_str(&format!("\nrecord {}\n", r.seq));
        for (k, v) in row_fields(r) {
            out.push_str(&format!("  {k:<20} {v}\n"));
        }
    }
    out
}

fn html(x: &Extract) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let title = esc(&x.extract.title);
    let mut out = format!(
        "<!doctype html>\n<html lang=\"sv\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;font-size:10pt}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #999;padding:2px 6px;text-align:left;vertical-align:top}}\
         .bad{{color:#a00;font-weight:bold}}</style></head><body>\n<h1>{title}</h1>\n<table id=\"header\">\n"
    );
    for (k, v) in header_fields(&x.extract) {
        let class = if k == "Audit chain" && !x.extract.chain_verified {
            " class=\"bad\""
        } else {
            ""
        };
        out.push_str(&format!(
            "<tr><th>{}</th><td{class}>{}</td></tr>\n",
            esc(k),
            esc(&v)
        ));
    }
    out.push_str(&format!(
        "</table>\n<h2>{} record(s)</h2>\n<table id=\"records\">\n<tr><th>record</th>",
        x.records.len()
    ));
    // Each record its own rows: its fields differ (a processor, a protected identity).
    out.push_str("<th>field</th><th>value</th></tr>\n");
    for r in &x.records {
        let fields = row_fields(r);
        for (i, (k, v)) in fields.iter().enumerate() {
            out.push_str("<tr>");
            if i == 0 {
                out.push_str(&format!("<td rowspan=\"{}\">{}</td>", fields.len(), r.seq));
            }
            out.push_str(&format!("<td>{}</td><td>{}</td></tr>\n", esc(k), esc(v)));
        }
    }
    out.push_str("</table>\n</body></html>\n");
    out
}

fn pdf(x: &Extract) -> Vec<u8> {
    let mut lines = vec![Line::heading(x.extract.title.clone(), 14.0), Line::text("")];
    for (k, v) in header_fields(&x.extract) {
        lines.push(Line::text(format!("{k}: {v}")).bold());
    }
    lines.push(Line::text(""));
    lines.push(Line::heading(
        format!("{} record(s)", x.records.len()),
        11.0,
    ));
    for r in &x.records {
        lines.push(Line::text(""));
        lines.push(Line::text(format!("Record {}", r.seq)).bold());
        for (k, v) in row_fields(r) {
            lines.push(Line::text(format!("{k}: {v}")).indented(12.0));
        }
    }
    pdf::document(
        &lines,
        &format!("{}, made {} (UTC)", x.extract.title, x.extract.made_at),
    )
}
