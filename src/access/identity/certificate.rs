//! The organisation from a client certificate, and a certificate's RFC 8705 thumbprint.

use super::*;

/// OID of `organizationIdentifier` (ETSI EN 319 412-1), e.g. `NTRSE-2120000142`.
pub(super) const OID_ORGANIZATION_IDENTIFIER: &str = "2.5.4.97";
/// OID of `serialNumber`, where some Swedish organisation certificates put the orgnr.
pub(super) const OID_SERIAL_NUMBER: &str = "2.5.4.5";

/// The organisation number in a client certificate's subject: `organizationIdentifier`
/// (`NTRSE-NNNNNNNNNN`) or, failing that, `serialNumber` (10 or 12 digits).
pub fn orgnr_from_certificate(cert: &CertificateDer<'_>) -> Result<Organisationsnummer, String> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("client certificate cannot be parsed: {e}"))?;
    let subject = x509.subject();
    // Present but unreadable is an error, never a reason to fall back to another attribute.
    let value_of = |oid: &str, name: &str| {
        subject
            .iter_attributes()
            .find(|a| a.attr_type().to_id_string() == oid)
            .map(|a| {
                a.as_str()
                    .map(str::to_owned)
                    .map_err(|_| format!("{name} in the certificate is not a readable string"))
            })
            .transpose()
    };
    if let Some(v) = value_of(OID_ORGANIZATION_IDENTIFIER, "organizationIdentifier")? {
        let digits = v.strip_prefix("NTRSE-").unwrap_or(&v);
        return Organisationsnummer::parse(digits)
            .map_err(|e| format!("organizationIdentifier in the certificate: {e}"));
    }
    if let Some(v) = value_of(OID_SERIAL_NUMBER, "serialNumber")? {
        return Organisationsnummer::parse(&v)
            .map_err(|e| format!("serialNumber in the certificate: {e}"));
    }
    Err("the client certificate's subject has no organizationIdentifier or serialNumber".into())
}

/// The RFC 8705 thumbprint of a certificate: base64url(SHA-256(DER)), as in `cnf.x5t#S256`.
pub fn certificate_thumbprint(cert: &CertificateDer<'_>) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(cert.as_ref()))
}
