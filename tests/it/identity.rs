//! Who may call: client certificates refused at the handshake, and every kind of bad token.

use std::time::Duration;

use brygga::client::KommunClient;
use brygga::config::CertAndKey;
use brygga::identity::{TokenClaims, mint_token};
use brygga::sim;
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
    brygga::tls::load_certs(&certs().join("kommun-ca.pem")).unwrap()
}

#[tokio::test]
async fn no_client_certificate_is_refused_at_the_handshake() {
    let s = harness::start().await;
    let anonymous = KommunClient::with_identity(&s.url, &kommun_ca(), None).unwrap();
    let err = anonymous
        .post_raw(Some(&s.st_token()), s.st_xml(sim::REGISTRERAD))
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
        .post_raw(Some(&s.st_token()), s.st_xml(sim::REGISTRERAD))
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
        .post_raw(Some(&s.st_token()), s.st_xml(sim::REGISTRERAD))
        .await
        .unwrap();
    let f = fault(&a, 403, "KLIENT_OKAND");
    assert!(f.meddelande.contains("212000-2411"), "{}", f.meddelande);
    s.stop().await;
}

fn idp_key(kod: &str) -> Vec<u8> {
    std::fs::read(certs().join(format!("idp-{kod}.key"))).unwrap()
}

#[tokio::test]
async fn bad_tokens_are_refused_each_with_its_own_code() {
    let s = harness::start().await;
    let xml = s.st_xml(sim::REGISTRERAD);
    let base = s.st_idp.claims(
        &s.sthlm.handlaggare,
        "0180",
        "EKB-BESLUT",
        Duration::from_secs(300),
    );
    let st_kid = {
        let jwks: serde_json::Value =
            serde_json::from_slice(&std::fs::read(certs().join("idp-0180.jwks.json")).unwrap())
                .unwrap();
        jwks["keys"][0]["kid"].as_str().unwrap().to_owned()
    };
    let sign = |c: &TokenClaims| s.st_idp.sign(c).unwrap();
    let with = |f: &dyn Fn(&mut TokenClaims)| {
        let mut c = base.clone();
        f(&mut c);
        sign(&c)
    };
    use base64::Engine;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let claims_json = serde_json::to_value(&base).unwrap();
    let alg_none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
        b64(&claims_json)
    );
    let hs256 = {
        let key = jsonwebtoken::EncodingKey::from_secret(
            &std::fs::read(certs().join("idp-0180.jwks.json")).unwrap(),
        );
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &base,
            &key,
        )
        .unwrap()
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            with(&|c| {
                c.exp = c.iat - 3600;
                c.nbf = c.iat - 7200;
            }),
            "TOKEN_UTGANGET",
        ),
        (
            "not yet valid",
            with(&|c| c.nbf = c.iat + 3600),
            "TOKEN_EJ_GILTIGT_ANNU",
        ),
        (
            "wrong audience",
            with(&|c| c.aud = "urn:some:other:service".into()),
            "TOKEN_FEL_MOTTAGARE",
        ),
        (
            "wrong issuer",
            with(&|c| c.iss = "https://idp.evil.example/".into()),
            "TOKEN_FEL_UTFARDARE",
        ),
        (
            "signed with another key under Stockholm's kid",
            mint_token(&idp_key("1480"), Some(&st_kid), &base).unwrap(),
            "TOKEN_FEL_SIGNATUR",
        ),
        (
            "unknown kid",
            mint_token(&idp_key("0180"), Some("no-such-key"), &base).unwrap(),
            "TOKEN_OKAND_NYCKEL",
        ),
        ("alg none", alg_none, "TOKEN_OGILTIGT"),
        (
            "HS256 with the public JWKS as secret",
            hs256,
            "TOKEN_FEL_ALGORITM",
        ),
        (
            "sub is not an HSA-id",
            with(&|c| c.sub = "kalle".into()),
            "TOKEN_SAKNAR_ANSPRAK",
        ),
        (
            "kommunkod missing",
            with(&|c| c.kommunkod = String::new()),
            "TOKEN_SAKNAR_ANSPRAK",
        ),
        ("garbage", "abc.def.ghi".into(), "TOKEN_OGILTIGT"),
    ];
    for (name, token, code) in cases {
        let a = s.st.post_raw(Some(&token), xml.clone()).await.unwrap();
        let f = fault(&a, 401, code);
        assert!(a.headers.contains_key("www-authenticate"), "{name}");
        assert!(
            !f.meddelande.contains(&token),
            "{name}: the token is never echoed"
        );
    }
    // A valid token for another municipality, signed by Stockholm's own IdP.
    let foreign = s
        .st_idp
        .token(&s.sthlm.handlaggare, "1480", "EKB-BESLUT")
        .unwrap();
    fault(
        &s.st.post_raw(Some(&foreign), xml.clone()).await.unwrap(),
        403,
        "FEL_KOMMUN",
    );
    // Göteborg's valid token presented over Stockholm's certificate.
    let gb = s
        .gb_idp
        .token(&s.gbg.handlaggare, "1480", "EKB-BESLUT")
        .unwrap();
    fault(
        &s.st.post_raw(Some(&gb), xml.clone()).await.unwrap(),
        401,
        "TOKEN_OKAND_NYCKEL",
    );
    fault(
        &s.st.post_raw(None, xml).await.unwrap(),
        401,
        "TOKEN_SAKNAS",
    );
    assert_eq!(s.af_data_requests(), 0, "no refused request reached AF");
    s.stop().await;
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
        .post_raw(Some(&s.st_token()), s.st_xml(sim::REGISTRERAD))
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

#[tokio::test]
async fn a_revoked_client_certificate_is_refused_at_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let (revoked, revoked_pem) = sthlm_cert(|_| {});
    let (fine, _) = sthlm_cert(|_| {});
    let revoked_file = dir.path().join("revoked.pem");
    std::fs::write(&revoked_file, revoked_pem).unwrap();
    let crl = dir.path().join("kommun-ca.crl.pem");
    brygga::certs::write_crl(
        &certs().join("kommun-ca.pem"),
        &certs().join("kommun-ca.key"),
        &brygga::tls::load_certs(&revoked_file).unwrap(),
        &crl,
        30,
    )
    .unwrap();
    let s = harness::start_custom(
        |c, _| c.kommun_client_crls = brygga::tls::load_crls(&crl).unwrap(),
        true,
    )
    .await;
    refused_at_handshake(&s, revoked, "CertificateRevoked").await;
    // Another certificate of the same CA, not on the list, is served.
    let ok = KommunClient::with_identity(&s.url, &kommun_ca(), Some(fine)).unwrap();
    crate::harness::status(
        &ok.post_raw(Some(&s.st_token()), s.st_xml(sim::REGISTRERAD))
            .await
            .unwrap(),
    );
    s.stop().await;
}
