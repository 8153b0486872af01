//! SOAP 1.1 (document/literal) encoding of interface v1: requests, answers and Faults.
//!
//! Decoding follows the XSD in `schemas/kommun/v1/`: elements in sequence, in the kommun
//! namespace; elements of *other* namespaces are tolerated at the end of a sequence (the
//! extension point) and dropped; text is whitespace-collapsed like `xs:token`.

use std::fmt::Write as _;

use time::Date;
use uuid::Uuid;

use super::xml::{self, Element, XmlError, XmlLimits, escape};
use crate::model::ident::{format_date, parse_date, parse_uuid};
use crate::model::*;

/// Namespace of the SOAP 1.1 envelope.
pub const SOAP_ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// What kind of problem a decode found; decides the Felkod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeKind {
    /// Not well-formed XML, or not UTF-8.
    Malformed,
    /// A parser limit (depth, element count, text length) was exceeded.
    Limit,
    /// DTD or entity declarations.
    Forbidden,
    /// Well-formed, but not a SOAP 1.1 envelope with one body element.
    NotSoap,
    /// The body element is not an operation of this interface.
    UnknownOperation,
    /// A required element is missing.
    Missing,
    /// An element's content breaks its rule.
    Invalid,
    /// An element that the contract does not allow at this place.
    Unexpected,
}

/// A decode failure: which kind, where (`Fraga/Personidentitet`), and a message to act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", path.as_ref().map(|p| format!("{p}: ")).unwrap_or_default())]
pub struct DecodeError {
    pub kind: DecodeKind,
    pub path: Option<String>,
    pub message: String,
}

impl DecodeError {
    fn at(kind: DecodeKind, path: &str, message: impl Into<String>) -> Self {
        Self {
            kind,
            path: Some(path.to_owned()),
            message: message.into(),
        }
    }
    fn doc(kind: DecodeKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            path: None,
            message: message.into(),
        }
    }
}

impl From<XmlError> for DecodeError {
    fn from(e: XmlError) -> Self {
        let kind = match &e {
            XmlError::Doctype | XmlError::Entity(_) => DecodeKind::Forbidden,
            e if e.is_limit() => DecodeKind::Limit,
            _ => DecodeKind::Malformed,
        };
        DecodeError::doc(kind, e.to_string())
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

/// Walks an element's children in the order the contract gives.
struct Seq<'a> {
    el: &'a Element,
    path: String,
    next: usize,
}

impl<'a> Seq<'a> {
    fn new(el: &'a Element, path: String) -> Result<Self, DecodeError> {
        if !el.text.trim().is_empty() {
            return Err(DecodeError::at(
                DecodeKind::Invalid,
                &path,
                "text is not allowed here, only child elements",
            ));
        }
        Ok(Self { el, path, next: 0 })
    }

    fn opt(&mut self, name: &str) -> Option<(&'a Element, String)> {
        let child = self.el.children.get(self.next)?;
        if child.is(KOMMUN_NS, name) {
            self.next += 1;
            Some((child, join(&self.path, name)))
        } else {
            None
        }
    }

    fn req(&mut self, name: &str) -> Result<(&'a Element, String), DecodeError> {
        if let Some(found) = self.opt(name) {
            return Ok(found);
        }
        let path = join(&self.path, name);
        Err(match self.el.children.get(self.next) {
            Some(c) if c.name == name => DecodeError::at(
                DecodeKind::Invalid,
                &path,
                format!("the element must be in namespace {KOMMUN_NS}"),
            ),
            Some(c) => DecodeError::at(
                DecodeKind::Missing,
                &path,
                format!(
                    "required element is missing (found {} in its place)",
                    c.name
                ),
            ),
            None => DecodeError::at(DecodeKind::Missing, &path, "required element is missing"),
        })
    }

    /// The rest may only be extension elements of other namespaces, which are dropped.
    fn finish(self) -> Result<(), DecodeError> {
        for c in &self.el.children[self.next..] {
            let foreign = c.ns.as_deref().is_some_and(|ns| ns != KOMMUN_NS);
            if !foreign {
                return Err(DecodeError::at(
                    DecodeKind::Unexpected,
                    &join(&self.path, &c.name),
                    "element not allowed here (wrong order, repeated, or unknown in this namespace)",
                ));
            }
        }
        Ok(())
    }
}

/// The element's text, whitespace-collapsed as `xs:token` does; the element must be a leaf.
fn token(el: &Element, path: &str) -> Result<String, DecodeError> {
    if !el.children.is_empty() {
        return Err(DecodeError::at(
            DecodeKind::Invalid,
            path,
            "must hold text, not child elements",
        ));
    }
    Ok(el.text.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn text(el: &Element, path: &str, min: usize, max: usize) -> Result<String, DecodeError> {
    let t = token(el, path)?;
    let n = t.chars().count();
    if n < min {
        return Err(DecodeError::at(
            DecodeKind::Invalid,
            path,
            "must not be empty",
        ));
    }
    if n > max {
        return Err(DecodeError::at(
            DecodeKind::Invalid,
            path,
            format!("is {n} characters long, at most {max} are allowed"),
        ));
    }
    Ok(t)
}

fn parsed<T, E: std::fmt::Display>(
    el: &Element,
    path: &str,
    f: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, DecodeError> {
    let t = token(el, path)?;
    f(&t).map_err(|e| DecodeError::at(DecodeKind::Invalid, path, e.to_string()))
}

fn date(el: &Element, path: &str) -> Result<Date, DecodeError> {
    parsed(el, path, parse_date)
}

fn boolean(el: &Element, path: &str) -> Result<bool, DecodeError> {
    parsed(el, path, |t| match t {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err("must be true or false"),
    })
}

fn pattern_check(path: &str, ok: bool, rule: &str) -> Result<(), DecodeError> {
    if ok {
        Ok(())
    } else {
        Err(DecodeError::at(DecodeKind::Invalid, path, rule))
    }
}

fn decode_fraga(el: &Element, path: String) -> Result<Fraga, DecodeError> {
    let mut s = Seq::new(el, path)?;
    let (e, p) = s.req("Korrelationsid")?;
    let korrelationsid = parsed(e, &p, parse_uuid)?;

    let (ing, ip) = s.req("Ingivare")?;
    let mut si = Seq::new(ing, ip)?;
    let (e, p) = si.req("Organisationsnummer")?;
    let organisationsnummer = parsed(e, &p, |t| {
        if t.len() != 12 {
            return Err("must be the 12-digit form 16NNNNNNNNNN".to_owned());
        }
        Organisationsnummer::parse(t).map_err(|e| e.to_string())
    })?;
    let (e, p) = si.req("Namn")?;
    let namn = text(e, &p, 1, 200)?;
    let (e, p) = si.req("Handlaggare")?;
    let handlaggare = parsed(e, &p, HsaId::parse)?;
    si.finish()?;

    let (e, p) = s.req("Arendeidentitet")?;
    let arendeidentitet = text(e, &p, 1, 64)?;
    let (e, p) = s.req("Personidentitet")?;
    let personidentitet = parsed(e, &p, Personnummer::parse)?;

    let (tp, tpp) = s.req("Tidsperiod")?;
    let mut st = Seq::new(tp, tpp.clone())?;
    let (e, p) = st.req("From")?;
    let from = date(e, &p)?;
    let (e, p) = st.req("Tom")?;
    let tom = date(e, &p)?;
    st.finish()?;
    let tidsperiod = Tidsperiod::new(from, tom)
        .ok_or_else(|| DecodeError::at(DecodeKind::Invalid, &tpp, "From must not be after Tom"))?;

    let (e, p) = s.req("Syfte")?;
    let syfte = token(e, &p)?;
    pattern_check(
        &p,
        is_code(&syfte),
        "must be a purpose code such as EKB-BESLUT (A-Z, 0-9, '-', 2 to 32 characters)",
    )?;
    let (e, p) = s.req("Lagrum")?;
    let lagrum = text(e, &p, 1, 500)?;
    let personuppgiftsbitrade = match s.opt("Personuppgiftsbitrade") {
        Some((e, p)) => Some(text(e, &p, 1, 200)?),
        None => None,
    };
    s.finish()?;
    Ok(Fraga {
        korrelationsid,
        ingivare: Ingivare {
            organisationsnummer,
            namn,
            handlaggare,
        },
        arendeidentitet,
        personidentitet,
        tidsperiod,
        syfte,
        lagrum,
        personuppgiftsbitrade,
    })
}

/// A purpose code: `[A-Z][A-Z0-9-]{1,31}`.
pub fn is_code(s: &str) -> bool {
    let b = s.as_bytes();
    (2..=32).contains(&b.len())
        && b[0].is_ascii_uppercase()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'-')
}

/// Opens the envelope and returns the single body element.
fn body_element(root: &Element) -> Result<&Element, DecodeError> {
    if !root.is(SOAP_ENV_NS, "Envelope") {
        return Err(DecodeError::doc(
            DecodeKind::NotSoap,
            format!("the root element must be Envelope in namespace {SOAP_ENV_NS} (SOAP 1.1)"),
        ));
    }
    let mut children = root.children.iter();
    let mut next = children.next();
    if let Some(header) = next.filter(|c| c.is(SOAP_ENV_NS, "Header")) {
        for entry in &header.children {
            if entry.attribute(Some(SOAP_ENV_NS), "mustUnderstand") == Some("1") {
                return Err(DecodeError::at(
                    DecodeKind::Unexpected,
                    &format!("Header/{}", entry.name),
                    "header entry marked mustUnderstand is not understood by this service",
                ));
            }
        }
        next = children.next();
    }
    let body = next
        .filter(|c| c.is(SOAP_ENV_NS, "Body"))
        .ok_or_else(|| DecodeError::doc(DecodeKind::NotSoap, "the envelope has no Body"))?;
    if children.next().is_some() {
        return Err(DecodeError::doc(
            DecodeKind::NotSoap,
            "nothing may follow Body in the envelope",
        ));
    }
    match body.children.as_slice() {
        [one] => Ok(one),
        [] => Err(DecodeError::doc(DecodeKind::NotSoap, "the Body is empty")),
        _ => Err(DecodeError::doc(
            DecodeKind::NotSoap,
            "the Body must hold exactly one element",
        )),
    }
}

/// Decodes a municipal request envelope.
pub fn decode_request(bytes: &[u8], limits: &XmlLimits) -> Result<KommunRequest, DecodeError> {
    let root = xml::parse(bytes, limits)?;
    let op_el = body_element(&root)?;
    if op_el.ns.as_deref() != Some(KOMMUN_NS) {
        return Err(DecodeError::doc(
            DecodeKind::UnknownOperation,
            format!(
                "the Body element {} is not in namespace {KOMMUN_NS}",
                op_el.name
            ),
        ));
    }
    let op = Operation::from_name(&op_el.name).ok_or_else(|| {
        DecodeError::doc(
            DecodeKind::UnknownOperation,
            format!("{} is not an operation of this service", op_el.name),
        )
    })?;
    let mut s = Seq::new(op_el, String::new())?;
    let (f, fp) = s.req("Fraga")?;
    let fraga = decode_fraga(f, fp)?;
    s.finish()?;
    Ok(match op {
        Operation::HamtaArbetssokandeStatus => KommunRequest::HamtaArbetssokandeStatus(fraga),
    })
}

/// Builds XML text with the `soap` and `k` prefixes.
struct Out(String);

impl Out {
    fn envelope() -> Self {
        let mut s = String::with_capacity(2048);
        s.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        let _ = write!(
            s,
            r#"<soap:Envelope xmlns:soap="{SOAP_ENV_NS}" xmlns:k="{KOMMUN_NS}"><soap:Body>"#
        );
        Out(s)
    }
    fn open(&mut self, name: &str) {
        let _ = write!(self.0, "<k:{name}>");
    }
    fn close(&mut self, name: &str) {
        let _ = write!(self.0, "</k:{name}>");
    }
    fn leaf(&mut self, name: &str, text: &str) {
        let _ = write!(self.0, "<k:{name}>{}</k:{name}>", escape(text));
    }
    fn opt(&mut self, name: &str, text: Option<&str>) {
        if let Some(t) = text {
            self.leaf(name, t);
        }
    }
    fn finish(mut self) -> String {
        self.0.push_str("</soap:Body></soap:Envelope>");
        self.0
    }
}

/// Encodes a municipal request (what a case system sends).
pub fn encode_request(req: &KommunRequest) -> String {
    let f = req.fraga();
    let op = req.operation().name();
    let mut o = Out::envelope();
    o.open(op);
    o.open("Fraga");
    o.leaf("Korrelationsid", &f.korrelationsid.to_string());
    o.open("Ingivare");
    o.leaf(
        "Organisationsnummer",
        &f.ingivare.organisationsnummer.to_ssbtek(),
    );
    o.leaf("Namn", &f.ingivare.namn);
    o.leaf("Handlaggare", f.ingivare.handlaggare.as_str());
    o.close("Ingivare");
    o.leaf("Arendeidentitet", &f.arendeidentitet);
    o.leaf("Personidentitet", &f.personidentitet.expose());
    o.open("Tidsperiod");
    o.leaf("From", &format_date(f.tidsperiod.from()));
    o.leaf("Tom", &format_date(f.tidsperiod.tom()));
    o.close("Tidsperiod");
    o.leaf("Syfte", &f.syfte);
    o.leaf("Lagrum", &f.lagrum);
    o.opt("Personuppgiftsbitrade", f.personuppgiftsbitrade.as_deref());
    o.close("Fraga");
    o.close(op);
    o.finish()
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// Encodes the answer to `HamtaArbetssokandeStatus`.
pub fn encode_status_svar(svar: &HamtaArbetssokandeStatusSvar) -> String {
    let s = &svar.status;
    let mut o = Out::envelope();
    o.open("HamtaArbetssokandeStatusSvar");
    o.leaf("Korrelationsid", &svar.korrelationsid.to_string());
    o.open("Arbetssokandestatus");
    o.leaf("KandAvAf", bool_text(s.kand_av_af));
    o.leaf("Inskriven", bool_text(s.inskriven));
    o.opt(
        "Inskrivningsdatum",
        s.inskrivningsdatum.map(format_date).as_deref(),
    );
    if let Some(k) = &s.kontor {
        o.open("Kontor");
        o.leaf("Kod", &k.kod);
        o.leaf("Namn", &k.namn);
        o.close("Kontor");
    }
    if let Some(k) = &s.sokandekategori {
        o.open("Sokandekategori");
        o.leaf("Kod", &k.kod);
        o.leaf("Text", &k.text);
        o.opt("From", k.from.map(format_date).as_deref());
        o.close("Sokandekategori");
    }
    o.opt(
        "OmfattningProcent",
        s.omfattning_procent.map(|p| p.to_string()).as_deref(),
    );
    if let Some(a) = &s.avaktualisering {
        o.open("Avaktualisering");
        o.leaf("Datum", &format_date(a.datum));
        o.leaf("OrsakKod", &a.orsak_kod);
        o.leaf("OrsakText", &a.orsak_text);
        o.close("Avaktualisering");
    }
    if let Some(r) = &s.senaste_aktivitetsrapport {
        o.open("SenasteAktivitetsrapport");
        o.leaf("Datum", &format_date(r.datum));
        o.leaf("Meddelande", &r.meddelande);
        o.close("SenasteAktivitetsrapport");
    }
    if let Some(a) = &s.a_kassa {
        o.open("AKassa");
        o.leaf("Medlem", bool_text(a.medlem));
        o.opt("Namn", a.namn.as_deref());
        o.close("AKassa");
    }
    o.leaf("Sekretessmarkering", bool_text(s.sekretessmarkering));
    o.close("Arbetssokandestatus");
    o.close("HamtaArbetssokandeStatusSvar");
    o.finish()
}

/// Encodes a SOAP 1.1 Fault with `detail/Fel`. `faultcode` is `soap:Client` when the caller
/// can fix the request, `soap:Server` otherwise.
pub fn encode_fault(fel: &Fel, client_fault: bool) -> String {
    let mut o = Out::envelope();
    let code = if client_fault {
        "soap:Client"
    } else {
        "soap:Server"
    };
    let _ = write!(
        o.0,
        r#"<soap:Fault><faultcode>{code}</faultcode><faultstring>{}</faultstring><detail>"#,
        escape(&fel.meddelande)
    );
    o.open("Fel");
    o.leaf("Kalla", fel.kalla.as_str());
    o.leaf("Felkod", &fel.felkod);
    o.leaf("Meddelande", &fel.meddelande);
    o.opt("Falt", fel.falt.as_deref());
    o.leaf("Korrelationsid", &fel.korrelationsid.to_string());
    o.leaf("KanForsokasIgen", bool_text(fel.kan_forsokas_igen));
    o.close("Fel");
    o.0.push_str("</detail></soap:Fault>");
    o.finish()
}

/// An answer as a case system sees it: data, or a Fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KommunResponse {
    Status(HamtaArbetssokandeStatusSvar),
    Fault {
        faultcode: String,
        faultstring: String,
        fel: Option<Fel>,
    },
}

fn opt_with<T>(
    s: &mut Seq<'_>,
    name: &str,
    f: impl FnOnce(&Element, String) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    match s.opt(name) {
        Some((e, p)) => f(e, p).map(Some),
        None => Ok(None),
    }
}

fn decode_status(el: &Element, path: String) -> Result<Arbetssokandestatus, DecodeError> {
    let mut s = Seq::new(el, path)?;
    let (e, p) = s.req("KandAvAf")?;
    let kand_av_af = boolean(e, &p)?;
    let (e, p) = s.req("Inskriven")?;
    let inskriven = boolean(e, &p)?;
    let inskrivningsdatum = opt_with(&mut s, "Inskrivningsdatum", |e, p| date(e, &p))?;
    let kontor = opt_with(&mut s, "Kontor", |e, p| {
        let mut k = Seq::new(e, p)?;
        let (e, p) = k.req("Kod")?;
        let kod = text(e, &p, 1, 16)?;
        let (e, p) = k.req("Namn")?;
        let namn = text(e, &p, 1, 200)?;
        k.finish()?;
        Ok(Kontor { kod, namn })
    })?;
    let sokandekategori = opt_with(&mut s, "Sokandekategori", |e, p| {
        let mut k = Seq::new(e, p)?;
        let (e, p) = k.req("Kod")?;
        let kod = token(e, &p)?;
        pattern_check(
            &p,
            kod.len() == 2 && kod.bytes().all(|b| b.is_ascii_digit()),
            "must be two digits",
        )?;
        let (e, p) = k.req("Text")?;
        let text = text(e, &p, 1, 200)?;
        let from = opt_with(&mut k, "From", |e, p| date(e, &p))?;
        k.finish()?;
        Ok(Sokandekategori { kod, text, from })
    })?;
    let omfattning_procent = opt_with(&mut s, "OmfattningProcent", |e, p| {
        parsed(e, &p, |t| match t.parse::<u8>() {
            Ok(v) if v <= 100 => Ok(v),
            _ => Err("must be an integer from 0 to 100"),
        })
    })?;
    let avaktualisering = opt_with(&mut s, "Avaktualisering", |e, p| {
        let mut k = Seq::new(e, p)?;
        let (e, p) = k.req("Datum")?;
        let datum = date(e, &p)?;
        let (e, p) = k.req("OrsakKod")?;
        let orsak_kod = text(e, &p, 1, 16)?;
        let (e, p) = k.req("OrsakText")?;
        let orsak_text = text(e, &p, 1, 200)?;
        k.finish()?;
        Ok(Avaktualisering {
            datum,
            orsak_kod,
            orsak_text,
        })
    })?;
    let senaste_aktivitetsrapport = opt_with(&mut s, "SenasteAktivitetsrapport", |e, p| {
        let mut k = Seq::new(e, p)?;
        let (e, p) = k.req("Datum")?;
        let datum = date(e, &p)?;
        let (e, p) = k.req("Meddelande")?;
        let meddelande = text(e, &p, 1, 500)?;
        k.finish()?;
        Ok(Aktivitetsrapport { datum, meddelande })
    })?;
    let a_kassa = opt_with(&mut s, "AKassa", |e, p| {
        let mut k = Seq::new(e, p)?;
        let (e, p) = k.req("Medlem")?;
        let medlem = boolean(e, &p)?;
        let namn = opt_with(&mut k, "Namn", |e, p| text(e, &p, 1, 200))?;
        k.finish()?;
        Ok(AKassa { medlem, namn })
    })?;
    let (e, p) = s.req("Sekretessmarkering")?;
    let sekretessmarkering = boolean(e, &p)?;
    s.finish()?;
    Ok(Arbetssokandestatus {
        kand_av_af,
        inskriven,
        inskrivningsdatum,
        kontor,
        sokandekategori,
        omfattning_procent,
        avaktualisering,
        senaste_aktivitetsrapport,
        a_kassa,
        sekretessmarkering,
    })
}

fn decode_fel(el: &Element) -> Result<Fel, DecodeError> {
    let mut s = Seq::new(el, "Fel".to_owned())?;
    let (e, p) = s.req("Kalla")?;
    let kalla = parsed(e, &p, |t| match t {
        "GATEWAY" => Ok(Kalla::Gateway),
        "AF" => Ok(Kalla::Af),
        _ => Err("must be GATEWAY or AF"),
    })?;
    let (e, p) = s.req("Felkod")?;
    let felkod = text(e, &p, 3, 64)?;
    let (e, p) = s.req("Meddelande")?;
    let meddelande = text(e, &p, 1, 1000)?;
    let falt = opt_with(&mut s, "Falt", |e, p| text(e, &p, 1, 200))?;
    let (e, p) = s.req("Korrelationsid")?;
    let korrelationsid = parsed(e, &p, parse_uuid)?;
    let (e, p) = s.req("KanForsokasIgen")?;
    let kan_forsokas_igen = boolean(e, &p)?;
    s.finish()?;
    Ok(Fel {
        kalla,
        felkod,
        meddelande,
        falt,
        korrelationsid,
        kan_forsokas_igen,
    })
}

/// Decodes an answer envelope: an operation's answer or a Fault.
pub fn decode_response(bytes: &[u8], limits: &XmlLimits) -> Result<KommunResponse, DecodeError> {
    let root = xml::parse(bytes, limits)?;
    let el = body_element(&root)?;
    if el.is(SOAP_ENV_NS, "Fault") {
        let child = |n: &str| el.children.iter().find(|c| c.ns.is_none() && c.name == n);
        let faultcode = child("faultcode").map(|c| c.text.trim().to_owned());
        let faultstring = child("faultstring").map(|c| c.text.trim().to_owned());
        let fel = match child("detail")
            .and_then(|d| d.children.iter().find(|c| c.is(KOMMUN_NS, "Fel")))
        {
            Some(f) => Some(decode_fel(f)?),
            None => None,
        };
        return Ok(KommunResponse::Fault {
            faultcode: faultcode.unwrap_or_default(),
            faultstring: faultstring.unwrap_or_default(),
            fel,
        });
    }
    if el.is(KOMMUN_NS, "HamtaArbetssokandeStatusSvar") {
        let mut s = Seq::new(el, String::new())?;
        let (e, p) = s.req("Korrelationsid")?;
        let korrelationsid: Uuid = parsed(e, &p, parse_uuid)?;
        let (e, p) = s.req("Arbetssokandestatus")?;
        let status = decode_status(e, p)?;
        s.finish()?;
        return Ok(KommunResponse::Status(HamtaArbetssokandeStatusSvar {
            korrelationsid,
            status,
        }));
    }
    Err(DecodeError::doc(
        DecodeKind::UnknownOperation,
        format!("{} is not an answer of this service", el.name),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str =
        include_str!("../../schemas/kommun/v1/examples/HamtaArbetssokandeStatus.request.xml");

    #[test]
    fn the_example_decodes_and_round_trips() {
        let req = decode_request(EXAMPLE.as_bytes(), &XmlLimits::default()).unwrap();
        let again = decode_request(encode_request(&req).as_bytes(), &XmlLimits::default()).unwrap();
        assert_eq!(req, again);
    }

    /// Every truncation and many single-byte changes of a valid request: an error or a
    /// request, never a panic.
    #[test]
    fn mutated_requests_never_panic() {
        let bytes = EXAMPLE.as_bytes();
        for end in 0..bytes.len() {
            let _ = decode_request(&bytes[..end], &XmlLimits::default());
        }
        for i in 0..bytes.len() {
            for b in [
                b'<', b'>', b'&', b'"', b'\'', b':', b'/', 0x00, 0x80, 0xff, b'0', b'k',
            ] {
                let mut m = bytes.to_vec();
                m[i] = b;
                let _ = decode_request(&m, &XmlLimits::default());
                let _ = decode_response(&m, &XmlLimits::default());
            }
        }
    }
}
