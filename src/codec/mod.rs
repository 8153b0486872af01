//! Encodings: SOAP 1.1 XML towards the municipalities, JSON towards AF.

pub mod af_json;
pub mod soap;
pub mod xml;
pub mod xml_syntax;
