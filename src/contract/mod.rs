//! The wire: the bounded XML reader, SOAP decode and encode, AF's JSON, translation between them,
//! validation.

pub mod af_json;
pub mod soap;
pub mod translate;
pub mod validate;
pub mod xml;
pub mod xml_syntax;
