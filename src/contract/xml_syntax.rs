//! The parts of XML 1.0 and Namespaces in XML that quick-xml leaves to its caller: names
//! that are names, attributes after white space with quoted values free of `<`, the XML
//! declaration's one grammar, comments without `--`, and namespace names that are URI
//! references.
//!
//! The XSD differential found most of these missing (libxml2 refused a document the reader
//! took: `fuzz/xsd-divergences.txt` listed them until they were fixed); the comment and `]]>`
//! rules were added beside them. Messages quote at most [`QUOTED`] characters of what was
//! sent; the Fault they end in masks digit runs.

/// The most characters of a hostile name or value a message quotes.
const QUOTED: usize = 40;

/// XML 1.0 (fifth edition) [4] NameStartChar, without `:` (Namespaces in XML: NCName).
fn is_name_start(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

/// XML 1.0 [4a] NameChar, without `:`.
fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// XML 1.0 [3] S.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Namespaces in XML [4] NCName: a name without a colon.
pub fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_name_start) && chars.all(is_name_char)
}

/// Namespaces in XML [7] QName: an NCName, or two joined by one colon (`e:x`, not `e:`,
/// `:x` or `e:x:y`).
pub fn is_qname(s: &str) -> bool {
    match s.split_once(':') {
        Some((prefix, local)) => is_ncname(prefix) && is_ncname(local),
        None => is_ncname(s),
    }
}

/// A hostile name or value as a message may show it: cut short, any digit run that could be
/// an identity number masked (the message may reach a log or a terminal before a Fault's own
/// masking), quoted and escaped.
pub fn quoted(s: &str) -> String {
    let cut: String = s.chars().take(QUOTED).collect();
    let more = if cut.len() < s.len() { "…" } else { "" };
    let shown = crate::model::ident::redact_digit_runs(&cut);
    format!("{shown:?}{more}")
}

/// An element's or a processing instruction's name, checked.
pub fn check_element_name(name: &str) -> Result<(), String> {
    if is_qname(name) {
        Ok(())
    } else {
        Err(format!(
            "the element name {} is not an XML name (at most one colon, with a name on each side)",
            quoted(name)
        ))
    }
}

/// XML 1.0 [16] PITarget, which Namespaces in XML keeps free of colons.
pub fn check_pi_target(target: &str) -> Result<(), String> {
    if is_ncname(target) {
        Ok(())
    } else {
        Err(format!(
            "the processing instruction's target {} is not an XML name",
            quoted(target)
        ))
    }
}

/// One `name = "value"` of a start tag or the XML declaration: the name, the raw value
/// (between its quotes) and what follows.
struct Pair<'a> {
    name: &'a str,
    value: &'a str,
    rest: &'a str,
}

/// Reads the next pair from `s`, which must start with white space unless nothing but white
/// space is left (then `None`).
fn next_pair(s: &str) -> Result<Option<Pair<'_>>, String> {
    let trimmed = s.trim_start_matches(is_space);
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.len() == s.len() {
        return Err(format!(
            "attributes must be separated by white space (before {})",
            quoted(trimmed)
        ));
    }
    let end = trimmed
        .find(|c: char| is_space(c) || c == '=')
        .unwrap_or(trimmed.len());
    let (name, after) = trimmed.split_at(end);
    if !is_qname(name) {
        return Err(format!(
            "the attribute name {} is not an XML name (at most one colon, with a name on each side)",
            quoted(name)
        ));
    }
    let Some(after) = after.trim_start_matches(is_space).strip_prefix('=') else {
        return Err(format!(
            "the attribute {} has no '=' and value",
            quoted(name)
        ));
    };
    let after = after.trim_start_matches(is_space);
    let quote = match after.chars().next() {
        Some(q @ ('"' | '\'')) => q,
        _ => {
            return Err(format!(
                "the value of the attribute {} is not in quotes",
                quoted(name)
            ));
        }
    };
    let body = &after[1..];
    let Some(close) = body.find(quote) else {
        return Err(format!(
            "the value of the attribute {} has no closing quote",
            quoted(name)
        ));
    };
    let value = &body[..close];
    // XML 1.0 [10] AttValue: a '<' must be written &lt;.
    if value.contains('<') {
        return Err(format!(
            "the value of the attribute {} holds '<', which XML allows only as &lt;",
            quoted(name)
        ));
    }
    Ok(Some(Pair {
        name,
        value,
        rest: &body[close + 1..],
    }))
}

/// XML 1.0 [40] STag after the name: `(S Attribute)* S?`. quick-xml reads attributes that run
/// together (`a="1"b="2"`) and values that hold `<`; XML does not.
pub fn check_attributes(raw: &str) -> Result<(), String> {
    let mut rest = raw;
    while let Some(pair) = next_pair(rest)? {
        rest = pair.rest;
    }
    Ok(())
}

/// The XML declaration's content between `<?` and `?>`, as XML 1.0 [23] XMLDecl has it:
/// `xml`, then `version` (1.x), then optionally `encoding` (an EncName) and `standalone`
/// (yes or no), in that order. Returns the encoding if one is named.
pub fn check_declaration(content: &str) -> Result<Option<&str>, String> {
    let malformed = |why: &str| Err(format!("the XML declaration is malformed: {why}"));
    let Some(mut rest) = content.strip_prefix("xml") else {
        return malformed("it does not start with <?xml");
    };
    let mut pairs = Vec::with_capacity(3);
    while let Some(pair) =
        next_pair(rest).map_err(|e| format!("the XML declaration is malformed: {e}"))?
    {
        if pairs.len() == 3 {
            return malformed("it has more than version, encoding and standalone");
        }
        rest = pair.rest;
        pairs.push((pair.name, pair.value));
    }
    let mut pairs = pairs.into_iter().peekable();
    match pairs.next() {
        Some(("version", v)) if is_version(v) => {}
        Some(("version", _)) => return malformed("the version must be 1.0 (or 1.x)"),
        _ => return malformed("version must come first"),
    }
    let encoding = pairs.next_if(|(n, _)| *n == "encoding").map(|(_, v)| v);
    if encoding.is_some_and(|e| !is_encoding_name(e)) {
        return malformed("the encoding's name is not an encoding name");
    }
    if let Some((n, v)) = pairs.next_if(|(n, _)| *n == "standalone")
        && !matches!(v, "yes" | "no")
    {
        return malformed(&format!("{n} must be yes or no"));
    }
    match pairs.next() {
        None => Ok(encoding),
        Some((name, _)) => malformed(&format!(
            "{} is not version, encoding or standalone in that order",
            quoted(name)
        )),
    }
}

/// XML 1.0 [26] VersionNum: `1.` and digits.
fn is_version(v: &str) -> bool {
    v.strip_prefix("1.")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// XML 1.0 [81] EncName.
fn is_encoding_name(e: &str) -> bool {
    let mut bytes = e.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// XML 1.0 [15] Comment: no `--` inside, and no `-` just before the closing `-->`.
pub fn check_comment(content: &str) -> Result<(), String> {
    if content.contains("--") || content.ends_with('-') {
        Err("a comment may not hold '--' (XML 1.0 [15])".into())
    } else {
        Ok(())
    }
}

/// A namespace name, as Namespaces in XML requires it: a URI reference (RFC 3986, in ASCII),
/// and not empty for a prefix. An empty default namespace (`xmlns=""`) undeclares it.
pub fn check_namespace_name(prefix: Option<&str>, uri: &str) -> Result<(), String> {
    let named = || match prefix {
        Some(p) => format!("xmlns:{}", quoted(p)),
        None => "xmlns".to_owned(),
    };
    if uri.is_empty() {
        return match prefix {
            Some(_) => Err(format!(
                "{} binds a prefix to no namespace (Namespaces in XML 1.0 allows that only for the default)",
                named()
            )),
            None => Ok(()),
        };
    }
    if is_uri_reference(uri) {
        Ok(())
    } else {
        Err(format!(
            "{} names {} as its namespace, which is not a URI",
            named(),
            quoted(uri)
        ))
    }
}

/// RFC 3986 URI-reference, in its characters: unreserved, reserved (without `[` `]`, which
/// only an IP literal uses) and %-escapes; at most one `#`; and where a `:` comes before any
/// `/`, `?` or `#`, what precedes it is a scheme.
fn is_uri_reference(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
                if !(hex(i + 1) && hex(i + 2)) {
                    return false;
                }
                i += 3;
                continue;
            }
            b if b.is_ascii_alphanumeric() => {}
            b'-' | b'.' | b'_' | b'~' | b':' | b'/' | b'?' | b'#' | b'@' | b'!' | b'$' | b'&'
            | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {}
            _ => return false,
        }
        i += 1;
    }
    if s.matches('#').count() > 1 {
        return false;
    }
    let head = &s[..s.find(['/', '?', '#']).unwrap_or(s.len())];
    match head.split_once(':') {
        None => true,
        Some((scheme, _)) => {
            let mut b = scheme.bytes();
            b.next().is_some_and(|c| c.is_ascii_alphabetic())
                && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_have_one_colon_with_a_name_on_each_side() {
        for good in ["e:x", "x", "soap:Envelope", "_a.b-c", "å:ä", "a·b"] {
            assert!(is_qname(good), "{good}");
        }
        for bad in [
            "e:", ":x", "e:x:", "e:xe:", "", "1a", "a/~<b", "a\"", "a b", "-x",
        ] {
            assert!(!is_qname(bad), "{bad:?}");
        }
    }

    #[test]
    fn attributes_stand_apart_in_quotes_without_a_lt() {
        for good in ["", " a=\"1\"", " a = '1' b=\"2\" ", "\n\tp:a=\"x>y\""] {
            assert_eq!(check_attributes(good), Ok(()), "{good:?}");
        }
        for (bad, why) in [
            (" a=\"1\"b=\"2\"", "separated by white space"),
            (" a:b)c=\"0\"", "not an XML name"),
            (" a", "no '='"),
            (" a=1", "not in quotes"),
            (" a=\"1", "no closing quote"),
            (" xmlns:e=\"urn:example<![:x\"", "holds '<'"),
        ] {
            let e = check_attributes(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_declaration_has_its_one_grammar() {
        for (good, enc) in [
            ("xml version=\"1.0\"", None),
            ("xml version='1.0' encoding='UTF-8' ", Some("UTF-8")),
            ("xml version=\"1.1\" standalone=\"yes\"", None),
            (
                "xml version=\"1.0\" encoding=\"utf-8\" standalone='no'",
                Some("utf-8"),
            ),
        ] {
            assert_eq!(check_declaration(good), Ok(enc), "{good:?}");
        }
        for bad in [
            "xml",
            "xml versio>>>>n=\"1.0\"",
            "xml version=\"1.0\" en^oding=\"UTF-8\"",
            "xml versioe=\"1.0\"",
            "xml  encoding=\"UTF-8\"",
            "xml version=\"0\"",
            "xml version=\"1.\"",
            "xml version=\"1.0\" encodingKKK=\"UTF-8\"",
            "xml version=\"1.0\" ncoding=\"UTF-8\"",
            "xml ver&amp;sion=\"1.0\"",
            "xml version=\"1.0\" standalone=\"yes\" encoding=\"UTF-8\"",
            "xml version=\"1.0\" encoding=\"8bit\"",
            "xml version=\"1.0\" standalone=\"maybe\"",
            "xml version=\"1.0\"encoding=\"UTF-8\"",
        ] {
            let e = check_declaration(bad).unwrap_err();
            assert!(e.contains("declaration"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn namespace_names_are_uri_references() {
        for good in [
            "http://schemas.xmlsoap.org/soap/envelope/",
            "urn:example:brygga:tillagg",
            "urn:x%20y",
            "relative/path",
            "http://a/b?c=d#e",
        ] {
            assert_eq!(check_namespace_name(Some("e"), good), Ok(()), "{good}");
        }
        assert_eq!(check_namespace_name(None, ""), Ok(()));
        for bad in [
            "urn*:example",
            "urn:a b",
            "urn:%zz",
            "urn:å",
            "1urn:x",
            ":x",
            "a#b#c",
            "urn:<",
        ] {
            let e = check_namespace_name(Some("e"), bad).unwrap_err();
            assert!(e.contains("not a URI"), "{bad:?}: {e}");
        }
        assert!(check_namespace_name(Some("e"), "").is_err());
    }

    #[test]
    fn comments_hold_no_double_hyphen() {
        assert_eq!(check_comment(" a - b "), Ok(()));
        for bad in [" a -- b ", "x-", "--"] {
            assert!(check_comment(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quoting_is_short_and_escaped() {
        assert_eq!(quoted("a\u{1}"), "\"a\\u{1}\"");
        // A name or namespace a caller chose to spell a personnummer with is not repeated.
        assert_eq!(quoted("p198507099805"), "\"p************\"");
        let e = check_namespace_name(Some("e"), "urn:x 198507099805").unwrap_err();
        assert!(!e.contains("198507099805"), "{e}");
        let long = "x".repeat(100);
        assert_eq!(quoted(&long), format!("{:?}…", "x".repeat(40)));
    }
}
