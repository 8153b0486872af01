//! SOAP 1.1 (document/literal) encoding of interface v1: requests, answers and Faults.
//!
//! Decoding follows the XSD in `schemas/kommun/v1/`: elements in sequence, in the kommun
//! namespace; elements of *other* namespaces are tolerated at the end of a sequence (the
//! extension point) and dropped; text is whitespace-collapsed like `xs:token`.

use std::fmt::Write as _;

use time::Date;
use uuid::Uuid;

use super::xml::{self, Element, XmlError, XmlLimits, escape};
use crate::error::{Failure, Felkod};
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

mod answer;
mod event;
mod read;
mod request;
mod write;

pub use answer::*;
pub use event::*;
use read::*;
pub use request::*;
use write::*;

/// What the caller is told: the Felkod and the message of a SOAP Fault.
impl From<DecodeError> for Failure {
    fn from(e: DecodeError) -> Self {
        let felkod = match e.kind {
            DecodeKind::Malformed => Felkod::OgiltigXml,
            DecodeKind::TooDeep => Felkod::XmlForDjup,
            DecodeKind::TooManyElements => Felkod::XmlForMangaElement,
            DecodeKind::TextTooLong => Felkod::XmlForLangText,
            DecodeKind::AttributesTooLarge => Felkod::XmlForStoraAttribut,
            DecodeKind::Forbidden => Felkod::OtillatenXml,
            DecodeKind::NotSoap => Felkod::InteSoap,
            DecodeKind::UnknownOperation => Felkod::OkandOperation,
            DecodeKind::Missing => Felkod::FaltSaknas,
            DecodeKind::Invalid => Felkod::OgiltigtFalt,
            DecodeKind::Unexpected => Felkod::OvantatElement,
            DecodeKind::MustUnderstand => Felkod::OforstaddHeader,
        };
        Failure {
            felkod,
            message: e.to_string(),
            field: e.path,
            retry_after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str =
        include_str!("../../../schemas/kommun/v1/examples/HamtaArbetssokandeStatus.request.xml");

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
