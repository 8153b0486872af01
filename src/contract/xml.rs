//! A small, bounded XML reader: bytes → namespace-resolved element tree.
//!
//! Every limit is checked while reading, so hostile input costs at most `max_body` bytes of
//! work. DTDs are refused and no entity other than the five predefined ones and character
//! references is ever expanded.

use std::sync::Arc;

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::{PrefixDeclaration, ResolveResult};

use super::xml_syntax;

/// Bounds on what the reader accepts.
#[derive(Debug, Clone, Copy)]
pub struct XmlLimits {
    pub max_depth: usize,
    pub max_elements: usize,
    pub max_text_len: usize,
    pub max_attr_len: usize,
    pub max_attributes: usize,
}

impl Default for XmlLimits {
    fn default() -> Self {
        Self {
            max_depth: 32,
            max_elements: 2_000,
            max_text_len: 16 * 1024,
            max_attr_len: 1024,
            max_attributes: 32,
        }
    }
}

/// Why a document was refused before its content was looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("the body is not well-formed XML: {0}")]
    Malformed(String),
    #[error("the body must be UTF-8 encoded")]
    Encoding,
    #[error("DTDs and entity declarations are not allowed")]
    Doctype,
    #[error("entity reference &{0}; is not allowed (only the five predefined entities)")]
    Entity(String),
    #[error("namespace prefix '{0}' is not declared")]
    UnknownPrefix(String),
    #[error("elements are nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("the document has more than {0} elements")]
    TooManyElements(usize),
    #[error("a text is longer than {0} bytes")]
    TextTooLong(usize),
    #[error("an attribute value is longer than {0} bytes")]
    AttrTooLong(usize),
    #[error("an element has more than {0} attributes")]
    TooManyAttributes(usize),
}

/// An attribute with its resolved namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub ns: Option<Arc<str>>,
    pub name: String,
    pub value: String,
}

/// One element with its resolved namespace, attributes, child elements and text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Shared between the elements of one document: one allocation per namespace, not per element.
    pub ns: Option<Arc<str>>,
    pub name: String,
    pub attributes: Vec<Attribute>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// Whether this element is `{ns}name`.
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns.as_deref() == Some(ns) && self.name == name
    }

    pub fn attribute(&self, ns: Option<&str>, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.ns.as_deref() == ns && a.name == name)
            .map(|a| a.value.as_str())
    }
}

fn resolve(r: ResolveResult<'_>, seen: &mut Vec<Arc<str>>) -> Result<Option<Arc<str>>, XmlError> {
    match r {
        ResolveResult::Bound(ns) => {
            let ns = ns.as_ref();
            if let Some(known) = seen.iter().find(|k| &***k == ns) {
                return Ok(Some(known.clone()));
            }
            let new: Arc<str> = Arc::from(ns);
            seen.push(new.clone());
            Ok(Some(new))
        }
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(p) => Err(XmlError::UnknownPrefix(p)),
    }
}

fn predefined(name: &str) -> Option<char> {
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => return None,
    })
}

/// XML 1.0's `Char` production (Rust strings hold no surrogates).
fn is_xml_char(c: char) -> bool {
    !((c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}'))
}

fn check_chars(s: &str) -> Result<(), XmlError> {
    if s.chars().all(is_xml_char) {
        Ok(())
    } else {
        Err(malformed(
            "the document holds a character that XML 1.0 does not allow",
        ))
    }
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed(e.to_string())
}

/// Parses a whole document into its root element.
pub fn parse(bytes: &[u8], limits: &XmlLimits) -> Result<Element, XmlError> {
    let text = std::str::from_utf8(bytes).map_err(|_| XmlError::Encoding)?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().expand_empty_elements = true;
    reader.config_mut().check_end_names = true;

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    let mut namespaces: Vec<Arc<str>> = Vec::new();
    // The XML declaration may only be the very first thing in the document (XML 1.0 §2.8).
    let mut at_start = true;

    loop {
        let (ns, event) = reader.read_resolved_event().map_err(malformed)?;
        let first = std::mem::replace(&mut at_start, false);
        match event {
            Event::Start(start) => {
                if root.is_some() {
                    return Err(malformed("more than one root element"));
                }
                elements += 1;
                if elements > limits.max_elements {
                    return Err(XmlError::TooManyElements(limits.max_elements));
                }
                if stack.len() >= limits.max_depth {
                    return Err(XmlError::TooDeep(limits.max_depth));
                }
                xml_syntax::check_element_name(start.name().as_ref()).map_err(malformed)?;
                xml_syntax::check_attributes(start.attributes_raw()).map_err(malformed)?;
                let ns = resolve(ns, &mut namespaces)?;
                let name = start.local_name().as_ref().to_owned();
                let mut attributes = Vec::new();
                // Namespace declarations count too: each one lengthens every later name lookup.
                for (seen, attr) in start.attributes().with_checks(true).enumerate() {
                    let attr = attr.map_err(malformed)?;
                    if seen >= limits.max_attributes {
                        return Err(XmlError::TooManyAttributes(limits.max_attributes));
                    }
                    if attr.value.len() > limits.max_attr_len {
                        return Err(XmlError::AttrTooLong(limits.max_attr_len));
                    }
                    let key = attr.key;
                    let value = attr
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(malformed)?;
                    check_chars(&value)?;
                    if let Some(binding) = key.as_namespace_binding() {
                        let prefix = match binding {
                            PrefixDeclaration::Default => None,
                            PrefixDeclaration::Named(p) => Some(p),
                        };
                        xml_syntax::check_namespace_name(prefix, &value).map_err(malformed)?;
                        continue;
                    }
                    let (ans, local) = reader.resolver().resolve_attribute(key);
                    let attribute = Attribute {
                        ns: resolve(ans, &mut namespaces)?,
                        name: local.as_ref().to_owned(),
                        value: value.into_owned(),
                    };
                    // Namespaces in XML §6.3: `a:x` and `b:x` with a and b bound to one
                    // namespace are the same attribute twice.
                    if attributes
                        .iter()
                        .any(|a: &Attribute| a.ns == attribute.ns && a.name == attribute.name)
                    {
                        return Err(malformed(format!(
                            "the attribute {} appears twice on one element (by namespace and name)",
                            attribute.name
                        )));
                    }
                    attributes.push(attribute);
                }
                stack.push(Element {
                    ns,
                    name,
                    attributes,
                    ..Element::default()
                });
            }
            Event::End(_) => {
                let done = stack.pop().ok_or_else(|| malformed("unexpected end tag"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            // XML 1.0 [14]: character data may not hold the end of a CDATA section.
            Event::Text(t) if t.contains("]]>") => {
                return Err(malformed("text may not hold ']]>' (XML 1.0 [14])"));
            }
            Event::Text(t) => push_text(&mut stack, &t.xml10_content(), limits)?,
            Event::CData(c) => {
                push_text(&mut stack, &c.xml10_content(), limits)?;
            }
            Event::GeneralRef(r) => {
                let ch = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(malformed)?
                        .ok_or_else(|| malformed("invalid character reference"))?
                } else {
                    let name = r.xml10_content();
                    predefined(&name).ok_or_else(|| XmlError::Entity(name.into_owned()))?
                };
                push_text(&mut stack, ch.encode_utf8(&mut [0u8; 4]), limits)?;
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Decl(decl) => {
                if !first {
                    return Err(malformed(
                        "the XML declaration must be the very first thing in the document",
                    ));
                }
                let encoding = xml_syntax::check_declaration(&decl).map_err(malformed)?;
                if encoding.is_some_and(|e| !e.eq_ignore_ascii_case("utf-8")) {
                    return Err(XmlError::Encoding);
                }
            }
            // XML 1.0 [17]: a processing instruction may not be named xml, in any case.
            Event::PI(pi) if pi.target().eq_ignore_ascii_case("xml") => {
                return Err(malformed(
                    "a processing instruction may not be named xml (reserved; the XML declaration belongs at the very start)",
                ));
            }
            Event::PI(pi) => {
                xml_syntax::check_pi_target(pi.target()).map_err(malformed)?;
                check_chars(&pi)?;
            }
            Event::Comment(c) => {
                xml_syntax::check_comment(&c).map_err(malformed)?;
                check_chars(&c)?;
            }
            // expand_empty_elements turns <a/> into Start + End, so this does not occur.
            Event::Empty(_) => return Err(malformed("unexpected empty-element event")),
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed("the document ends inside an element"));
    }
    root.ok_or_else(|| malformed("there is no root element"))
}

fn push_text(stack: &mut [Element], s: &str, limits: &XmlLimits) -> Result<(), XmlError> {
    check_chars(s)?;
    match stack.last_mut() {
        Some(el) => {
            if el.text.len() + s.len() > limits.max_text_len {
                return Err(XmlError::TextTooLong(limits.max_text_len));
            }
            el.text.push_str(s);
            Ok(())
        }
        None if s.trim().is_empty() => Ok(()),
        None => Err(malformed("text outside the root element")),
    }
}

/// Escapes text for element content and attribute values.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Element, XmlError> {
        parse(s.as_bytes(), &XmlLimits::default())
    }

    #[test]
    fn resolves_namespaces_and_entities() {
        let e = p(r#"<?xml version="1.0" encoding="UTF-8"?><a:x xmlns:a="urn:a"><a:y>1 &lt; 2 &#65;</a:y><z/></a:x>"#).unwrap();
        assert_eq!(e.ns.as_deref(), Some("urn:a"));
        assert!(Arc::ptr_eq(
            e.ns.as_ref().unwrap(),
            e.children[0].ns.as_ref().unwrap()
        ));
        assert_eq!(e.children[0].text, "1 < 2 A");
        assert_eq!(e.children[1].ns, None);
    }

    #[test]
    fn refuses_doctype_and_custom_entities() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><a>&lol;</a>"#;
        assert_eq!(p(bomb), Err(XmlError::Doctype));
        assert_eq!(p("<a>&lol;</a>"), Err(XmlError::Entity("lol".into())));
    }

    #[test]
    fn limits_hold() {
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert_eq!(p(&deep), Err(XmlError::TooDeep(32)));
        let decls: String = (0..40)
            .map(|i| format!(" xmlns:p{i}=\"urn:{i}\""))
            .collect();
        assert_eq!(
            p(&format!("<a{decls}/>")),
            Err(XmlError::TooManyAttributes(32))
        );
        let many = format!("<a>{}</a>", "<b/>".repeat(2001));
        assert_eq!(p(&many), Err(XmlError::TooManyElements(2000)));
        let long = format!("<a>{}</a>", "x".repeat(20_000));
        assert_eq!(p(&long), Err(XmlError::TextTooLong(16 * 1024)));
    }

    #[test]
    fn the_declaration_comes_first_or_not_at_all() {
        assert!(p(r#"<?xml version="1.0"?><a/>"#).is_ok());
        assert!(p("\u{FEFF}<?xml version=\"1.0\"?><a/>").is_ok());
        for late in [
            " <?xml version=\"1.0\"?><a/>",
            "\n<?xml version=\"1.0\"?><a/>",
            "<!-- c --><?xml version=\"1.0\"?><a/>",
            "<a><?xml version=\"1.0\"?></a>",
            "<a/><?xml version=\"1.0\"?>",
        ] {
            let e = p(late).unwrap_err();
            assert!(e.to_string().contains("very first"), "{late:?}: {e}");
        }
    }

    #[test]
    fn no_processing_instruction_is_named_xml() {
        for pi in ["<?XML x?>", "<?Xml?>", "<?xMl y?>"] {
            for doc in [
                format!("{pi}<a/>"),
                format!("<a>{pi}</a>"),
                format!("<a/>{pi}"),
            ] {
                let e = p(&doc).unwrap_err();
                assert!(e.to_string().contains("named xml"), "{doc:?}: {e}");
            }
        }
        // Other names, even those starting with xml, are processing instructions like any.
        assert!(p("<?xml-stylesheet href=\"a\"?><a><?php x?></a>").is_ok());
    }

    #[test]
    fn an_attribute_twice_by_expanded_name_is_refused() {
        let e = p(r#"<a xmlns:p="urn:x" xmlns:q="urn:x" p:id="1" q:id="2"/>"#).unwrap_err();
        assert!(e.to_string().contains("appears twice"), "{e}");
        // The same local name in two namespaces, or with and without one, is two attributes.
        assert!(p(r#"<a xmlns:p="urn:x" xmlns:q="urn:y" p:id="1" q:id="2" id="3"/>"#).is_ok());
        assert!(matches!(
            p(r#"<a id="1" id="2"/>"#),
            Err(XmlError::Malformed(_))
        ));
    }

    #[test]
    fn refuses_broken_documents() {
        assert!(matches!(p("<a><b></a>"), Err(XmlError::Malformed(_))));
        assert!(matches!(p("<a></a><b/>"), Err(XmlError::Malformed(_))));
        assert!(matches!(p(""), Err(XmlError::Malformed(_))));
        assert_eq!(p("<p:a/>"), Err(XmlError::UnknownPrefix("p".into())));
        assert_eq!(
            parse(&[0xff, 0xfe], &XmlLimits::default()),
            Err(XmlError::Encoding)
        );
        assert_eq!(
            p(r#"<?xml version="1.0" encoding="ISO-8859-1"?><a/>"#),
            Err(XmlError::Encoding)
        );
        for bad in [
            "<a>x\u{1}y</a>",
            "<a>&#1;</a>",
            "<a\u{1}/>",
            "<a b=\"\u{2}\"/>",
            "<a>\u{FFFF}</a>",
        ] {
            assert!(matches!(p(bad), Err(XmlError::Malformed(_))), "{bad:?}");
        }
    }
}
