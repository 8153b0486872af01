//! Lexical forms shared by the XML and JSON contracts: XSD integers and decimals, and
//! timestamps with a required offset. Errors name the rule, never the value.

use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use super::ident::{format_date, parse_date};

/// An `xs:int`-style integer within `min..=max`: optional sign, digits, leading zeros allowed.
pub fn parse_int(s: &str, min: i64, max: i64) -> Result<i64, String> {
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("must be an integer from {min} to {max}"));
    }
    let significant = digits.trim_start_matches('0');
    let value = if significant.len() > 12 {
        None
    } else {
        significant
            .parse::<i64>()
            .ok()
            .or(Some(0).filter(|_| significant.is_empty()))
    };
    match value.map(|v| if neg { -v } else { v }) {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!("must be an integer from {min} to {max}")),
    }
}

/// An `xs:decimal` with at most `scale` significant fraction digits, as an integer count of
/// 10^-scale units within `min..=max` (in those units). `"12.50"` with scale 2 is 1250.
pub fn parse_decimal(s: &str, scale: u32, min: u64, max: u64) -> Result<u64, String> {
    let rule = || {
        format!(
            "must be a decimal number from {} to {} with at most {scale} decimal(s)",
            format_decimal(min, scale),
            format_decimal(max, scale)
        )
    };
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let digits_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits_ok(int) || !digits_ok(frac) {
        return Err(rule());
    }
    // As written, not as valued: a schema validator (libxml2) holds about 24 digits and
    // refuses the rest, so brygga accepts no more than it can.
    if int.len() > 18 || frac.len() > 18 {
        return Err(format!(
            "{} (at most 18 digits on each side of the point)",
            rule()
        ));
    }
    let frac = frac.trim_end_matches('0');
    let int = int.trim_start_matches('0');
    if frac.len() > scale as usize || int.len() > 15 {
        return Err(rule());
    }
    let int_value: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| rule())?
    };
    let mut frac_value: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| rule())?
    };
    for _ in frac.len()..scale as usize {
        frac_value *= 10;
    }
    let value = int_value
        .checked_mul(10u64.pow(scale))
        .and_then(|v| v.checked_add(frac_value))
        .ok_or_else(rule)?;
    if (neg && value != 0) || !(min..=max).contains(&value) {
        return Err(rule());
    }
    Ok(value)
}

/// Writes `units` of 10^-scale as a decimal: `format_decimal(1250, 2)` is `12.50`; with
/// scale 1, whole numbers lose their fraction (`40`, `7.5`).
pub fn format_decimal(units: u64, scale: u32) -> String {
    let p = 10u64.pow(scale);
    let (int, frac) = (units / p, units % p);
    match scale {
        0 => int.to_string(),
        1 if frac == 0 => int.to_string(),
        _ => format!("{int}.{frac:0width$}", width = scale as usize),
    }
}

/// The same value as a JSON number (`12.5`), exact for the sizes used here.
pub fn decimal_to_f64(units: u64, scale: u32) -> f64 {
    units as f64 / 10u64.pow(scale) as f64
}

/// A JSON number to units of 10^-scale, refusing more decimals than `scale`: the number's
/// shortest decimal form is read exactly, as JSON Schema's `multipleOf` does.
pub fn decimal_from_f64(v: f64, scale: u32, min: u64, max: u64) -> Result<u64, String> {
    if !v.is_finite() {
        return Err("must be a finite number".into());
    }
    // Rust prints the shortest text that reads back as the same f64.
    let text = format!("{v}");
    if text.contains(['e', 'E']) {
        return Err(format!(
            "must be a number from {} to {} with at most {scale} decimal(s)",
            format_decimal(min, scale),
            format_decimal(max, scale)
        ));
    }
    parse_decimal(&text, scale, min, max)
}

const TIDPUNKT_RULE: &str =
    "must be a timestamp YYYY-MM-DDThh:mm:ss with an offset, e.g. 2026-11-25T10:15:30+01:00";

fn two(b: &[u8], at: usize) -> Option<u8> {
    let (a, c) = (*b.get(at)?, *b.get(at + 1)?);
    (a.is_ascii_digit() && c.is_ascii_digit()).then(|| (a - b'0') * 10 + (c - b'0'))
}

/// A timestamp with a required offset: `YYYY-MM-DDThh:mm:ss[.f{1,9}](Z|±hh:mm)`.
pub fn parse_tidpunkt(s: &str) -> Result<OffsetDateTime, String> {
    let rule = || TIDPUNKT_RULE.to_owned();
    let date: Date = s
        .get(..10)
        .ok_or_else(rule)
        .and_then(|d| parse_date(d).map_err(|e| e.to_string()))?;
    let b = s.as_bytes();
    if b.get(10) != Some(&b'T') || b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return Err(rule());
    }
    let (h, m, sec) = (
        two(b, 11).ok_or_else(rule)?,
        two(b, 14).ok_or_else(rule)?,
        two(b, 17).ok_or_else(rule)?,
    );
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        let frac = &s[start..end];
        if frac.is_empty() || frac.len() > 9 {
            return Err(rule());
        }
        nanos = frac.parse::<u32>().map_err(|_| rule())? * 10u32.pow(9 - frac.len() as u32);
        i = end;
    }
    let offset = match &s[i..] {
        "Z" => UtcOffset::UTC,
        o if o.len() == 6
            && (o.starts_with('+') || o.starts_with('-'))
            && o.as_bytes()[3] == b':' =>
        {
            let ob = o.as_bytes();
            let (oh, om) = (two(ob, 1).ok_or_else(rule)?, two(ob, 4).ok_or_else(rule)?);
            if oh > 14 || om > 59 || (oh == 14 && om > 0) {
                return Err(rule());
            }
            let sign = if ob[0] == b'-' { -1 } else { 1 };
            UtcOffset::from_hms(sign * oh as i8, sign * om as i8, 0).map_err(|_| rule())?
        }
        _ => return Err(rule()),
    };
    let time = Time::from_hms_nano(h, m, sec, nanos).map_err(|_| {
        "the time of day is not a real time (hour 0-23, minute and second 0-59)".to_owned()
    })?;
    Ok(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

/// Writes a timestamp with its own offset (`Z` for UTC) and only the fraction it needs.
pub fn format_tidpunkt(t: OffsetDateTime) -> String {
    let mut out = format!(
        "{}T{:02}:{:02}:{:02}",
        format_date(t.date()),
        t.hour(),
        t.minute(),
        t.second()
    );
    if t.nanosecond() != 0 {
        let frac = format!("{:09}", t.nanosecond());
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    let o = t.offset();
    if o.is_utc() {
        out.push('Z');
    } else {
        let total = o.whole_minutes();
        let sign = if total < 0 { '-' } else { '+' };
        let total = total.unsigned_abs();
        out.push_str(&format!("{sign}{:02}:{:02}", total / 60, total % 60));
    }
    out
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
        && !super::ident::embeds_identity_number(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_xs_int() {
        assert_eq!(parse_int("100", 0, 100), Ok(100));
        assert_eq!(parse_int("+0100", 0, 100), Ok(100));
        assert_eq!(parse_int("-0", 0, 100), Ok(0));
        assert!(parse_int("101", 0, 100).is_err());
        assert!(parse_int("1e2", 0, 100).is_err());
        assert!(parse_int("", 0, 100).is_err());
        assert!(parse_int("+", 0, 100).is_err());
        assert!(parse_int("99999999999999999999999", 0, 100).is_err());
    }

    #[test]
    fn decimals_follow_xs_decimal() {
        assert_eq!(parse_decimal("12.50", 2, 0, 999_999_999), Ok(1250));
        assert_eq!(parse_decimal("12.500", 2, 0, 999_999_999), Ok(1250));
        assert_eq!(parse_decimal(".5", 1, 5, 400), Ok(5));
        assert_eq!(parse_decimal("7.", 1, 5, 400), Ok(70));
        assert_eq!(parse_decimal("+40", 1, 5, 400), Ok(400));
        assert!(parse_decimal("40.5", 1, 5, 400).is_err());
        assert!(parse_decimal("1.234", 2, 0, 999_999_999).is_err());
        assert!(parse_decimal("-1", 2, 0, 999_999_999).is_err());
        assert!(parse_decimal(".", 2, 0, 999_999_999).is_err());
        assert!(parse_decimal("1,5", 2, 0, 999_999_999).is_err());
        assert_eq!(format_decimal(1250, 2), "12.50");
        assert_eq!(format_decimal(400, 1), "40");
        assert_eq!(format_decimal(75, 1), "7.5");
        assert_eq!(decimal_from_f64(12.5, 2, 0, 999_999_999), Ok(1250));
        assert!(decimal_from_f64(12.345, 2, 0, 999_999_999).is_err());
        assert!(decimal_from_f64(12.3400000001, 2, 0, 999_999_999).is_err());
        assert_eq!(decimal_from_f64(16437.25, 2, 0, 999_999_999), Ok(1643725));
        assert_eq!(decimal_from_f64(0.07, 2, 0, 999_999_999), Ok(7));
    }

    #[test]
    fn timestamps_need_an_offset() {
        let t = parse_tidpunkt("2026-11-25T10:15:30+01:00").unwrap();
        assert_eq!(format_tidpunkt(t), "2026-11-25T10:15:30+01:00");
        let z = parse_tidpunkt("2026-11-25T09:15:30.120Z").unwrap();
        assert_eq!(format_tidpunkt(z), "2026-11-25T09:15:30.12Z");
        assert!(parse_tidpunkt("2026-11-25T10:15:30").is_err());
        assert!(parse_tidpunkt("2026-11-25T24:00:00Z").is_err());
        assert!(parse_tidpunkt("2026-11-25 10:15:30Z").is_err());
        assert!(parse_tidpunkt("2026-11-25T10:15:30+15:00").is_err());
        assert!(parse_tidpunkt("2026-02-30T10:15:30Z").is_err());
        assert!(parse_tidpunkt("2026-11-25T10:15:30.Z").is_err());
        assert!(parse_tidpunkt("2026-11-25T10:15:3é+01:00").is_err());
    }
}

/// The first character in `s` that a reader would not see: a C0 or C1 control (tab, line feed
/// and carriage return aside), a bidirectional embedding, override, isolate or mark, a
/// zero-width character, a line or paragraph separator, a byte-order mark. Text that is kept
/// or shown to a person must not carry them: they hide or reorder what it says.
pub fn hidden_character(s: &str) -> Option<char> {
    s.chars().find(|&c| {
        (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
            || matches!(c,
                '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}')
    })
}

/// Text as a person may be shown it: every [`hidden_character`] written as `\u{XXXX}`.
pub fn shown(s: &str) -> String {
    if hidden_character(s).is_none() {
        return s.to_owned();
    }
    s.chars()
        .map(|c| match hidden_character(c.encode_utf8(&mut [0; 4])) {
            Some(_) => format!("\\u{{{:04X}}}", c as u32),
            None => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod hidden_tests {
    use super::*;

    #[test]
    fn hidden_characters_are_found_and_shown() {
        assert_eq!(hidden_character("Stockholms stad\t"), None);
        for c in [
            '\u{9B}', '\u{85}', '\u{202E}', '\u{200B}', '\u{2066}', '\u{FEFF}', '\u{7}',
        ] {
            assert_eq!(hidden_character(&format!("a{c}b")), Some(c));
        }
        assert_eq!(shown("EB\u{202E}1"), "EB\\u{202E}1");
    }
}
