//! Who may ask what: TLS and trust edges with their CRLs, identity (certificate, JWT, JWKS),
//! policy, pseudonyms, limits.

pub mod crl;
pub mod crl_fetch;
pub mod identity;
pub mod limit;
pub mod policy;
pub mod pseudo;
pub mod tls;
pub mod trust;
