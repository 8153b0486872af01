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
use crate::model::lexical;
use crate::model::*;

/// Namespace of the SOAP 1.1 envelope.
pub const SOAP_ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// What kind of problem a decode found; decides the Felkod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeKind {
    /// Not well-formed XML, or not UTF-8.
    Malformed,
    /// Nested deeper than the limit.
    TooDeep,
    /// More elements than the limit.
    TooManyElements,
    /// A text longer than the limit.
    TextTooLong,
    /// An attribute value longer than the limit, or too many attributes.
    AttributesTooLarge,
    /// A DTD, or an entity reference other than the five predefined ones.
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
    /// A header entry for brygga marked `mustUnderstand`: brygga understands none.
    MustUnderstand,
}

/// A decode failure: which kind, where (`Fraga/Personidentitet`), and a message to act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", path.as_ref().map(|p| format!("{p}: ")).unwrap_or_default())]
pub struct DecodeError {
    pub kind: DecodeKind,
    pub path: Option<String>,
    pub message: String,
    /// The operation the request was for, when the decoder got that far.
    pub operation: Option<Operation>,
    /// The request's Korrelationsid, when it could be read although the rest could not.
    pub korrelationsid: Option<Uuid>,
}

impl DecodeError {
    fn at(kind: DecodeKind, path: &str, message: impl Into<String>) -> Self {
        Self {
            kind,
            path: Some(path.to_owned()),
            message: message.into(),
            operation: None,
            korrelationsid: None,
        }
    }
    fn doc(kind: DecodeKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            path: None,
            message: message.into(),
            operation: None,
            korrelationsid: None,
        }
    }
}

impl From<XmlError> for DecodeError {
    fn from(e: XmlError) -> Self {
        let kind = match &e {
            XmlError::Doctype | XmlError::Entity(_) => DecodeKind::Forbidden,
            XmlError::TooDeep(_) => DecodeKind::TooDeep,
            XmlError::TooManyElements(_) => DecodeKind::TooManyElements,
            XmlError::TextTooLong(_) => DecodeKind::TextTooLong,
            XmlError::AttrTooLong(_) | XmlError::TooManyAttributes(_) => {
                DecodeKind::AttributesTooLarge
            }
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

fn invalid(path: &str, message: impl Into<String>) -> DecodeError {
    DecodeError::at(DecodeKind::Invalid, path, message)
}

/// Walks an element's children in the order the contract gives.
struct Seq<'a> {
    el: &'a Element,
    path: String,
    next: usize,
}

/// Whether `c` is an element of the contract's namespace (not an extension of another).
fn ours(c: &Element) -> bool {
    c.ns.as_deref().is_none_or(|ns| ns == KOMMUN_NS)
}

impl<'a> Seq<'a> {
    fn new(el: &'a Element, path: String) -> Result<Self, DecodeError> {
        no_attributes(el, &path)?;
        if !el.text.chars().all(is_xml_space) {
            return Err(invalid(
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
        let children = &self.el.children;
        Err(match children.get(self.next) {
            Some(c) if c.name == name => invalid(
                &path,
                format!("the element must be in namespace {KOMMUN_NS}"),
            ),
            // What stands in its place is the fault when the required element comes later
            // (out of order), or when it repeats one already read.
            Some(c)
                if ours(c)
                    && (children[self.next..].iter().any(|l| l.is(KOMMUN_NS, name))
                        || children[..self.next].iter().any(|e| e.name == c.name)) =>
            {
                DecodeError::at(
                    DecodeKind::Unexpected,
                    &join(&self.path, &c.name),
                    format!(
                        "element not allowed here: {name} is expected at this place (wrong order or repeated)"
                    ),
                )
            }
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

    /// A required leaf, parsed by `f`.
    fn leaf<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&str, &str) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let (e, p) = self.req(name)?;
        f(&token(e, &p)?, &p)
    }

    /// An optional leaf, parsed by `f`.
    fn opt_leaf<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&str, &str) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.opt(name) {
            Some((e, p)) => f(&token(e, &p)?, &p).map(Some),
            None => Ok(None),
        }
    }

    /// A required complex child.
    fn node<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Seq<'a>) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let (e, p) = self.req(name)?;
        let mut s = Seq::new(e, p)?;
        let v = f(&mut s)?;
        s.finish()?;
        Ok(v)
    }

    /// An optional complex child.
    fn opt_node<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Seq<'a>) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.opt(name) {
            Some((e, p)) => {
                let mut s = Seq::new(e, p)?;
                let v = f(&mut s)?;
                s.finish()?;
                Ok(Some(v))
            }
            None => Ok(None),
        }
    }

    /// A repeated complex child, `min..=max` times; paths carry the 1-based position.
    fn many<T>(
        &mut self,
        name: &str,
        min: usize,
        max: usize,
        mut f: impl FnMut(&mut Seq<'a>) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let mut out = Vec::new();
        while let Some((e, p)) = self.opt(name) {
            if out.len() == max {
                return Err(DecodeError::at(
                    DecodeKind::Unexpected,
                    &p,
                    format!("at most {max} {name} are allowed"),
                ));
            }
            let mut s = Seq::new(e, format!("{p}[{}]", out.len() + 1))?;
            out.push(f(&mut s)?);
            s.finish()?;
        }
        if out.len() < min {
            return Err(DecodeError::at(
                DecodeKind::Missing,
                &join(&self.path, name),
                format!("at least {min} {name} are required"),
            ));
        }
        Ok(out)
    }
}

/// XML's whitespace: what `xs:token` collapses (not Unicode's wider set: a no-break space is
/// text).
fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// The contract declares no attributes on its elements (namespace declarations are not
/// attributes).
fn no_attributes(el: &Element, path: &str) -> Result<(), DecodeError> {
    match el.attributes.first() {
        Some(a) => Err(DecodeError::at(
            DecodeKind::Unexpected,
            path,
            format!("attribute {} is not allowed on this element", a.name),
        )),
        None => Ok(()),
    }
}

/// The element's text, whitespace-collapsed as `xs:token` does; the element must be a leaf.
fn token(el: &Element, path: &str) -> Result<String, DecodeError> {
    no_attributes(el, path)?;
    if !el.children.is_empty() {
        return Err(invalid(path, "must hold text, not child elements"));
    }
    Ok(el
        .text
        .split(is_xml_space)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" "))
}

/// Leaf parsers: each takes the collapsed text and the path for its error.
/// Text that is kept (in the audit chain, the subscriptions, the outbox) or logged: as
/// [`text`], and refused when it embeds a valid personnummer or samordningsnummer, which the
/// evidence must never hold in clear.
fn kept_text(min: usize, max: usize) -> impl Fn(&str, &str) -> Result<String, DecodeError> {
    let text = text(min, max);
    move |t, p| {
        let t = text(t, p)?;
        if crate::model::ident::embeds_identity_number(&t) {
            return Err(invalid(
                p,
                crate::model::ident::IdentError::EmbedsIdentityNumber.to_string(),
            ));
        }
        Ok(t)
    }
}

fn text(min: usize, max: usize) -> impl Fn(&str, &str) -> Result<String, DecodeError> {
    move |t, p| {
        let n = t.chars().count();
        if n < min {
            return Err(invalid(
                p,
                if n == 0 {
                    "must not be empty".to_owned()
                } else {
                    format!("must be at least {min} characters")
                },
            ));
        }
        if n > max {
            return Err(invalid(
                p,
                format!("is {n} characters long, at most {max} are allowed"),
            ));
        }
        if let Some(c) = crate::model::lexical::hidden_character(t) {
            return Err(invalid(
                p,
                format!(
                    "contains U+{:04X}, a control or formatting character that hides or reorders text",
                    c as u32
                ),
            ));
        }
        Ok(t.to_owned())
    }
}

fn with<T, E: std::fmt::Display>(
    f: impl Fn(&str) -> Result<T, E>,
) -> impl Fn(&str, &str) -> Result<T, DecodeError> {
    move |t, p| f(t).map_err(|e| invalid(p, e.to_string()))
}

fn date(t: &str, p: &str) -> Result<Date, DecodeError> {
    with(parse_date)(t, p)
}

fn tidpunkt(t: &str, p: &str) -> Result<time::OffsetDateTime, DecodeError> {
    with(lexical::parse_tidpunkt)(t, p)
}

fn uuid(t: &str, p: &str) -> Result<Uuid, DecodeError> {
    with(parse_uuid)(t, p)
}

fn boolean(t: &str, p: &str) -> Result<bool, DecodeError> {
    match t {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(invalid(p, "must be true or false")),
    }
}

fn int(min: i64, max: i64) -> impl Fn(&str, &str) -> Result<i64, DecodeError> {
    move |t, p| lexical::parse_int(t, min, max).map_err(|e| invalid(p, e))
}

fn procent(t: &str, p: &str) -> Result<u8, DecodeError> {
    int(0, 100)(t, p).map(|v| v as u8)
}

fn code<T>(
    from_code: fn(&str) -> Option<T>,
    codes: fn() -> String,
) -> impl Fn(&str, &str) -> Result<T, DecodeError> {
    move |t, p| from_code(t).ok_or_else(|| invalid(p, format!("must be one of {}", codes())))
}

fn pattern(
    ok: fn(&str) -> bool,
    rule: &'static str,
) -> impl Fn(&str, &str) -> Result<String, DecodeError> {
    move |t, p| {
        if ok(t) {
            Ok(t.to_owned())
        } else {
            Err(invalid(p, rule))
        }
    }
}

fn two_digits(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A purpose code: `[A-Z][A-Z0-9-]{1,31}`.
pub fn is_code(s: &str) -> bool {
    let b = s.as_bytes();
    (2..=32).contains(&b.len())
        && b[0].is_ascii_uppercase()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'-')
        // A code is recorded as sent, even when refused: it must not spell an identity number.
        && !crate::model::ident::embeds_identity_number(s)
}

fn orgnr12(t: &str, p: &str) -> Result<Organisationsnummer, DecodeError> {
    if t.len() != 12 {
        return Err(invalid(p, "must be the 12-digit form 16NNNNNNNNNN"));
    }
    with(Organisationsnummer::parse)(t, p)
}

/// The longest period a question may cover, in days (a year, leap day included).
pub const MAX_PERIOD_DAYS: i64 = 366;

fn decode_tidsperiod(s: &mut Seq<'_>) -> Result<Tidsperiod, DecodeError> {
    let path = s.path.clone();
    let from = s.leaf("From", date)?;
    let tom = s.leaf("Tom", date)?;
    let period =
        Tidsperiod::new(from, tom).ok_or_else(|| invalid(&path, "From must not be after Tom"))?;
    if (tom - from).whole_days() >= MAX_PERIOD_DAYS {
        return Err(invalid(
            &path,
            format!("the period may cover at most {MAX_PERIOD_DAYS} days"),
        ));
    }
    Ok(period)
}

fn decode_fraga(s: &mut Seq<'_>) -> Result<Fraga, DecodeError> {
    let korrelationsid = s.leaf("Korrelationsid", uuid)?;
    let ingivare = s.node("Ingivare", decode_ingivare)?;
    Ok(Fraga {
        korrelationsid,
        ingivare,
        arendeidentitet: s.leaf("Arendeidentitet", kept_text(1, 64))?,
        personidentitet: s.leaf("Personidentitet", with(Personnummer::parse))?,
        tidsperiod: s.node("Tidsperiod", decode_tidsperiod)?,
        syfte: s.leaf("Syfte", syfte)?,
        lagrum: s.leaf("Lagrum", kept_text(1, 500))?,
        personuppgiftsbitrade: s.opt_leaf("Personuppgiftsbitrade", kept_text(1, 200))?,
    })
}

fn decode_ingivare(s: &mut Seq<'_>) -> Result<Ingivare, DecodeError> {
    Ok(Ingivare {
        organisationsnummer: s.leaf("Organisationsnummer", orgnr12)?,
        namn: s.leaf("Namn", kept_text(1, 200))?,
        handlaggare: s.leaf("Handlaggare", with(HsaId::parse))?,
    })
}

fn syfte(t: &str, p: &str) -> Result<String, DecodeError> {
    if crate::model::ident::embeds_identity_number(t) {
        return Err(invalid(
            p,
            crate::model::ident::IdentError::EmbedsIdentityNumber.to_string(),
        ));
    }
    pattern(
        is_code,
        "must be a purpose code such as EKB-BESLUT (A-Z, 0-9, '-', 2 to 32 characters)",
    )(t, p)
}

fn decode_prenumerations_fraga(s: &mut Seq<'_>) -> Result<PrenumerationsFraga, DecodeError> {
    Ok(PrenumerationsFraga {
        korrelationsid: s.leaf("Korrelationsid", uuid)?,
        ingivare: s.node("Ingivare", decode_ingivare)?,
        arendeidentitet: s.leaf("Arendeidentitet", kept_text(1, 64))?,
        syfte: s.leaf("Syfte", syfte)?,
    })
}

fn decode_prenumeration(s: &mut Seq<'_>) -> Result<Prenumeration, DecodeError> {
    let path = s.path.clone();
    let id = s.leaf("PrenumerationsId", uuid)?;
    let arendeidentitet = s.leaf("Arendeidentitet", text(1, 64))?;
    let syfte = s.leaf("Syfte", syfte)?;
    let from = s.leaf("From", date)?;
    let tom = s.leaf("Tom", date)?;
    let period =
        Tidsperiod::new(from, tom).ok_or_else(|| invalid(&path, "From must not be after Tom"))?;
    Ok(Prenumeration {
        id,
        arendeidentitet,
        syfte,
        period,
        status: s.leaf(
            "Status",
            code(PrenumerationStatus::from_code, PrenumerationStatus::codes),
        )?,
        registrerad: s.leaf("Registrerad", tidpunkt)?,
        avslutad: s.opt_leaf("Avslutad", tidpunkt)?,
    })
}

fn decode_aktivitetsplan(s: &mut Seq<'_>) -> Result<Aktivitetsplan, DecodeError> {
    let plan_path = s.path.clone();
    let plan = Aktivitetsplan {
        plan_id: s.leaf("PlanId", text(1, 64))?,
        beslutsdatum: s.leaf("Beslutsdatum", date)?,
        aktiviteter: s.many("Aktivitet", 1, 50, |s| {
            let path = s.path.clone();
            let slag = s.leaf(
                "Slag",
                code(AktivitetskravSlag::from_code, AktivitetskravSlag::codes),
            )?;
            let timmar = s.leaf("TimmarPerVecka", |t, p| {
                lexical::parse_decimal(t, 1, 5, 400).map_err(|e| invalid(p, e))
            })?;
            let omfattning =
                s.leaf("Omfattning", code(Omfattning::from_code, Omfattning::codes))?;
            let from = s.leaf("From", date)?;
            let tom = s.leaf("Tom", date)?;
            let period = Tidsperiod::new(from, tom)
                .ok_or_else(|| invalid(&path, "From must not be after Tom"))?;
            let anordnare = s.node("Anordnare", |s| {
                Ok(Anordnare {
                    organisationsnummer: s.opt_leaf("Organisationsnummer", orgnr12)?,
                    namn: s.leaf("Namn", text(1, 200))?,
                })
            })?;
            Ok(KravAktivitet {
                slag,
                timmar_per_vecka: Tiondelstimmar(timmar as u16),
                omfattning,
                period,
                anordnare,
            })
        })?,
    };
    if plan.peak_hours() > MAX_TIMMAR_PER_VECKA {
        return Err(invalid(
            &plan_path,
            format!(
                "activities that run at the same time add up to {} hours per week; at most 40 are allowed",
                lexical::format_decimal(u64::from(plan.peak_hours().0), 1)
            ),
        ));
    }
    Ok(plan)
}

/// Opens the envelope and returns the single body element.
fn body_element(root: &Element) -> Result<&Element, DecodeError> {
    if !root.is(SOAP_ENV_NS, "Envelope") {
        return Err(DecodeError::doc(
            DecodeKind::NotSoap,
            format!("the root element must be Envelope in namespace {SOAP_ENV_NS} (SOAP 1.1)"),
        ));
    }
    only_elements(root, "Envelope")?;
    let mut children = root.children.iter();
    let mut next = children.next();
    if let Some(header) = next.filter(|c| c.is(SOAP_ENV_NS, "Header")) {
        only_elements(header, "Header")?;
        for entry in &header.children {
            must_understand(entry)?;
        }
        next = children.next();
    }
    let body = next
        .filter(|c| c.is(SOAP_ENV_NS, "Body"))
        .ok_or_else(|| DecodeError::doc(DecodeKind::NotSoap, "the envelope has no Body"))?;
    only_elements(body, "Body")?;
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

/// The envelope's own elements hold elements only: text there is not SOAP.
fn only_elements(el: &Element, path: &str) -> Result<(), DecodeError> {
    if el.text.chars().all(is_xml_space) {
        Ok(())
    } else {
        Err(DecodeError::at(
            DecodeKind::NotSoap,
            path,
            format!("text is not allowed directly inside {path}, only elements"),
        ))
    }
}

/// SOAP 1.1 §4.2.3: a header entry for this recipient (no `actor`, or the next one) marked
/// `mustUnderstand` true (`1`/`true`, `xs:boolean` with whitespace around) must be refused,
/// since brygga understands no header entry. `0`/`false` marks an optional one.
fn must_understand(entry: &Element) -> Result<(), DecodeError> {
    const NEXT: &str = "http://schemas.xmlsoap.org/soap/actor/next";
    let path = format!("Header/{}", entry.name);
    let Some(value) = entry.attribute(Some(SOAP_ENV_NS), "mustUnderstand") else {
        return Ok(());
    };
    let marked = match value.trim_matches(is_xml_space) {
        "1" | "true" => true,
        "0" | "false" => false,
        _ => {
            return Err(invalid(
                &format!("{path}/@mustUnderstand"),
                "mustUnderstand must be 0, 1, false or true",
            ));
        }
    };
    let for_us = entry
        .attribute(Some(SOAP_ENV_NS), "actor")
        .is_none_or(|a| a.trim_matches(is_xml_space) == NEXT);
    if marked && for_us {
        return Err(DecodeError::at(
            DecodeKind::MustUnderstand,
            &path,
            "this header entry is marked mustUnderstand, and brygga understands no header entry; send it without the entry or with mustUnderstand=\"0\"",
        ));
    }
    Ok(())
}

/// Decodes the body element with `f`, checking that nothing is left over.
fn decode_root<T>(
    el: &Element,
    f: impl FnOnce(&mut Seq<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let mut s = Seq::new(el, String::new())?;
    let v = f(&mut s)?;
    s.finish()?;
    Ok(v)
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
            format!(
                "{} is not an operation of this service (operations: {})",
                op_el.name,
                Operation::ALL.map(|o| o.name()).join(", ")
            ),
        )
    })?;
    let decoded = decode_root(op_el, |s| {
        Ok(match op {
            Operation::HamtaArbetssokandeStatus => {
                KommunRequest::HamtaArbetssokandeStatus(s.node("Fraga", decode_fraga)?)
            }
            Operation::HamtaErsattningsbeslut => {
                KommunRequest::HamtaErsattningsbeslut(s.node("Fraga", decode_fraga)?)
            }
            Operation::HamtaHandlingsplan => {
                KommunRequest::HamtaHandlingsplan(s.node("Fraga", decode_fraga)?)
            }
            Operation::AnmalAktivitetsplan => {
                let fraga = s.node("Fraga", decode_fraga)?;
                let plan = s.node("Aktivitetsplan", decode_aktivitetsplan)?;
                KommunRequest::AnmalAktivitetsplan(fraga, plan)
            }
            Operation::Ping => KommunRequest::Ping(s.leaf("Korrelationsid", uuid)?),
            Operation::RegistreraPrenumeration => {
                KommunRequest::RegistreraPrenumeration(s.node("Fraga", decode_fraga)?)
            }
            Operation::AvslutaPrenumeration => {
                KommunRequest::AvslutaPrenumeration(s.node("Fraga", decode_fraga)?)
            }
            Operation::ListaPrenumerationer => {
                KommunRequest::ListaPrenumerationer(decode_prenumerations_fraga(s)?)
            }
        })
    });
    decoded.map_err(|mut e| {
        e.operation = Some(op);
        e.korrelationsid = korrelationsid_in(op_el);
        e
    })
}

/// The Korrelationsid of a request that could not be decoded whole: in its `Fraga`, or
/// straight in the operation element, where it stands first.
fn korrelationsid_in(op_el: &Element) -> Option<Uuid> {
    let first = op_el.children.first()?;
    let holder = if first.is(KOMMUN_NS, "Fraga") {
        first.children.first()?
    } else {
        first
    };
    if !holder.is(KOMMUN_NS, "Korrelationsid") {
        return None;
    }
    parse_uuid(holder.text.trim()).ok()
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
    fn node(&mut self, name: &str, f: impl FnOnce(&mut Self)) {
        let _ = write!(self.0, "<k:{name}>");
        f(self);
        let _ = write!(self.0, "</k:{name}>");
    }
    fn opt_node<T>(&mut self, name: &str, v: Option<&T>, f: impl FnOnce(&mut Self, &T)) {
        if let Some(v) = v {
            self.node(name, |o| f(o, v));
        }
    }
    fn leaf(&mut self, name: &str, text: &str) {
        let _ = write!(self.0, "<k:{name}>{}</k:{name}>", escape(text));
    }
    fn opt(&mut self, name: &str, text: Option<&str>) {
        if let Some(t) = text {
            self.leaf(name, t);
        }
    }
    fn date(&mut self, name: &str, d: Date) {
        self.leaf(name, &format_date(d));
    }
    fn opt_date(&mut self, name: &str, d: Option<Date>) {
        if let Some(d) = d {
            self.date(name, d);
        }
    }
    fn boolean(&mut self, name: &str, b: bool) {
        self.leaf(name, if b { "true" } else { "false" });
    }
    fn finish(mut self) -> String {
        self.0.push_str("</soap:Body></soap:Envelope>");
        self.0
    }
}

fn encode_ingivare(o: &mut Out, i: &Ingivare) {
    o.node("Ingivare", |o| {
        o.leaf("Organisationsnummer", &i.organisationsnummer.to_ssbtek());
        o.leaf("Namn", &i.namn);
        o.leaf("Handlaggare", i.handlaggare.as_str());
    });
}

fn encode_prenumeration(o: &mut Out, p: &Prenumeration) {
    o.node("Prenumeration", |o| {
        o.leaf("PrenumerationsId", &p.id.to_string());
        o.leaf("Arendeidentitet", &p.arendeidentitet);
        o.leaf("Syfte", &p.syfte);
        o.date("From", p.period.from());
        o.date("Tom", p.period.tom());
        o.leaf("Status", p.status.code());
        o.leaf("Registrerad", &lexical::format_tidpunkt(p.registrerad));
        if let Some(t) = p.avslutad {
            o.leaf("Avslutad", &lexical::format_tidpunkt(t));
        }
    });
}

fn encode_fraga(o: &mut Out, f: &Fraga) {
    o.node("Fraga", |o| {
        o.leaf("Korrelationsid", &f.korrelationsid.to_string());
        encode_ingivare(o, &f.ingivare);
        o.leaf("Arendeidentitet", &f.arendeidentitet);
        o.leaf("Personidentitet", &f.personidentitet.expose());
        o.node("Tidsperiod", |o| {
            o.date("From", f.tidsperiod.from());
            o.date("Tom", f.tidsperiod.tom());
        });
        o.leaf("Syfte", &f.syfte);
        o.leaf("Lagrum", &f.lagrum);
        o.opt("Personuppgiftsbitrade", f.personuppgiftsbitrade.as_deref());
    });
}

/// Encodes a municipal request (what a case system sends).
pub fn encode_request(req: &KommunRequest) -> String {
    let mut o = Out::envelope();
    o.node(req.operation().name(), |o| match req {
        KommunRequest::HamtaArbetssokandeStatus(f)
        | KommunRequest::HamtaErsattningsbeslut(f)
        | KommunRequest::HamtaHandlingsplan(f)
        | KommunRequest::RegistreraPrenumeration(f)
        | KommunRequest::AvslutaPrenumeration(f) => encode_fraga(o, f),
        KommunRequest::ListaPrenumerationer(l) => {
            o.leaf("Korrelationsid", &l.korrelationsid.to_string());
            encode_ingivare(o, &l.ingivare);
            o.leaf("Arendeidentitet", &l.arendeidentitet);
            o.leaf("Syfte", &l.syfte);
        }
        KommunRequest::AnmalAktivitetsplan(f, plan) => {
            encode_fraga(o, f);
            o.node("Aktivitetsplan", |o| {
                o.leaf("PlanId", &plan.plan_id);
                o.date("Beslutsdatum", plan.beslutsdatum);
                for a in &plan.aktiviteter {
                    o.node("Aktivitet", |o| {
                        o.leaf("Slag", a.slag.code());
                        o.leaf(
                            "TimmarPerVecka",
                            &lexical::format_decimal(u64::from(a.timmar_per_vecka.0), 1),
                        );
                        o.leaf("Omfattning", a.omfattning.code());
                        o.date("From", a.period.from());
                        o.date("Tom", a.period.tom());
                        o.node("Anordnare", |o| {
                            o.opt(
                                "Organisationsnummer",
                                a.anordnare
                                    .organisationsnummer
                                    .map(|n| n.to_ssbtek())
                                    .as_deref(),
                            );
                            o.leaf("Namn", &a.anordnare.namn);
                        });
                    });
                }
            });
        }
        KommunRequest::Ping(id) => o.leaf("Korrelationsid", &id.to_string()),
    });
    o.finish()
}

fn encode_kontor(o: &mut Out, k: &Kontor) {
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

fn encode_avaktualisering(o: &mut Out, a: &Avaktualisering) {
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

fn decode_kontor(s: &mut Seq<'_>) -> Result<Kontor, DecodeError> {
    Ok(Kontor {
        kod: s.leaf("Kod", text(1, 16))?,
        namn: s.leaf("Namn", text(1, 200))?,
    })
}

fn decode_avaktualisering(s: &mut Seq<'_>) -> Result<Avaktualisering, DecodeError> {
    Ok(Avaktualisering {
        datum: s.leaf("Datum", date)?,
        orsak_kod: s.leaf("OrsakKod", text(1, 16))?,
        orsak_text: s.leaf("OrsakText", text(1, 200))?,
    })
}

fn decode_sokandekategori(s: &mut Seq<'_>) -> Result<Sokandekategori, DecodeError> {
    Ok(Sokandekategori {
        kod: s.leaf("Kod", pattern(two_digits, "must be two digits"))?,
        text: s.leaf("Text", text(1, 200))?,
        from: s.opt_leaf("From", date)?,
    })
}

fn decode_status(s: &mut Seq<'_>) -> Result<Arbetssokandestatus, DecodeError> {
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

fn decode_ersattningar(s: &mut Seq<'_>) -> Result<Ersattningar, DecodeError> {
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

fn decode_handlingsplan(s: &mut Seq<'_>) -> Result<Handlingsplan, DecodeError> {
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

fn decode_fel(s: &mut Seq<'_>) -> Result<Fel, DecodeError> {
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
fn decode_fault(el: &Element) -> Result<KommunResponse, DecodeError> {
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

/// Encodes an event as delivered to a case system.
pub fn encode_handelse(h: &ArbetssokandeHandelse) -> String {
    let mut o = Out::envelope();
    o.node("ArbetssokandeHandelse", |o| {
        o.leaf("HandelseId", &h.af.handelse_id.to_string());
        o.leaf("Typ", h.af.handelse.typ().code());
        o.leaf("Tidpunkt", &lexical::format_tidpunkt(h.af.tidpunkt));
        o.leaf("Personidentitet", &h.af.personidentitet.expose());
        o.leaf("Arendeidentitet", &h.arendeidentitet);
        match &h.af.handelse {
            Handelse::Inskriven => {}
            Handelse::Avaktualiserad(a) => {
                o.node("Avaktualisering", |o| encode_avaktualisering(o, a))
            }
            Handelse::SokandekategoriAndrad(k) => o.node("Sokandekategori", |o| {
                o.leaf("Kod", &k.kod);
                o.leaf("Text", &k.text);
                o.opt_date("From", k.from);
            }),
            Handelse::ProgramStartat(p) | Handelse::ProgramAvslutat(p) => o.node("Program", |o| {
                o.leaf("Kod", &p.kod);
                o.leaf("Namn", &p.namn);
                o.date("From", p.from);
                o.opt_date("Tom", p.tom);
            }),
            Handelse::UteblivenAktivitet(u) => o.node("UteblivenAktivitet", |o| {
                o.date("Datum", u.datum);
                o.leaf("Aktivitet", &u.aktivitet);
                o.leaf("Meddelande", &u.meddelande);
            }),
        }
    });
    o.finish()
}

/// Decodes an event envelope (what a case system receives).
pub fn decode_handelse(
    bytes: &[u8],
    limits: &XmlLimits,
) -> Result<ArbetssokandeHandelse, DecodeError> {
    let root = xml::parse(bytes, limits)?;
    let el = body_element(&root)?;
    if !el.is(KOMMUN_NS, "ArbetssokandeHandelse") {
        return Err(DecodeError::doc(
            DecodeKind::UnknownOperation,
            format!("{} is not ArbetssokandeHandelse", el.name),
        ));
    }
    decode_root(el, |s| {
        let handelse_id = s.leaf("HandelseId", uuid)?;
        let typ = s.leaf("Typ", code(HandelseTyp::from_code, HandelseTyp::codes))?;
        let tidpunkt = s.leaf("Tidpunkt", tidpunkt)?;
        let personidentitet = s.leaf("Personidentitet", with(Personnummer::parse))?;
        let arendeidentitet = s.leaf("Arendeidentitet", text(1, 64))?;
        let program = |s: &mut Seq<'_>| {
            s.node("Program", |s| {
                Ok(Program {
                    kod: s.leaf("Kod", text(1, 16))?,
                    namn: s.leaf("Namn", text(1, 200))?,
                    from: s.leaf("From", date)?,
                    tom: s.opt_leaf("Tom", date)?,
                })
            })
        };
        let handelse = match typ {
            HandelseTyp::Inskriven => Handelse::Inskriven,
            HandelseTyp::Avaktualiserad => {
                Handelse::Avaktualiserad(s.node("Avaktualisering", decode_avaktualisering)?)
            }
            HandelseTyp::SokandekategoriAndrad => {
                Handelse::SokandekategoriAndrad(s.node("Sokandekategori", decode_sokandekategori)?)
            }
            HandelseTyp::ProgramStartat => Handelse::ProgramStartat(program(s)?),
            HandelseTyp::ProgramAvslutat => Handelse::ProgramAvslutat(program(s)?),
            HandelseTyp::UteblivenAktivitet => {
                Handelse::UteblivenAktivitet(s.node("UteblivenAktivitet", |s| {
                    Ok(UteblivenAktivitet {
                        datum: s.leaf("Datum", date)?,
                        aktivitet: s.leaf("Aktivitet", text(1, 200))?,
                        meddelande: s.leaf("Meddelande", text(1, 500))?,
                    })
                })?)
            }
        };
        Ok(ArbetssokandeHandelse {
            af: AfHandelse {
                handelse_id,
                tidpunkt,
                personidentitet,
                handelse,
            },
            arendeidentitet,
        })
    })
}

/// Encodes the case system's receipt for an event.
pub fn encode_handelse_kvittens(k: &ArbetssokandeHandelseKvittens) -> String {
    let mut o = Out::envelope();
    o.node("ArbetssokandeHandelseKvittens", |o| {
        o.leaf("HandelseId", &k.handelse_id.to_string());
        o.leaf("Mottagen", &lexical::format_tidpunkt(k.mottagen));
    });
    o.finish()
}

/// Decodes the case system's receipt for an event.
pub fn decode_handelse_kvittens(
    bytes: &[u8],
    limits: &XmlLimits,
) -> Result<ArbetssokandeHandelseKvittens, DecodeError> {
    let root = xml::parse(bytes, limits)?;
    let el = body_element(&root)?;
    if !el.is(KOMMUN_NS, "ArbetssokandeHandelseKvittens") {
        return Err(DecodeError::doc(
            DecodeKind::UnknownOperation,
            format!("{} is not ArbetssokandeHandelseKvittens", el.name),
        ));
    }
    decode_root(el, |s| {
        Ok(ArbetssokandeHandelseKvittens {
            handelse_id: s.leaf("HandelseId", uuid)?,
            mottagen: s.leaf("Mottagen", tidpunkt)?,
        })
    })
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
