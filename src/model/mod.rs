//! The domain model: identifiers (parsed once, always valid) and the messages of interface v1.

pub mod ident;
pub mod lexical;
pub mod msg;

pub use ident::{HsaId, IdentError, Kommunkod, Organisationsnummer, Personnummer};
pub use msg::*;
