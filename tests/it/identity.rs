//! Who may call: client certificates refused at the handshake, and every kind of bad token.

use std::time::Duration;

use brygga::access::identity::{TokenClaims, mint_token};
use brygga::config::CertAndKey;
use brygga::devkit::client::KommunClient;
use brygga::devkit::sim_af;
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::harness::{self, certs, fault};

/// A client certificate for `orgnr`, signed by `issuer` (or self-signed as its own CA).
fn client_cert(orgnr: &str, issuer: Option<(&str, &KeyPair)>) -> CertAndKey {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, "test client");
    p.distinguished_name.push(
        DnType::CustomDnType(vec![2, 5, 4, 97]),
        format!("NTRSE-{orgnr}"),
    );
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = match issuer {
        Some((ca_pem, ca_key)) => {
            let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key).unwrap();
            p.signed_by(&key, &issuer).unwrap()
        }
        None => {
            // A rogue CA nobody configured, and a certificate from it.
            let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
            let mut ca = CertificateParams::default();
            ca.distinguished_name.push(DnType::CommonName, "rogue CA");
            ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let issuer = Issuer::new(ca, &ca_key);
            p.signed_by(&key, &issuer).unwrap()
        }
    };
    CertAndKey {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
    }
}

fn kommun_ca() -> Vec<CertificateDer<'static>> {
    brygga::access::tls::load_certs(&certs().join("kommun-ca.pem")).unwrap()
}

#[tokio::test]
async fn no_client_certificate_is_refused_at_the_handshake() {
    let s = harness::start().await;
    let anonymous = KommunClient::with_identity(&s.url, &kommun_ca(), None).unwrap();
    let err = anonymous
        .post_raw(Some(&s.st_token()), s.st_xml(sim_af::REGISTRERAD))
        .await
        .unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert_eq!(s.af_data_requests(), 0);
    s.stop().await;
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused_at_the_handshake() {
    let s = harness::start().await;
    let rogue =
        KommunClient::with_identity(&s.url, &kommun_ca(), Some(client_cert("2120000142", None)))
            .unwrap();
    let err = rogue
        .post_raw(Some(&s.st_token()), s.st_xml(sim_af::REGISTRERAD))
        .await
        .unwrap_err();
    assert!(err.contains("UnknownCA"), "{err}");
    assert_eq!(s.af_data_requests(), 0);
    s.stop().await;
}

#[tokio::test]
async fn an_organisation_that_is_not_a_client_is_refused() {
    let s = harness::start().await;
    let ca_pem = std::fs::read_to_string(certs().join("kommun-ca.pem")).unwrap();
    let ca_key =
        KeyPair::from_pem(&std::fs::read_to_string(certs().join("kommun-ca.key")).unwrap())
            .unwrap();
    // Sundsvalls kommun: a valid organisation, but not configured.
    let sundsvall = KommunClient::with_identity(
        &s.url,
        &kommun_ca(),
        Some(client_cert("2120002411", Some((&ca_pem, &ca_key)))),
    )
    .unwrap();
    let a = sundsvall
        .post_raw(Some(&s.st_token()), s.st_xml(sim_af::REGISTRERAD))
        .await
        .unwrap();
    let f = fault(&a, 403, "KLIENT_OKAND");
    assert!(f.meddelande.contains("212000-2411"), "{}", f.meddelande);
    s.stop().await;
}

fn idp_key(kod: &str) -> Vec<u8> {
    std::fs::read(certs().join(format!("idp-{kod}.key"))).unwrap()
}

/// Sends a Stockholm request with the token `make` builds and expects the Fault, with no
/// request reaching AF and the token never echoed.
async fn refused_token(
    make: impl FnOnce(&harness::Stack, TokenClaims) -> Option<String>,
    http: u16,
    felkod: &str,
) {
    let s = harness::start().await;
    let base = s.st_idp.claims(
        &s.sthlm.handlaggare,
        "0180",
        "EKB-BESLUT",
        Duration::from_secs(300),
    );
    let token = make(&s, base);
    let a =
        s.st.post_raw(token.as_deref(), s.st_xml(sim_af::REGISTRERAD))
            .await
            .unwrap();
    let f = fault(&a, http, felkod);
    if http == 401 {
        assert!(a.headers.contains_key("www-authenticate"));
    }
    if let Some(t) = &token {
        assert!(
            !f.meddelande.contains(t.as_str()),
            "the token is never echoed"
        );
    }
    assert_eq!(s.af_data_requests(), 0, "no refused request reached AF");
    s.stop().await;
}

fn st_kid() -> String {
    let jwks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(certs().join("idp-0180.jwks.json")).unwrap())
            .unwrap();
    jwks["keys"][0]["kid"].as_str().unwrap().to_owned()
}

fn signed(
    s: &harness::Stack,
    mut c: TokenClaims,
    f: impl FnOnce(&mut TokenClaims),
) -> Option<String> {
    f(&mut c);
    Some(s.st_idp.sign(&c).unwrap())
}

#[tokio::test]
async fn no_token_is_refused() {
    refused_token(|_, _| None, 401, "TOKEN_SAKNAS").await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    refused_token(
        |s, c| {
            signed(s, c, |c| {
                c.exp = c.iat - 3600;
                c.iat -= 7200;
                c.nbf = c.iat;
            })
        },
        401,
        "TOKEN_UTGANGET",
    )
    .await;
}

#[tokio::test]
async fn a_token_with_nbf_in_the_future_is_refused() {
    refused_token(
        |s, c| signed(s, c, |c| c.nbf = c.iat + 3600),
        401,
        "TOKEN_EJ_GILTIGT_ANNU",
    )
    .await;
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    refused_token(
        |s, c| signed(s, c, |c| c.aud = "urn:some:other:service".into()),
        401,
        "TOKEN_FEL_MOTTAGARE",
    )
    .await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    refused_token(
        |s, c| signed(s, c, |c| c.iss = "https://idp.evil.example/".into()),
        401,
        "TOKEN_FEL_UTFARDARE",
    )
    .await;
}

#[tokio::test]
async fn a_token_signed_with_another_key_under_the_issuers_kid_is_refused() {
    refused_token(
        |_, c| Some(mint_token(&idp_key("1480"), Some(&st_kid()), &c).unwrap()),
        401,
        "TOKEN_FEL_SIGNATUR",
    )
    .await;
}

#[tokio::test]
async fn a_token_with_an_unknown_kid_is_refused() {
    refused_token(
        |_, c| Some(mint_token(&idp_key("0180"), Some("no-such-key"), &c).unwrap()),
        401,
        "TOKEN_OKAND_NYCKEL",
    )
    .await;
}

#[tokio::test]
async fn a_token_with_alg_none_is_refused() {
    use base64::Engine;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    refused_token(
        |_, c| {
            Some(format!(
                "{}.{}.",
                b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
                b64(&serde_json::to_value(&c).unwrap())
            ))
        },
        401,
        "TOKEN_OGILTIGT",
    )
    .await;
}

#[tokio::test]
async fn a_token_signed_hs256_with_the_issuers_public_key_is_refused() {
    refused_token(
        |_, c| {
            // The issuer's public key as an HMAC secret: the classic algorithm confusion.
            let public = std::fs::read(certs().join("idp-0180.jwks.json")).unwrap();
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            header.kid = Some(st_kid());
            Some(
                jsonwebtoken::encode(
                    &header,
                    &c,
                    &jsonwebtoken::EncodingKey::from_secret(&public),
                )
                .unwrap(),
            )
        },
        401,
        "TOKEN_FEL_ALGORITM",
    )
    .await;
}

#[tokio::test]
async fn a_token_whose_sub_is_not_an_hsa_id_is_refused() {
    refused_token(
        |s, c| signed(s, c, |c| c.sub = "kalle".into()),
        401,
        "TOKEN_SAKNAR_ANSPRAK",
    )
    .await;
}

#[tokio::test]
async fn a_token_without_kommunkod_is_refused() {
    refused_token(
        |s, c| signed(s, c, |c| c.kommunkod = String::new()),
        401,
        "TOKEN_SAKNAR_ANSPRAK",
    )
    .await;
}

#[tokio::test]
async fn a_token_that_is_not_a_jwt_is_refused() {
    refused_token(|_, _| Some("abc.def.ghi".into()), 401, "TOKEN_OGILTIGT").await;
}

#[tokio::test]
async fn a_token_for_another_municipality_is_refused() {
    refused_token(
        |s, c| signed(s, c, |c| c.kommunkod = "1480".into()),
        403,
        "FEL_KOMMUN",
    )
    .await;
}

#[tokio::test]
async fn another_municipalitys_token_on_this_certificate_is_refused() {
    refused_token(
        |s, _| {
            Some(
                s.gb_idp
                    .token(&s.gbg.handlaggare, "1480", "EKB-BESLUT")
                    .unwrap(),
            )
        },
        401,
        "TOKEN_OKAND_NYCKEL",
    )
    .await;
}

/// A client certificate for Stockholm from the real kommun CA, shaped by `shape`.
fn sthlm_cert(shape: impl FnOnce(&mut CertificateParams)) -> (CertAndKey, String) {
    let ca_pem = std::fs::read_to_string(certs().join("kommun-ca.pem")).unwrap();
    let ca_key =
        KeyPair::from_pem(&std::fs::read_to_string(certs().join("kommun-ca.key")).unwrap())
            .unwrap();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "Stockholms stad test");
    p.distinguished_name
        .push(DnType::CustomDnType(vec![2, 5, 4, 97]), "NTRSE-2120000142");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    shape(&mut p);
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key).unwrap();
    let cert = p.signed_by(&key, &issuer).unwrap();
    let pem = cert.pem();
    (
        CertAndKey {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
        },
        pem,
    )
}

async fn refused_at_handshake(s: &harness::Stack, identity: CertAndKey, alert: &str) {
    let client = KommunClient::with_identity(&s.url, &kommun_ca(), Some(identity)).unwrap();
    let err = client
        .post_raw(Some(&s.st_token()), s.st_xml(sim_af::REGISTRERAD))
        .await
        .unwrap_err();
    assert!(err.contains(alert), "expected {alert}: {err}");
    assert_eq!(s.af_data_requests(), 0);
}

#[tokio::test]
async fn an_expired_client_certificate_is_refused_at_the_handshake() {
    let s = harness::start().await;
    let (expired, _) = sthlm_cert(|p| {
        p.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
        p.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    });
    refused_at_handshake(&s, expired, "CertificateExpired").await;
    s.stop().await;
}

#[tokio::test]
async fn a_client_certificate_not_valid_yet_is_refused_at_the_handshake() {
    let s = harness::start().await;
    let (future, _) = sthlm_cert(|p| {
        p.not_before = time::OffsetDateTime::now_utc() + time::Duration::days(1);
        p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    });
    // rustls sends the same alert for "not yet valid" as for "expired".
    refused_at_handshake(&s, future, "CertificateExpired").await;
    s.stop().await;
}

#[tokio::test]
async fn a_certificate_for_servers_only_is_refused_as_a_client_certificate() {
    let s = harness::start().await;
    let (server_only, _) =
        sthlm_cert(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]);
    refused_at_handshake(&s, server_only, "UnsupportedCertificate").await;
    s.stop().await;
}

/// RFC 5280 lets a certificate without extended key usages serve any purpose; a case
/// system's certificate must say it is for client authentication.
#[tokio::test]
async fn a_certificate_that_names_no_use_is_refused_as_a_client_certificate() {
    let s = harness::start().await;
    let (no_eku, _) = sthlm_cert(|p| p.extended_key_usages = vec![]);
    refused_at_handshake(&s, no_eku, "UnsupportedCertificate").await;
    s.stop().await;
}

#[tokio::test]
async fn a_revoked_client_certificate_is_refused_at_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let (revoked, revoked_pem) = sthlm_cert(|_| {});
    let (fine, _) = sthlm_cert(|_| {});
    let revoked_file = dir.path().join("revoked.pem");
    std::fs::write(&revoked_file, revoked_pem).unwrap();
    let crl = dir.path().join("kommun-ca.crl.pem");
    brygga::devkit::certs::write_crl(
        &certs().join("kommun-ca.pem"),
        &certs().join("kommun-ca.key"),
        &brygga::access::tls::load_certs(&revoked_file).unwrap(),
        &crl,
        30,
    )
    .unwrap();
    let s = harness::start_custom(
        |c, _| {
            c.kommun.crls = brygga::access::tls::load_crls(&crl)
                .unwrap()
                .into_iter()
                .map(|der| brygga::access::trust::NamedCrl {
                    name: "kommun.client_crls[0]".into(),
                    der,
                })
                .collect()
        },
        true,
    )
    .await;
    refused_at_handshake(&s, revoked, "CertificateRevoked").await;
    // Another certificate of the same CA, not on the list, is served.
    let ok = KommunClient::with_identity(&s.url, &kommun_ca(), Some(fine)).unwrap();
    crate::harness::status(
        &ok.post_raw(Some(&s.st_token()), s.st_xml(sim_af::REGISTRERAD))
            .await
            .unwrap(),
    );
    s.stop().await;
}
