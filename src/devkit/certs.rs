//! A development PKI, as committed in `certs-example/`: two CAs, server and client certificates,
//! and an ES256 identity-provider key per municipality with its JWKS. Keys written here are
//! for development only.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use time::{Duration, OffsetDateTime};

/// The example municipalities: kommunkod, name, organisation number.
pub const EXAMPLE_MUNICIPALITIES: [(&str, &str, &str); 2] = [
    ("0180", "Stockholms stad", "2120000142"),
    ("1480", "Göteborgs stad", "2120001355"),
];

/// Arbetsförmedlingen's organisation number, put in the example AF client certificate.
pub const AF_ORGNR: &str = "2021002114";

/// How long `generate` makes server certificates valid unless told otherwise. Mozilla's
/// intermediate TLS profile, as sslyze checks it, wants a server certificate's lifespan to be at
/// most 366 days (the CA/Browser Forum's older limit of 398 is too long for it); CAs and client
/// certificates are not checked by it and keep the longer validity.
pub const SERVER_CERT_DAYS: i64 = 365;

/// OID 2.5.4.97, organizationIdentifier.
const ORGANIZATION_IDENTIFIER: [u64; 4] = [2, 5, 4, 97];

struct Ca {
    params: CertificateParams,
    key: KeyPair,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn dn(cn: &str, o: &str, orgnr: Option<&str>) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CountryName, "SE");
    d.push(DnType::OrganizationName, o);
    d.push(DnType::CommonName, cn);
    if let Some(n) = orgnr {
        d.push(
            DnType::CustomDnType(ORGANIZATION_IDENTIFIER.to_vec()),
            format!("NTRSE-{n}"),
        );
    }
    d
}

fn validity(p: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(days);
}

fn write(dir: &Path, name: &str, content: &str) -> Result<(), String> {
    std::fs::write(dir.join(name), content)
        .map_err(|e| format!("{}: {e}", dir.join(name).display()))
}

fn new_ca(dir: &Path, file: &str, cn: &str, days: i64) -> Result<Ca, String> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn, "brygga exempel-PKI", None);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, days);
    let cert = params.self_signed(&key).map_err(err)?;
    write(dir, &format!("{file}.pem"), &cert.pem())?;
    write(dir, &format!("{file}.key"), &key.serialize_pem())?;
    Ok(Ca { params, key })
}

enum Role {
    Server,
    Client,
}

fn leaf(
    dir: &Path,
    file: &str,
    ca: &Ca,
    role: Role,
    subject: DistinguishedName,
    days: i64,
) -> Result<(), String> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    match role {
        Role::Server => {
            params.subject_alt_names = vec![
                SanType::DnsName("localhost".try_into().map_err(err)?),
                SanType::IpAddress([127, 0, 0, 1].into()),
                SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
            ];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        }
        Role::Client => params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth],
    }
    validity(&mut params, days);
    let issuer = Issuer::from_params(&ca.params, &ca.key);
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    write(dir, &format!("{file}.pem"), &cert.pem())?;
    write(dir, &format!("{file}.key"), &key.serialize_pem())?;
    Ok(())
}

/// Writes a CRL signed by the CA in `ca_cert`/`ca_key` (PEM) that revokes `revoked`, valid
/// for `days`.
pub fn write_crl(
    ca_cert: &Path,
    ca_key: &Path,
    revoked: &[rustls_pki_types::CertificateDer<'_>],
    out: &Path,
    days: i64,
) -> Result<(), String> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let key =
        KeyPair::from_pem(&read(ca_key)?).map_err(|e| format!("{}: {e}", ca_key.display()))?;
    let issuer = Issuer::from_ca_cert_pem(&read(ca_cert)?, &key)
        .map_err(|e| format!("{}: {e}", ca_cert.display()))?;
    let now = OffsetDateTime::now_utc();
    let mut revoked_certs = Vec::new();
    for cert in revoked {
        let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(err)?;
        revoked_certs.push(rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(x509.raw_serial()),
            revocation_time: now - Duration::minutes(1),
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        });
    }
    let params = rcgen::CertificateRevocationListParams {
        this_update: now - Duration::hours(1),
        next_update: now + Duration::days(days),
        crl_number: rcgen::SerialNumber::from(now.unix_timestamp().unsigned_abs()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&issuer).map_err(err)?;
    std::fs::write(out, crl.pem().map_err(err)?).map_err(|e| format!("{}: {e}", out.display()))
}

/// Writes the whole development PKI into `dir` (created if missing): CAs, client certificates
/// and CRLs valid for `days`, server certificates for at most [`SERVER_CERT_DAYS`].
pub fn generate(dir: &Path, days: i64) -> Result<Vec<String>, String> {
    generate_with(dir, days, SERVER_CERT_DAYS)
}

/// The same, with server certificates valid for `server_days` (never longer than `days`, the
/// CAs' validity).
pub fn generate_with(dir: &Path, days: i64, server_days: i64) -> Result<Vec<String>, String> {
    let server_days = server_days.min(days);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let kommun_ca = new_ca(dir, "kommun-ca", "brygga exempel-CA för kommuner", days)?;
    let af_ca = new_ca(
        dir,
        "af-ca",
        "brygga exempel-CA för Arbetsförmedlingen",
        days,
    )?;
    let brygga = |cn: &str| dn(cn, "brygga (exempel)", None);
    leaf(
        dir,
        "gateway-kommun",
        &kommun_ca,
        Role::Server,
        brygga("brygga kommun-lyssnare"),
        server_days,
    )?;
    leaf(
        dir,
        "gateway-af",
        &af_ca,
        Role::Server,
        brygga("brygga af-lyssnare"),
        server_days,
    )?;
    leaf(
        dir,
        "gateway-to-af",
        &af_ca,
        Role::Client,
        brygga("brygga klient mot AF"),
        days,
    )?;
    leaf(
        dir,
        "gateway-to-kommun",
        &kommun_ca,
        Role::Client,
        brygga("brygga leverans till ärendesystem"),
        days,
    )?;
    leaf(
        dir,
        "kommun-sim",
        &kommun_ca,
        Role::Server,
        dn("Ärendesystem-simulator", "brygga (exempel)", None),
        server_days,
    )?;
    let af = |cn: &str| dn(cn, "Arbetsförmedlingen (exempel)", Some(AF_ORGNR));
    leaf(
        dir,
        "af-sim",
        &af_ca,
        Role::Server,
        af("AF-simulator"),
        server_days,
    )?;
    leaf(
        dir,
        "af-client",
        &af_ca,
        Role::Client,
        af("AF händelseavsändare"),
        days,
    )?;
    for (kod, name, orgnr) in EXAMPLE_MUNICIPALITIES {
        let subject = dn(&format!("{name} ekonomiskt bistånd"), name, Some(orgnr));
        leaf(
            dir,
            &format!("klient-{kod}"),
            &kommun_ca,
            Role::Client,
            subject,
            days,
        )?;
        let idp = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
        write(dir, &format!("idp-{kod}.key"), &idp.serialize_pem())?;
        let (_, jwks) = crate::access::identity::es256_jwks(idp.public_key_raw())?;
        let text = serde_json::to_string_pretty(&jwks).map_err(err)?;
        write(dir, &format!("idp-{kod}.jwks.json"), &(text + "\n"))?;
    }
    // Example pseudonym keys: 32 random bytes each, as hex.
    for domain in ["audit", "subscriptions"] {
        let mut key = [0u8; 32];
        crate::access::tls::provider()
            .secure_random
            .fill(&mut key)
            .map_err(|_| "no random numbers from the crypto provider".to_owned())?;
        write(
            dir,
            &format!("pseudonym-{domain}.key"),
            &format!("{}\n", hex::encode(key)),
        )?;
    }
    // The gateway's Ed25519 key for audit checkpoints, and its public half for verifiers.
    let audit = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(err)?;
    write(dir, "audit-signing.key", &audit.serialize_pem())?;
    write(dir, "audit-signing.pub.pem", &audit.public_key_pem())?;
    for ca in ["kommun-ca", "af-ca"] {
        let pem = |ext: &str| dir.join(format!("{ca}.{ext}"));
        write_crl(&pem("pem"), &pem("key"), &[], &pem("crl.pem"), days)?;
    }
    write(dir, "README.md", README)?;
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map_err(err)?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    files.sort();
    Ok(files)
}

const README: &str = "# certs-example: a development PKI — PUBLIC KEYS, NEVER FOR PRODUCTION

Every private key in this directory is published on purpose, so that `brygga demo`, the tests
and any integrator can talk to a local brygga without setting anything up. Anyone can read
them; a certificate or token made with them proves nothing. Never trust these CAs outside a
development machine.

Recreate them all (new keys; CAs, client certificates and CRLs valid for ten years) with:

    cargo run --release -- certs generate --out certs-example --server-days 3650

Without `--server-days`, server certificates are valid for 365 days, as Mozilla's intermediate
TLS profile asks. The committed ones are made for ten years so that the repository's tests keep
passing for years; that lifespan is the one finding the TLS scan of the example PKI allows
(`tls_scan::sslyze_finds_the_example_pki_compliant_but_for_its_lifespan`).

| file | what it is |
|---|---|
| `kommun-ca.pem` / `.key` | CA for municipal case systems; it also signs the gateway's `kommun` server certificate, so a case system trusts this one CA |
| `af-ca.pem` / `.key` | CA on AF's side: the AF simulator's server certificate, the gateway's client certificate towards AF, the gateway's `af` listener and AF's event-sender certificate |
| `gateway-kommun.pem` / `.key` | server certificate of the `kommun` listener (SAN localhost, 127.0.0.1, ::1) |
| `gateway-af.pem` / `.key` | server certificate of the `af` listener |
| `gateway-to-af.pem` / `.key` | the gateway's client certificate towards AF |
| `af-sim.pem` / `.key` | server certificate of the AF simulator |
| `gateway-to-kommun.pem` / `.key` | the gateway's client certificate when it delivers AF's events to a case system |
| `kommun-sim.pem` / `.key` | server certificate of the case-system simulator (`brygga sim kommun`) |
| `af-client.pem` / `.key` | AF's client certificate for pushing events (organizationIdentifier NTRSE-2021002114) |
| `klient-0180.pem` / `.key` | Stockholms stad's case system (organizationIdentifier NTRSE-2120000142, kommunkod 0180) |
| `klient-1480.pem` / `.key` | Göteborgs stad's case system (organizationIdentifier NTRSE-2120001355, kommunkod 1480) |
| `idp-0180.key`, `idp-0180.jwks.json` | ES256 signing key of Stockholm's identity provider and its public JWKS |
| `idp-1480.key`, `idp-1480.jwks.json` | the same for Göteborg |
| `audit-signing.key`, `audit-signing.pub.pem` | the gateway's Ed25519 key for signing audit checkpoints, and the public key a verifier needs |
| `pseudonym-audit.key`, `pseudonym-subscriptions.key` | example pseudonym keys (hex, 32 bytes) for the `audit` and `subscriptions` domains |
| `kommun-ca.crl.pem`, `af-ca.crl.pem` | each CA's (empty) certificate revocation list; `brygga certs crl --revoke CERT` writes one that revokes certificates |

The organisation number of a client is read from the certificate subject's
`organizationIdentifier` (OID 2.5.4.97, `NTRSE-` + ten digits), as in Swedish organisation
certificates following ETSI EN 319 412-1.
";
