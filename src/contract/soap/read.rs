//! Reading a SOAP document: the envelope and its Body, the cursor that walks an element's
//! children in the XSD's sequence, and the checks on a field's text (xs:token, dates, codes,
//! identifiers).

use super::*;

pub(super) fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

pub(super) fn invalid(path: &str, message: impl Into<String>) -> DecodeError {
    DecodeError::at(DecodeKind::Invalid, path, message)
}

/// Walks an element's children in the order the contract gives.
pub(super) struct Seq<'a> {
    el: &'a Element,
    pub(super) path: String,
    next: usize,
}

/// Whether `c` is an element of the contract's namespace (not an extension of another).
pub(super) fn ours(c: &Element) -> bool {
    c.ns.as_deref().is_none_or(|ns| ns == KOMMUN_NS)
}

/// Whether an element the contract leaves open (an extension, a header entry) holds, at any
/// depth, an element of the contract's own namespace. A schema validator checks such an
/// element against its declaration (lax content); brygga, which does not read it, refuses it.
/// The depth is bounded by the XML reader.
pub(super) fn holds_contract_element(el: &Element) -> bool {
    el.children
        .iter()
        .any(|c| c.ns.as_deref() == Some(KOMMUN_NS) || holds_contract_element(c))
}

impl<'a> Seq<'a> {
    pub(super) fn new(el: &'a Element, path: String) -> Result<Self, DecodeError> {
        no_attributes(el, &path)?;
        if !el.text.chars().all(is_xml_space) {
            return Err(invalid(
                &path,
                "text is not allowed here, only child elements",
            ));
        }
        Ok(Self { el, path, next: 0 })
    }

    pub(super) fn opt(&mut self, name: &str) -> Option<(&'a Element, String)> {
        let child = self.el.children.get(self.next)?;
        if child.is(KOMMUN_NS, name) {
            self.next += 1;
            Some((child, join(&self.path, name)))
        } else {
            None
        }
    }

    pub(super) fn req(&mut self, name: &str) -> Result<(&'a Element, String), DecodeError> {
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
    pub(super) fn finish(self) -> Result<(), DecodeError> {
        for c in &self.el.children[self.next..] {
            let foreign = c.ns.as_deref().is_some_and(|ns| ns != KOMMUN_NS);
            if !foreign {
                return Err(DecodeError::at(
                    DecodeKind::Unexpected,
                    &join(&self.path, &c.name),
                    "element not allowed here (wrong order, repeated, or unknown in this namespace)",
                ));
            }
            if holds_contract_element(c) {
                return Err(DecodeError::at(
                    DecodeKind::Unexpected,
                    &join(&self.path, &c.name),
                    format!(
                        "an extension may not hold elements of the contract's namespace {KOMMUN_NS}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A required leaf, parsed by `f`.
    pub(super) fn leaf<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&str, &str) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let (e, p) = self.req(name)?;
        f(&token(e, &p)?, &p)
    }

    /// An optional leaf, parsed by `f`.
    pub(super) fn opt_leaf<T>(
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
    pub(super) fn node<T>(
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
    pub(super) fn opt_node<T>(
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
    pub(super) fn many<T>(
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
pub(super) fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// The contract declares no attributes on its elements (namespace declarations are not
/// attributes).
pub(super) fn no_attributes(el: &Element, path: &str) -> Result<(), DecodeError> {
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
pub(super) fn token(el: &Element, path: &str) -> Result<String, DecodeError> {
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
pub(super) fn kept_text(
    min: usize,
    max: usize,
) -> impl Fn(&str, &str) -> Result<String, DecodeError> {
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

pub(super) fn text(min: usize, max: usize) -> impl Fn(&str, &str) -> Result<String, DecodeError> {
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

pub(super) fn with<T, E: std::fmt::Display>(
    f: impl Fn(&str) -> Result<T, E>,
) -> impl Fn(&str, &str) -> Result<T, DecodeError> {
    move |t, p| f(t).map_err(|e| invalid(p, e.to_string()))
}

pub(super) fn date(t: &str, p: &str) -> Result<Date, DecodeError> {
    with(parse_date)(t, p)
}

pub(super) fn tidpunkt(t: &str, p: &str) -> Result<time::OffsetDateTime, DecodeError> {
    with(lexical::parse_tidpunkt)(t, p)
}

pub(super) fn uuid(t: &str, p: &str) -> Result<Uuid, DecodeError> {
    with(parse_uuid)(t, p)
}

pub(super) fn boolean(t: &str, p: &str) -> Result<bool, DecodeError> {
    match t {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(invalid(p, "must be true or false")),
    }
}

pub(super) fn int(min: i64, max: i64) -> impl Fn(&str, &str) -> Result<i64, DecodeError> {
    move |t, p| lexical::parse_int(t, min, max).map_err(|e| invalid(p, e))
}

pub(super) fn procent(t: &str, p: &str) -> Result<u8, DecodeError> {
    int(0, 100)(t, p).map(|v| v as u8)
}

pub(super) fn code<T>(
    from_code: fn(&str) -> Option<T>,
    codes: fn() -> String,
) -> impl Fn(&str, &str) -> Result<T, DecodeError> {
    move |t, p| from_code(t).ok_or_else(|| invalid(p, format!("must be one of {}", codes())))
}

pub(super) fn pattern(
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

pub(super) fn two_digits(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit())
}

pub(super) use crate::model::lexical::is_code;

pub(super) fn orgnr12(t: &str, p: &str) -> Result<Organisationsnummer, DecodeError> {
    if t.len() != 12 {
        return Err(invalid(p, "must be the 12-digit form 16NNNNNNNNNN"));
    }
    with(Organisationsnummer::parse)(t, p)
}

/// Opens the envelope and returns the single body element.
pub(super) fn body_element(root: &Element) -> Result<&Element, DecodeError> {
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
            if entry.ns.as_deref() == Some(KOMMUN_NS) || holds_contract_element(entry) {
                return Err(DecodeError::at(
                    DecodeKind::Unexpected,
                    &format!("Header/{}", entry.name),
                    format!(
                        "a header entry may not be or hold elements of the contract's namespace {KOMMUN_NS}"
                    ),
                ));
            }
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
pub(super) fn only_elements(el: &Element, path: &str) -> Result<(), DecodeError> {
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
pub(super) fn must_understand(entry: &Element) -> Result<(), DecodeError> {
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
pub(super) fn decode_root<T>(
    el: &Element,
    f: impl FnOnce(&mut Seq<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let mut s = Seq::new(el, String::new())?;
    let v = f(&mut s)?;
    s.finish()?;
    Ok(v)
}
