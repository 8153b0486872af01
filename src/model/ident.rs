//! Identifiers parsed once at the edge: a value of these types is always valid.
//!
//! None of them prints a personal identity number: `Debug` of [`Personnummer`] is masked and it
//! has no `Display`. Error messages name the rule that failed, never the value.

use std::fmt;

use time::{Date, Month};

/// Why an identifier was refused. The text says which rule failed, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    #[error("must be exactly {0} digits")]
    Digits(usize),
    #[error("the date part is not a real calendar date")]
    Date,
    #[error("the check digit does not match (Luhn)")]
    CheckDigit,
    #[error("the third digit must be 2 or higher for an organisation number")]
    NotOrganisation,
    #[error("the 12-digit form must start with 16")]
    Prefix,
    #[error("county code {0:02} does not exist (valid: 01, 03-10, 12-14, 17-25)")]
    County(u8),
    #[error(
        "must be SE, a 10-digit organisation number, '-' and letters or digits, at most 31 characters"
    )]
    HsaShape,
    #[error(
        "must not contain a personal identity number (personnummer or samordningsnummer): it is kept in the audit chain"
    )]
    EmbedsIdentityNumber,
    #[error("must be a date YYYY-MM-DD, optionally with an offset such as +01:00 or Z")]
    DateShape,
    #[error("must be a UUID such as 3f1c6a52-8b9e-4c1f-9a57-0d6e2b7c4a10")]
    Uuid,
}

/// Luhn (modulus 10) check digit over `digits`, weights 2,1,2,1,… from the left.
pub fn luhn_check_digit(digits: &[u8]) -> u8 {
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let p = u32::from(*d) * if i % 2 == 0 { 2 } else { 1 };
            p / 10 + p % 10
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

fn ascii_digits<const N: usize>(s: &str) -> Result<[u8; N], IdentError> {
    let b = s.as_bytes();
    if b.len() != N || !b.iter().all(u8::is_ascii_digit) {
        return Err(IdentError::Digits(N));
    }
    let mut out = [0u8; N];
    for (o, c) in out.iter_mut().zip(b) {
        *o = c - b'0';
    }
    Ok(out)
}

fn num(d: &[u8]) -> u32 {
    d.iter().fold(0, |acc, x| acc * 10 + u32::from(*x))
}

/// Whether a personal identity number is a personnummer or a samordningsnummer (day + 60).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    Personnummer,
    Samordningsnummer,
}

/// A Swedish personal identity number in its 12-digit form `YYYYMMDDNNNC`: a personnummer or a
/// samordningsnummer. Exists only if the date is real and the check digit matches.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Personnummer {
    digits: [u8; 12],
}

impl Personnummer {
    /// Parses the 12-digit form used by AF and SSBTEK (no separator).
    pub fn parse(s: &str) -> Result<Self, IdentError> {
        Self::from_digits(ascii_digits::<12>(s)?)
    }

    /// The number whose digits' values (0-9) these are, if its date is real and its check
    /// digit matches.
    fn from_digits(digits: [u8; 12]) -> Result<Self, IdentError> {
        let year = num(&digits[0..4]) as i32;
        let month = num(&digits[4..6]) as u8;
        let mut day = num(&digits[6..8]) as u8;
        if day > 60 {
            day -= 60;
        }
        if !(1800..=2099).contains(&year) {
            return Err(IdentError::Date);
        }
        let month = Month::try_from(month).map_err(|_| IdentError::Date)?;
        Date::from_calendar_date(year, month, day).map_err(|_| IdentError::Date)?;
        if luhn_check_digit(&digits[2..11]) != digits[11] {
            return Err(IdentError::CheckDigit);
        }
        Ok(Self { digits })
    }

    /// Parses what a person types: the 12 digits, with or without a `-` before the last four
    /// (`19850709-9805`).
    pub fn parse_written(s: &str) -> Result<Self, IdentError> {
        let s = s.trim();
        match s.len() {
            13 if s.as_bytes()[8] == b'-' => Self::parse(&format!("{}{}", &s[..8], &s[9..])),
            _ => Self::parse(s),
        }
    }

    pub fn kind(&self) -> IdentityKind {
        if num(&self.digits[6..8]) > 60 {
            IdentityKind::Samordningsnummer
        } else {
            IdentityKind::Personnummer
        }
    }

    /// The 12 digits, for the payloads the law lets carry them (AF request bodies) and for
    /// keyed pseudonymisation. Never for logs, metrics or errors.
    pub fn expose(&self) -> String {
        self.digits.iter().map(|d| char::from(b'0' + d)).collect()
    }

    /// The digits as numbers, e.g. for deterministic simulation.
    pub fn digits(&self) -> &[u8; 12] {
        &self.digits
    }
}

impl fmt::Debug for Personnummer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Personnummer(************)")
    }
}

/// A Swedish organisation number (10 digits, third digit ≥ 2, Luhn check digit).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Organisationsnummer {
    digits: [u8; 10],
}

impl Organisationsnummer {
    /// Accepts `NNNNNN-NNNN`, `NNNNNNNNNN` or the 12-digit SSBTEK form `16NNNNNNNNNN`.
    pub fn parse(s: &str) -> Result<Self, IdentError> {
        let digits = match s.len() {
            11 if s.as_bytes()[6] == b'-' => {
                let joined = format!("{}{}", &s[..6], &s[7..]);
                ascii_digits::<10>(&joined)?
            }
            12 => {
                let all = ascii_digits::<12>(s)?;
                if all[0..2] != [1, 6] {
                    return Err(IdentError::Prefix);
                }
                let mut d = [0u8; 10];
                d.copy_from_slice(&all[2..]);
                d
            }
            _ => ascii_digits::<10>(s)?,
        };
        if digits[2] < 2 {
            return Err(IdentError::NotOrganisation);
        }
        if luhn_check_digit(&digits[..9]) != digits[9] {
            return Err(IdentError::CheckDigit);
        }
        Ok(Self { digits })
    }

    /// The 12-digit form `16` + orgnr used in SOAP headers.
    pub fn to_ssbtek(&self) -> String {
        format!("16{}", self.plain())
    }

    /// Ten digits without separator.
    pub fn plain(&self) -> String {
        self.digits.iter().map(|d| char::from(b'0' + d)).collect()
    }
}

impl fmt::Display for Organisationsnummer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.plain();
        write!(f, "{}-{}", &p[..6], &p[6..])
    }
}

impl fmt::Debug for Organisationsnummer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Organisationsnummer({self})")
    }
}

/// A municipality code (SCB): four digits, the first two an existing county (län).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kommunkod([u8; 4]);

const COUNTIES: [u8; 21] = [
    1, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 17, 18, 19, 20, 21, 22, 23, 24, 25,
];

impl Kommunkod {
    pub fn parse(s: &str) -> Result<Self, IdentError> {
        let d = ascii_digits::<4>(s)?;
        let county = d[0] * 10 + d[1];
        if !COUNTIES.contains(&county) {
            return Err(IdentError::County(county));
        }
        Ok(Self(d))
    }
}

impl fmt::Display for Kommunkod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.0 {
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Kommunkod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kommunkod({self})")
    }
}

/// An HSA-id of a case worker or system: `SE` + orgnr + `-` + letters/digits, ≤ 31 characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HsaId(String);

impl HsaId {
    pub fn parse(s: &str) -> Result<Self, IdentError> {
        let b = s.as_bytes();
        let shape = b.len() <= 31
            && b.len() >= 14
            && s.starts_with("SE")
            && b[12] == b'-'
            && b[2..12].iter().all(u8::is_ascii_digit)
            && b[13..].iter().all(u8::is_ascii_alphanumeric);
        if !shape {
            return Err(IdentError::HsaShape);
        }
        Organisationsnummer::parse(&s[2..12])?;
        // The suffix is the organisation's own: it must not name the person behind it.
        if embeds_identity_number(&s[13..]) {
            return Err(IdentError::EmbedsIdentityNumber);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HsaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for HsaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HsaId({})", self.0)
    }
}

/// Parses `YYYY-MM-DD` with an optional offset (`Z`, `+01:00`); the offset is checked and
/// dropped, since every date in these messages is a calendar day in Sweden.
pub fn parse_date(s: &str) -> Result<Date, IdentError> {
    let Some(day) = s.get(..10) else {
        return Err(IdentError::DateShape);
    };
    let offset = &s[10..];
    let b = day.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && [0, 1, 2, 3, 5, 6, 8, 9]
            .iter()
            .all(|&i| b[i].is_ascii_digit());
    if !shape {
        return Err(IdentError::DateShape);
    }
    let ob = offset.as_bytes();
    let offset_ok = offset.is_empty()
        || offset == "Z"
        || (ob.len() == 6
            && (ob[0] == b'+' || ob[0] == b'-')
            && ob[3] == b':'
            && [1, 2, 4, 5].iter().all(|&i| ob[i].is_ascii_digit())
            && {
                // xs:date allows offsets up to ±14:00.
                let minutes =
                    num(&[ob[1] - b'0', ob[2] - b'0']) * 60 + num(&[ob[4] - b'0', ob[5] - b'0']);
                minutes <= 14 * 60 && num(&[ob[4] - b'0', ob[5] - b'0']) <= 59
            });
    if !offset_ok {
        return Err(IdentError::DateShape);
    }
    let y = day[0..4]
        .parse::<i32>()
        .map_err(|_| IdentError::DateShape)?;
    let m = day[5..7].parse::<u8>().map_err(|_| IdentError::DateShape)?;
    let d = day[8..10]
        .parse::<u8>()
        .map_err(|_| IdentError::DateShape)?;
    if y == 0 {
        // There is no year 0000 in xs:date.
        return Err(IdentError::Date);
    }
    let m = Month::try_from(m).map_err(|_| IdentError::Date)?;
    Date::from_calendar_date(y, m, d).map_err(|_| IdentError::Date)
}

/// Formats a date as `YYYY-MM-DD`.
pub fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Parses a UUID in its hyphenated form only (what the contracts' pattern allows).
pub fn parse_uuid(s: &str) -> Result<uuid::Uuid, IdentError> {
    if s.len() != 36 {
        return Err(IdentError::Uuid);
    }
    uuid::Uuid::try_parse(s).map_err(|_| IdentError::Uuid)
}

/// Masks every group of digits that could be a personal identity number: ten or more digits
/// in a row, or joined by single `-`, `+` or spaces (`850709-9805`), unless the group is 10 or
/// 12 digits whose date part cannot be a birth date and that holds no valid number
/// (organisation numbers, whose "month" is 20 or more, stay readable). Dates and small numbers
/// stay. For messages built from hostile input (an element name, a parser excerpt, a serde
/// error quoting a value).
pub fn redact_digit_runs(s: &str) -> String {
    mask_groups(s, |d| {
        could_be_identity_number(d) || holds_valid_identity_number(d)
    })
}

/// Masks only the digit groups that hold a valid personnummer or samordningsnummer (real date,
/// right check digit) in 12 or 10 digits: stricter than [`redact_digit_runs`]'s guess, for
/// text that is kept whole unless it really spells one (a Korrelationsid in an audit record).
/// A group with digits of another script is masked.
pub fn mask_identity_numbers(s: &str) -> String {
    mask_groups(s, holds_valid_identity_number)
}

/// Whether [`mask_identity_numbers`] would mask anything in `s`.
pub fn embeds_identity_number(s: &str) -> bool {
    mask_identity_numbers(s) != s
}

/// Masks every digit of each group of ten or more digits for which `mask` holds (a group with
/// a digit of another script is masked whole: only ASCII digits have a known value).
fn mask_groups(s: &str, mask: impl Fn(&[u8]) -> bool) -> String {
    let digit = |c: char| c.is_numeric();
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if !digit(chars[i]) {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let (j, group) = digit_group(&chars, i);
        let masked = group.digits >= 10 && group.values.as_deref().is_none_or(&mask);
        for c in &chars[i..j] {
            out.push(if masked && digit(*c) { '*' } else { *c });
        }
        i = j;
    }
    out
}

/// The most characters that are neither letter nor digit that may join two runs of digits
/// into one group: enough for `19850709 - 9805`, `850709 – 9805` and zero-width spaces.
const MAX_JOIN: usize = 4;

/// A run of digits starting at `i`, where up to [`MAX_JOIN`] characters that are neither
/// letter nor digit may join two runs (`850709-9805`, `19850709 - 9805`, `1985 07 09.9805`):
/// where it ends, and its digits.
fn digit_group(chars: &[char], i: usize) -> (usize, DigitGroup) {
    let digit = |c: char| c.is_numeric();
    let mut j = i;
    let mut digits = 0;
    while j < chars.len() {
        if digit(chars[j]) {
            digits += 1;
            j += 1;
            continue;
        }
        let gap = chars[j..]
            .iter()
            .take(MAX_JOIN + 1)
            .take_while(|c| !c.is_alphanumeric())
            .count();
        if gap <= MAX_JOIN && chars.get(j + gap).is_some_and(|c| digit(*c)) {
            j += gap;
        } else {
            break;
        }
    }
    let values = chars[i..j]
        .iter()
        .filter(|c| digit(**c))
        .map(|c| c.is_ascii_digit().then(|| *c as u8 - b'0'))
        .collect();
    (j, DigitGroup { digits, values })
}

struct DigitGroup {
    digits: usize,
    /// The digits' values; none when a digit of another script is among them.
    values: Option<Vec<u8>>,
}

/// Whether some 12 or 10 consecutive digits of a group are a valid personnummer or
/// samordningsnummer (ten digits with any century).
fn holds_valid_identity_number(d: &[u8]) -> bool {
    // The check digit covers the last ten digits only, so it is tested first and once per
    // window: a group of 64 KiB of digits is read without an allocation per window.
    let checks = |w: &[u8]| luhn_check_digit(&w[..9]) == w[9];
    let valid = |century: &[u8], rest: &[u8]| {
        let mut full = [0u8; 12];
        full[..2].copy_from_slice(century);
        full[2..].copy_from_slice(rest);
        Personnummer::from_digits(full).is_ok()
    };
    let twelve = d
        .windows(12)
        .any(|w| checks(&w[2..]) && valid(&w[..2], &w[2..]));
    let ten = d
        .windows(10)
        .any(|w| checks(w) && [[1, 8], [1, 9], [2, 0]].iter().any(|c| valid(c, w)));
    twelve || ten
}

/// Whether a digit group might hold a personnummer or samordningsnummer: any group other than
/// 10 or 12 digits might embed one; those two sizes must have a plausible month and day.
fn could_be_identity_number(d: &[u8]) -> bool {
    let date_at = |i: usize| {
        let month = d[i] * 10 + d[i + 1];
        let day = d[i + 2] * 10 + d[i + 3];
        (1..=12).contains(&month) && ((1..=31).contains(&day) || (61..=91).contains(&day))
    };
    match d.len() {
        10 => date_at(2),
        12 => date_at(4),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window search without allocations finds what parsing every window as text finds.
    #[test]
    fn the_window_search_agrees_with_parsing_each_window() {
        let by_parsing = |d: &[u8]| {
            let text: String = d.iter().map(|v| char::from(b'0' + v)).collect();
            let valid = |w: &str| Personnummer::parse(w).is_ok();
            let twelve = (0..=text.len().saturating_sub(12))
                .any(|k| text.len() >= k + 12 && valid(&text[k..k + 12]));
            let ten = (0..=text.len().saturating_sub(10)).any(|k| {
                text.len() >= k + 10
                    && ["18", "19", "20"]
                        .iter()
                        .any(|c| valid(&format!("{c}{}", &text[k..k + 10])))
            });
            twelve || ten
        };
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let (mut found, mut tried) = (0, 0);
        for len in 0..40 {
            for _ in 0..300 {
                let d: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        (state % 10) as u8
                    })
                    .collect();
                let expected = by_parsing(&d);
                assert_eq!(holds_valid_identity_number(&d), expected, "{d:?}");
                found += usize::from(expected);
                tried += 1;
            }
        }
        // Both answers occur often enough for the comparison to mean something.
        assert!(found > 500 && tried - found > 500, "{found} of {tried}");
    }

    #[test]
    fn long_digit_runs_are_masked() {
        assert_eq!(redact_digit_runs("x198507099805y"), "x************y");
        assert_eq!(
            redact_digit_runs("at most 500 characters"),
            "at most 500 characters"
        );
        assert_eq!(redact_digit_runs("8507099805"), "**********");
        assert_eq!(redact_digit_runs("x850709-9805."), "x******-****.");
        assert_eq!(redact_digit_runs("orgnr 212000-2411"), "orgnr 212000-2411");
        assert_eq!(redact_digit_runs("p19850709_9805"), "p********_****");
        assert_eq!(redact_digit_runs("19850709.9805"), "********.****");
        assert_eq!(
            redact_digit_runs("１９８５０７０９９８０５"),
            "************"
        );
        assert_eq!(redact_digit_runs("162120000142"), "162120000142");
        assert_eq!(redact_digit_runs("x1985070998051"), "x*************");
        assert_eq!(redact_digit_runs("19850709+9805"), "********+****");
        assert_eq!(
            redact_digit_runs("on 2026-11-25, line 3"),
            "on 2026-11-25, line 3"
        );
        // Spaced and padded spellings are one number too.
        for spaced in [
            "19850709 - 9805",
            "19850709--9805",
            "850709 – 9805",
            "19850709\u{200b}\u{200b}9805",
            "1985 07 09 - 9805",
            "DSO-19850709..9805",
        ] {
            assert!(embeds_identity_number(spaced), "{spaced}");
        }
        // Five separators apart, two numbers are two numbers.
        assert!(!embeds_identity_number("19850709 -  - 9805"));
    }

    #[test]
    fn a_masked_text_embeds_no_identity_number() {
        // The ten digits 8507099805 at the start of a 12-digit group whose own date is not
        // one (month 09, day 98).
        let tricky = "a8507099-8051-2a00-8000-000000000000";
        assert!(embeds_identity_number(tricky));
        assert_eq!(
            mask_identity_numbers(tricky),
            "a*******-****-*a00-8000-000000000000"
        );
        assert!(!redact_digit_runs(tricky).contains("8507099"));
        // Many UUIDs: what is kept never holds a valid number, and most are kept whole.
        let mut whole = 0;
        for _ in 0..20_000 {
            let id = uuid::Uuid::new_v4().to_string();
            let kept = mask_identity_numbers(&id);
            assert!(!embeds_identity_number(&kept), "{kept}");
            assert!(!embeds_identity_number(&redact_digit_runs(&id)));
            whole += usize::from(kept == id);
        }
        assert!(whole > 19_900, "{whole} of 20 000 kept whole");
    }

    #[test]
    fn only_valid_identity_numbers_count_as_embedded() {
        // A UUID whose digits spell one, across a hyphen, in 12 or 10 digits.
        assert!(embeds_identity_number(
            "19850709-9805-4000-8000-00000000000a"
        ));
        assert!(embeds_identity_number(
            "a0850709-9805-4000-8000-00000000000a"
        ));
        assert!(embeds_identity_number("x197010632391")); // samordningsnummer
        // Long digit runs that hold none stay readable.
        assert!(!embeds_identity_number(
            "c12ee39e-e123-4567-8901-234567890b05"
        ));
        assert!(!embeds_identity_number(
            "19850709-9806-4000-8000-00000000000a"
        ));
        assert!(!embeds_identity_number("orgnr 212000-0142, 2026-11-25"));
        assert!(embeds_identity_number("１９８５０７０９９８０５"));
    }

    #[test]
    fn personnummer_from_the_facts_passes() {
        let p = Personnummer::parse("200012193421").unwrap();
        assert_eq!(p.kind(), IdentityKind::Personnummer);
        assert_eq!(p.expose(), "200012193421");
    }

    #[test]
    fn samordningsnummer_is_day_plus_sixty() {
        let p = Personnummer::parse("197010632391").unwrap();
        assert_eq!(p.kind(), IdentityKind::Samordningsnummer);
    }

    #[test]
    fn personnummer_rules() {
        assert_eq!(
            Personnummer::parse("200012193422"),
            Err(IdentError::CheckDigit)
        );
        assert_eq!(
            Personnummer::parse("20001219342"),
            Err(IdentError::Digits(12))
        );
        assert_eq!(
            Personnummer::parse("2000121934a1"),
            Err(IdentError::Digits(12))
        );
        assert_eq!(Personnummer::parse("200102303421"), Err(IdentError::Date));
        assert_eq!(Personnummer::parse("200113013421"), Err(IdentError::Date));
        assert_eq!(Personnummer::parse("200012003421"), Err(IdentError::Date));
        assert_eq!(
            Personnummer::parse("２０００１２１９３４２１"),
            Err(IdentError::Digits(12))
        );
    }

    #[test]
    fn personnummer_never_prints_itself() {
        let p = Personnummer::parse("200012193421").unwrap();
        assert!(!format!("{p:?}").contains("3421"));
    }

    #[test]
    fn organisationsnummer_forms() {
        let a = Organisationsnummer::parse("212000-0142").unwrap();
        assert_eq!(Organisationsnummer::parse("2120000142").unwrap(), a);
        assert_eq!(Organisationsnummer::parse("162120000142").unwrap(), a);
        assert_eq!(a.to_ssbtek(), "162120000142");
        assert_eq!(a.to_string(), "212000-0142");
        assert_eq!(
            Organisationsnummer::parse("2120000143"),
            Err(IdentError::CheckDigit)
        );
        assert_eq!(
            Organisationsnummer::parse("172120000142"),
            Err(IdentError::Prefix)
        );
        assert_eq!(
            Organisationsnummer::parse("5512000000"),
            Err(IdentError::NotOrganisation)
        );
        assert_eq!(
            Organisationsnummer::parse("5502000006"),
            Err(IdentError::NotOrganisation)
        );
    }

    #[test]
    fn kommunkod_and_hsa() {
        assert!(Kommunkod::parse("0180").is_ok());
        assert!(Kommunkod::parse("2281").is_ok());
        assert_eq!(Kommunkod::parse("0280"), Err(IdentError::County(2)));
        assert_eq!(Kommunkod::parse("2680"), Err(IdentError::County(26)));
        assert!(HsaId::parse("SE2321000016-4HK5").is_ok());
        assert!(HsaId::parse("SE2120000142-HL01").is_ok());
        assert_eq!(HsaId::parse("SE2120000142-"), Err(IdentError::HsaShape));
        assert_eq!(
            HsaId::parse("SE2120000142-ABCDEFGHIJKLMNOPQRS"),
            Err(IdentError::HsaShape)
        );
        assert_eq!(
            HsaId::parse("SE2120000143-HL01"),
            Err(IdentError::CheckDigit)
        );
    }

    #[test]
    fn dates() {
        assert_eq!(
            format_date(parse_date("2016-11-18+01:00").unwrap()),
            "2016-11-18"
        );
        assert!(parse_date("2016-11-18Z").is_ok());
        assert!(parse_date("2016-11-18").is_ok());
        assert_eq!(parse_date("2016-02-30"), Err(IdentError::Date));
        assert_eq!(parse_date("2016-11-18+1:00"), Err(IdentError::DateShape));
        assert_eq!(parse_date("20161118"), Err(IdentError::DateShape));
        assert_eq!(parse_date("2016-11-1é"), Err(IdentError::DateShape));
        assert_eq!(parse_date("0000-01-01"), Err(IdentError::Date));
        assert!(parse_date("2016-11-18+14:00").is_ok());
        assert_eq!(parse_date("2016-11-18+14:30"), Err(IdentError::DateShape));
    }
}
