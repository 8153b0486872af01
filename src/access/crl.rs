//! What brygga takes as a CRL, from a file, a URL or a distribution point alike: one that
//! WebPKI — the parser rustls's verifiers use — reads whole (version 2, with a next update,
//! nothing after its end), not issued in the future, signed by a CA the edge trusts, and not
//! older than the CRL of its issuer already in use on the edge. Anything else is refused where
//! it comes in, with the reason: a CRL WebPKI cannot read would otherwise fail the whole edge
//! when its verifier is built, and one from the future or the past would hide revocations.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::x509::X509Version;

use crate::access::trust::NamedCrl;

/// How far ahead of brygga's clock a CRL's thisUpdate may lie (clocks differ a little).
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// When a CRL says it was issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: i64,
    /// The CRL number (big-endian, no leading zeros), when it has one.
    pub number: Option<Vec<u8>>,
}

impl Issued {
    /// Whether this CRL came before `other` of the same issuer: an earlier thisUpdate, or the
    /// same one and a smaller CRL number.
    pub fn older_than(&self, other: &Issued) -> bool {
        if self.this_update != other.this_update {
            return self.this_update < other.this_update;
        }
        match (&self.number, &other.number) {
            (Some(a), Some(b)) => (a.len(), a) < (b.len(), b),
            _ => false,
        }
    }
}

/// A CRL read as WebPKI reads it.
#[derive(Debug, Clone)]
pub struct Crl {
    pub der: CertificateRevocationListDer<'static>,
    /// The raw DER of its issuer's name.
    pub issuer: Vec<u8>,
    /// Its issuer as people read it.
    pub issuer_name: String,
    pub issued: Issued,
}

/// Reads `der` as WebPKI will, refusing what it cannot use and a CRL issued more than
/// [`MAX_CLOCK_SKEW_SECS`] after `now` (Unix seconds).
pub fn read(der: CertificateRevocationListDer<'static>, now: i64) -> Result<Crl, String> {
    let (rest, crl) =
        x509_parser::parse_x509_crl(der.as_ref()).map_err(|e| format!("not a CRL: {e}"))?;
    if !rest.is_empty() {
        return Err(format!(
            "{} byte(s) after the end of the CRL (the body must be the DER of one CRL and nothing else)",
            rest.len()
        ));
    }
    if crl.version() != Some(X509Version::V2) {
        return Err("a version 1 CRL: WebPKI reads version 2 only".into());
    }
    let Some(next_update) = crl.next_update() else {
        return Err(
            "no nextUpdate: WebPKI needs one to tell when the CRL is no longer current".into(),
        );
    };
    if crl.extensions().is_empty() {
        return Err(
            "no CRL extensions: WebPKI wants them (RFC 5280 asks at least for the CRL number)"
                .into(),
        );
    }
    // What x509-parser lets pass, WebPKI may not: its word is the one that counts.
    webpki::BorrowedCertRevocationList::from_der(der.as_ref())
        .map_err(|e| format!("WebPKI cannot read it ({e})"))?;
    let this_update = crl.last_update().timestamp();
    if this_update > now + MAX_CLOCK_SKEW_SECS {
        return Err(format!(
            "issued in the future (thisUpdate {}, {} s ahead of this clock): a CA clock running ahead would hide every CRL issued after it until then",
            crl.last_update(),
            this_update - now
        ));
    }
    let issued = Issued {
        this_update,
        next_update: next_update.timestamp(),
        number: crl.crl_number().map(|n| n.to_bytes_be()),
    };
    Ok(Crl {
        issuer: crl.issuer().as_raw().to_vec(),
        issuer_name: crl.issuer().to_string(),
        issued,
        der: der.clone(),
    })
}

/// The current time, Unix seconds.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Checks that one of `signers` (an edge's CAs, and intermediates verified up to them)
/// signed `crl` and may sign CRLs.
pub fn verify_signed_by(crl: &Crl, signers: &[CertificateDer<'_>]) -> Result<(), String> {
    let (_, parsed) =
        x509_parser::parse_x509_crl(crl.der.as_ref()).map_err(|e| format!("not a CRL: {e}"))?;
    let mut named = false;
    for signer in signers {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(signer.as_ref()) else {
            continue;
        };
        if cert.subject().as_raw() != crl.issuer.as_slice() {
            continue;
        }
        named = true;
        // A CA whose key usage is stated must list cRLSign (WebPKI asks the same).
        let may_sign = match cert.key_usage() {
            Ok(Some(ku)) => ku.value.crl_sign(),
            Ok(None) => true,
            Err(_) => false,
        };
        if may_sign && parsed.verify_signature(cert.public_key()).is_ok() {
            return Ok(());
        }
    }
    Err(if named {
        "its signature does not verify with its CA's key (or that CA may not sign CRLs)".into()
    } else {
        format!("its issuer ({}) is not a CA of this edge", crl.issuer_name)
    })
}

/// Reads and checks one CRL of an edge whose CAs are `signers`.
pub fn check(
    der: CertificateRevocationListDer<'static>,
    signers: &[CertificateDer<'_>],
) -> Result<Crl, String> {
    let crl = read(der, now_secs())?;
    verify_signed_by(&crl, signers)?;
    Ok(crl)
}

/// The CRLs in a PEM file, each read, and signed by one of `signers` when the edge's CAs
/// are known (`None`: they failed to load, which is reported on its own).
pub fn read_file(
    path: &Path,
    signers: Option<&[CertificateDer<'_>]>,
) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let ders = crate::access::tls::load_crls(path).map_err(|e| e.to_string())?;
    let many = ders.len() > 1;
    ders.into_iter()
        .enumerate()
        .map(|(n, der)| {
            let crl = read(der, now_secs()).and_then(|crl| {
                if let Some(signers) = signers {
                    verify_signed_by(&crl, signers)?;
                }
                Ok(crl.der)
            });
            crl.map_err(|e| match many {
                true => format!("{}: CRL {} in the file: {e}", path.display(), n + 1),
                false => format!("{}: {e}", path.display()),
            })
        })
        .collect()
}

/// The newest CRL of each issuer each edge has taken while brygga runs. An older one never
/// takes its place (a file put back, a stale copy served elsewhere): the newer stays, and
/// the edge says why.
#[derive(Debug, Default)]
pub struct History {
    /// By edge and issuer (raw name): the CRL in use and when it was issued.
    newest: Mutex<HashMap<EdgeIssuer, (NamedCrl, Issued)>>,
}

/// An edge's name and a CRL issuer's raw name.
type EdgeIssuer = (String, Vec<u8>);

impl History {
    /// Of `crls` (at most one per issuer) for `edge`: each, or where it is older than the CRL
    /// of its issuer in use before, that one, with the problem. The rest become the newest.
    pub fn settle(&self, edge: &str, crls: Vec<NamedCrl>) -> (Vec<NamedCrl>, Vec<String>) {
        let mut newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(crls.len());
        let mut problems = Vec::new();
        for named in crls {
            // Every CRL here was read once already; one that was not (a test's) is left to WebPKI.
            let Ok(crl) = read(named.der.clone(), i64::MAX - MAX_CLOCK_SKEW_SECS) else {
                out.push(named);
                continue;
            };
            let key = (edge.to_owned(), crl.issuer.clone());
            match newest.get(&key) {
                Some((in_use, was)) if crl.issued.older_than(was) => {
                    problems.push(format!(
                        "{edge}: the CRL of {} from {} (thisUpdate {}) is older than the one in use (thisUpdate {}, from {}); the one in use stays",
                        crl.issuer_name,
                        named.name,
                        when(crl.issued.this_update),
                        when(was.this_update),
                        in_use.name
                    ));
                    out.push(in_use.clone());
                }
                _ => {
                    newest.insert(key, (named.clone(), crl.issued));
                    out.push(named);
                }
            }
        }
        (out, problems)
    }
}

/// A Unix time as people read it.
fn when(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certs() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-example")
    }

    fn example(ca: &str) -> CertificateRevocationListDer<'static> {
        crate::access::tls::load_crls(&certs().join(format!("{ca}.crl.pem"))).unwrap()[0].clone()
    }

    fn ca(name: &str) -> Vec<CertificateDer<'static>> {
        crate::access::tls::load_certs(&certs().join(format!("{name}.pem"))).unwrap()
    }

    /// DER: one tag, its length, its content.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    /// A CRL by the example kommun CA, hand-made: with or without a version, a nextUpdate and
    /// extensions (a CRL number).
    fn hand_made(
        version: bool,
        next_update: bool,
        extensions: bool,
    ) -> CertificateRevocationListDer<'static> {
        use rcgen::SigningKey;
        let dir = certs();
        let key =
            rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("kommun-ca.key")).unwrap())
                .unwrap();
        let ca = ca("kommun-ca");
        let (_, cert) = x509_parser::parse_x509_certificate(ca[0].as_ref()).unwrap();
        // ecdsa-with-SHA256
        let alg = tlv(
            0x30,
            &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
        );
        let mut tbs = Vec::new();
        if version {
            tbs.extend(tlv(0x02, &[1]));
        }
        tbs.extend(&alg);
        tbs.extend(cert.subject().as_raw());
        tbs.extend(tlv(0x17, b"260101000000Z"));
        if next_update {
            tbs.extend(tlv(0x17, b"360101000000Z"));
        }
        if extensions {
            let mut number = tlv(0x06, &[0x55, 0x1d, 0x14]);
            number.extend(tlv(0x04, &tlv(0x02, &[1])));
            tbs.extend(tlv(0xa0, &tlv(0x30, &tlv(0x30, &number))));
        }
        let tbs = tlv(0x30, &tbs);
        let mut signature = vec![0];
        signature.extend(key.sign(&tbs).unwrap());
        let mut body = tbs;
        body.extend(&alg);
        body.extend(tlv(0x03, &signature));
        CertificateRevocationListDer::from(tlv(0x30, &body))
    }

    #[test]
    fn webpki_decides_what_a_crl_is() {
        let kommun = ca("kommun-ca");
        assert!(check(example("kommun-ca"), &kommun).is_ok());
        let made = check(hand_made(true, true, true), &kommun);
        assert!(made.is_ok(), "{made:?}");
        let mut trailing = example("kommun-ca").as_ref().to_vec();
        trailing.push(b'\n');
        let err = check(trailing.into(), &kommun).unwrap_err();
        assert!(err.contains("1 byte(s) after the end"), "{err}");
        let err = check(hand_made(false, true, true), &kommun).unwrap_err();
        assert!(err.contains("version 1"), "{err}");
        let err = check(hand_made(true, false, true), &kommun).unwrap_err();
        assert!(err.contains("no nextUpdate"), "{err}");
        let err = check(hand_made(true, true, false), &kommun).unwrap_err();
        assert!(err.contains("no CRL extensions"), "{err}");
        assert!(check(b"garbage".to_vec().into(), &kommun).is_err());
    }

    #[test]
    fn a_crl_must_be_signed_by_a_ca_of_the_edge_that_may_sign_crls() {
        let err = check(example("af-ca"), &ca("kommun-ca")).unwrap_err();
        assert!(err.contains("is not a CA of this edge"), "{err}");
        let mut forged = example("kommun-ca").as_ref().to_vec();
        let at = forged.len() / 2;
        forged[at] ^= 1;
        assert!(check(forged.into(), &ca("kommun-ca")).is_err());
    }

    #[test]
    fn a_crl_from_the_future_is_refused_within_the_skew_it_is_not() {
        let crl = example("kommun-ca");
        let this_update = read(crl.clone(), i64::MAX / 2).unwrap().issued.this_update;
        let err = read(crl.clone(), this_update - MAX_CLOCK_SKEW_SECS - 60).unwrap_err();
        assert!(err.contains("issued in the future"), "{err}");
        assert!(read(crl, this_update - MAX_CLOCK_SKEW_SECS + 60).is_ok());
    }

    #[test]
    fn an_older_crl_never_replaces_a_newer_one_of_its_issuer() {
        let older = Issued {
            this_update: 10,
            next_update: 100,
            number: Some(vec![5]),
        };
        let newer_number = Issued {
            number: Some(vec![1, 0]),
            ..older.clone()
        };
        assert!(older.older_than(&newer_number));
        assert!(!newer_number.older_than(&older));
        assert!(older.older_than(&Issued {
            this_update: 11,
            number: None,
            ..older.clone()
        }));
        assert!(!older.older_than(&older));

        let history = History::default();
        let named = |name: &str, der: CertificateRevocationListDer<'static>| NamedCrl {
            name: name.into(),
            der,
        };
        let dir = tempfile::tempdir().unwrap();
        let newer_file = dir.path().join("new.crl.pem");
        crate::devkit::certs::write_crl(
            &certs().join("kommun-ca.pem"),
            &certs().join("kommun-ca.key"),
            &[],
            &newer_file,
            30,
        )
        .unwrap();
        let newer = crate::access::tls::load_crls(&newer_file).unwrap()[0].clone();
        let (kept, problems) = history.settle("kommun", vec![named("a", example("kommun-ca"))]);
        assert_eq!((kept.len(), problems.len()), (1, 0));
        let (kept, problems) = history.settle("kommun", vec![named("b", newer.clone())]);
        assert_eq!((kept[0].name.as_str(), problems.len()), ("b", 0));
        let (kept, problems) = history.settle("kommun", vec![named("a", example("kommun-ca"))]);
        assert_eq!(kept[0].der, newer);
        assert!(
            problems[0].contains("older than the one in use"),
            "{problems:?}"
        );
        // Another edge has its own history.
        let (kept, problems) = history.settle("af", vec![named("a", example("kommun-ca"))]);
        assert_eq!((kept[0].name.as_str(), problems.len()), ("a", 0));
    }
}
