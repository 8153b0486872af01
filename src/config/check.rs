//! The checks on the file's values: each problem is collected with its key, so all are
//! reported at once; paths are taken relative to the file's directory.

use super::*;

pub(super) struct Checker {
    pub(super) dir: PathBuf,
    pub(super) problems: Vec<Problem>,
    /// Every certificate read, by the key it was configured under: for expiry warnings.
    pub(super) loaded: Vec<NamedCertificate>,
}

impl Checker {
    /// A configured rate with its quota, or the problem with it.
    pub(super) fn rate(&mut self, key: String, r: Rate) -> Option<Configured> {
        match r.quota() {
            Ok(quota) => Some(Configured { rate: r, quota }),
            Err(e) => {
                self.fail(key, e);
                None
            }
        }
    }

    pub(super) fn fail(&mut self, key: impl Into<String>, reason: impl fmt::Display) {
        self.problems.push(Problem {
            key: key.into(),
            reason: reason.to_string(),
        });
    }
    pub(super) fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.dir.join(p)
        }
    }
    pub(super) fn addr(&mut self, key: &str, s: &str) -> Option<SocketAddr> {
        s.parse()
            .map_err(|_| {
                self.fail(
                    key,
                    format!("'{s}' is not an address such as 127.0.0.1:8443"),
                )
            })
            .ok()
    }
    pub(super) fn certs(&mut self, key: &str, p: &Path) -> Option<Vec<CertificateDer<'static>>> {
        let p = self.path(p);
        let certs = tls::load_certs(&p).map_err(|e| self.fail(key, e)).ok()?;
        for (i, der) in certs.iter().enumerate() {
            self.loaded.push(NamedCertificate {
                name: if certs.len() == 1 {
                    key.to_owned()
                } else {
                    format!("{key}[{i}]")
                },
                der: der.clone(),
            });
        }
        Some(certs)
    }
    pub(super) fn key(&mut self, key: &str, p: &Path) -> Option<PrivateKeyDer<'static>> {
        let p = self.path(p);
        tls::load_key(&p).map_err(|e| self.fail(key, e)).ok()
    }
    /// CRL entries: files are read now (each CRL one WebPKI reads, signed by one of `cas`
    /// when they loaded), URLs checked (fetched once the gateway runs).
    pub(super) fn crl_sources(
        &mut self,
        key: &str,
        entries: &[String],
        cas: Option<&[CertificateDer<'static>]>,
    ) -> (
        crate::access::trust::CrlSources,
        Vec<crate::access::trust::NamedCrl>,
    ) {
        let sources = crate::access::trust::CrlSources::from_entries(key, entries, &self.dir);
        for (i, url) in &sources.urls {
            match reqwest::Url::parse(url) {
                Ok(u) if u.host().is_some() => {}
                _ => self.fail(format!("{key}[{i}]"), "not a URL with a host"),
            }
        }
        let mut crls = Vec::new();
        for (i, file) in &sources.files {
            match crate::access::crl::read_file(file, cas) {
                Ok(found) => {
                    crls.extend(found.into_iter().map(|der| crate::access::trust::NamedCrl {
                        name: format!("{key}[{i}]"),
                        der,
                    }))
                }
                Err(err) => self.fail(format!("{key}[{i}]"), err),
            }
        }
        (sources, crls)
    }

    /// One side of a TLS connection: brygga's certificate and key, and the CAs and CRLs that
    /// verify the other side (each named by its key), with the files they came from.
    pub(super) fn tls(
        &mut self,
        edge: &str,
        cert: (&str, &Path),
        key: (&str, &Path),
        ca: (&str, &Path),
        crls: (&str, &[String]),
    ) -> Option<(TlsMaterial, TlsFiles)> {
        let chain = self.certs(cert.0, cert.1);
        let private = self.key(key.0, key.1);
        let roots = self.certs(ca.0, ca.1);
        let (sources, loaded) = self.crl_sources(crls.0, crls.1, roots.as_deref());
        let files = TlsFiles {
            identity: IdentityFiles {
                cert: self.path(cert.1),
                key: self.path(key.1),
            },
            trust: crate::access::trust::EdgeFiles {
                name: edge.to_owned(),
                ca: self.path(ca.1),
                crls: sources,
            },
        };
        Some((
            TlsMaterial {
                identity: CertAndKey {
                    chain: chain?,
                    key: private?,
                },
                roots: roots?,
                crls: loaded,
            },
            files,
        ))
    }

    pub(super) fn https(&mut self, key: &str, s: &str) {
        match reqwest::Url::parse(s) {
            Ok(u) if u.scheme() == "https" && u.host().is_some() => {}
            Ok(_) => self.fail(key, "must be an https:// URL with a host"),
            Err(e) => self.fail(key, format!("not a URL: {e}")),
        }
    }
    pub(super) fn positive(&mut self, key: &str, d: Duration) {
        if d.is_zero() {
            self.fail(key, "must be longer than zero");
        }
    }
}

/// The pseudonym keys of `[[pseudonyms]]`; problems go to `c`.
pub(super) fn pseudonym_keys(
    c: &mut Checker,
    entries: &[PseudonymKeyFile],
) -> crate::access::pseudo::Pseudonymizer {
    let mut pseudonyms = crate::access::pseudo::Pseudonymizer::default();
    for (i, k) in entries.iter().enumerate() {
        let key = format!("pseudonyms[{i}]");
        let file = k.file.as_ref().map(|p| c.path(p));
        match crate::access::pseudo::read_key(file.as_deref(), k.env.as_deref()) {
            Ok(bytes) => {
                if let Err(e) = pseudonyms.add_key(&k.domain, &k.id, &bytes) {
                    c.fail(&key, e);
                }
            }
            Err(e) => c.fail(&key, e),
        }
    }
    for domain in ["audit", "subscriptions"] {
        if !pseudonyms.has_domain(domain) && !entries.iter().any(|k| k.domain == domain) {
            c.fail(
                "pseudonyms",
                format!("a key for the domain '{domain}' is required"),
            );
        }
    }
    pseudonyms
}
