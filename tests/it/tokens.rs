//! Production-grade token rules, each a named test over real TLS: lifetime, `iat`, replayed
//! `jti`, and RFC 8705 certificate-bound tokens.

use std::sync::Arc;
use std::time::Duration;

use brygga::access::identity::{TokenClaims, certificate_thumbprint};
use brygga::devkit::sim_af;

use crate::harness::{self, Stack, certs, fault, status};

/// Signs arbitrary claims (e.g. with one left out) with Stockholm's example IdP key.
fn sign_json(claims: serde_json::Value) -> String {
    let key = std::fs::read(certs().join("idp-0180.key")).unwrap();
    let jwks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(certs().join("idp-0180.jwks.json")).unwrap())
            .unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = jwks["keys"][0]["kid"].as_str().map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(&key).unwrap(),
    )
    .unwrap()
}

fn claims(s: &Stack) -> TokenClaims {
    s.st_idp.claims(
        &s.sthlm.handlaggare,
        "0180",
        "EKB-BESLUT",
        Duration::from_secs(300),
    )
}

#[tokio::test]
async fn a_token_living_longer_than_allowed_is_refused() {
    let s = harness::start().await;
    let long = s
        .st_idp
        .sign(&s.st_idp.claims(
            &s.sthlm.handlaggare,
            "0180",
            "EKB-BESLUT",
            Duration::from_secs(2 * 3600),
        ))
        .unwrap();
    let f = fault(&s.ask(Some(&long)).await, 401, "TOKEN_FOR_LANG_LIVSTID");
    assert!(f.meddelande.contains("3600"), "{}", f.meddelande);
    s.stop().await;
}

#[tokio::test]
async fn a_token_without_iat_or_issued_in_the_future_is_refused() {
    let s = harness::start().await;
    let mut without_iat = serde_json::to_value(claims(&s)).unwrap();
    without_iat.as_object_mut().unwrap().remove("iat");
    fault(
        &s.st
            .post_raw(Some(&sign_json(without_iat)), s.st_xml(sim_af::REGISTRERAD))
            .await
            .unwrap(),
        401,
        "TOKEN_SAKNAR_ANSPRAK",
    );
    let mut future = claims(&s);
    future.iat += 600;
    future.exp += 600;
    fault(
        &s.st
            .post_raw(
                Some(&s.st_idp.sign(&future).unwrap()),
                s.st_xml(sim_af::REGISTRERAD),
            )
            .await
            .unwrap(),
        401,
        "TOKEN_EJ_GILTIGT_ANNU",
    );
    s.stop().await;
}

#[tokio::test]
async fn with_replay_protection_each_token_is_used_once() {
    let s = harness::start_custom(|c, _| c.token_rules.replay_protection = true, true).await;
    let token = s.st_token();
    status(&s.ask(Some(&token)).await);
    fault(&s.ask(Some(&token)).await, 401, "TOKEN_ATERANVANT");
    // A fresh token (new jti) is accepted; a token without jti is not.
    status(
        &s.st
            .post_raw(Some(&s.st_token()), s.st_xml(sim_af::REGISTRERAD))
            .await
            .unwrap(),
    );
    let mut no_jti = claims(&s);
    no_jti.jti = None;
    fault(
        &s.st
            .post_raw(
                Some(&s.st_idp.sign(&no_jti).unwrap()),
                s.st_xml(sim_af::REGISTRERAD),
            )
            .await
            .unwrap(),
        401,
        "TOKEN_SAKNAR_ANSPRAK",
    );
    assert_eq!(s.af_data_requests(), 2);
    s.stop().await;
}

/// A Stockholm token bound (RFC 8705) to the certificate in `cert`.
fn bound(s: &Stack, cert: &std::path::Path) -> String {
    let chain = brygga::access::tls::load_certs(cert).unwrap();
    let mut c = claims(s);
    c.cnf = Some(serde_json::json!({ "x5t#S256": certificate_thumbprint(&chain[0]) }));
    s.st_idp.sign(&c).unwrap()
}

#[tokio::test]
async fn a_bound_token_works_only_on_its_own_certificate() {
    let s = harness::start_custom(
        |c, _| {
            Arc::get_mut(&mut c.clients[0])
                .unwrap()
                .bind_tokens_to_certificate = true
        },
        true,
    )
    .await;
    let own = bound(&s, &s.sthlm.cert);
    status(&s.ask(Some(&own)).await);
    let other = bound(&s, &s.gbg.cert);
    fault(&s.ask(Some(&other)).await, 401, "TOKEN_FEL_CERTIFIKAT");
    // The client's policy requires binding: an unbound token is refused.
    fault(
        &s.st
            .post_raw(Some(&s.st_token()), s.st_xml(sim_af::REGISTRERAD))
            .await
            .unwrap(),
        401,
        "TOKEN_FEL_CERTIFIKAT",
    );
    assert_eq!(s.af_data_requests(), 1);
    s.stop().await;
}

#[tokio::test]
async fn a_token_bound_to_another_certificate_is_refused_even_without_the_policy() {
    let s = harness::start().await;
    let other = bound(&s, &s.gbg.cert);
    fault(&s.ask(Some(&other)).await, 401, "TOKEN_FEL_CERTIFIKAT");
    status(
        &s.st
            .post_raw(
                Some(&bound(&s, &s.sthlm.cert)),
                s.st_xml(sim_af::REGISTRERAD),
            )
            .await
            .unwrap(),
    );
    s.stop().await;
}

#[test]
fn brygga_token_mints_bound_tokens() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_brygga"))
        .args([
            "token",
            "--kommun",
            "0180",
            "--sub",
            "SE2120000142-HL01",
            "--syfte",
            "EKB-BESLUT",
            "--bind-cert",
        ])
        .arg(certs().join("klient-0180.pem"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap();
    let claims: serde_json::Value =
        jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token.trim())
            .unwrap()
            .claims;
    let chain = brygga::access::tls::load_certs(&certs().join("klient-0180.pem")).unwrap();
    assert_eq!(
        claims["cnf"]["x5t#S256"],
        serde_json::json!(certificate_thumbprint(&chain[0]))
    );
    assert!(claims["jti"].is_string());
}

#[tokio::test]
async fn a_token_refused_for_its_binding_is_not_used_up() {
    let s = harness::start_custom(|c, _| c.token_rules.replay_protection = true, true).await;
    let own = bound(&s, &s.sthlm.cert);
    // Presented on Göteborg's certificate it is refused for the binding...
    let gb_xml = s
        .st_xml(sim_af::REGISTRERAD)
        .replace("162120000142", "162120001355")
        .replace(&s.sthlm.handlaggare, &s.gbg.handlaggare);
    let a = s.gb.post_raw(Some(&own), gb_xml).await.unwrap();
    assert_eq!(a.status, 401);
    // ...and its rightful holder can still use it, once.
    status(&s.ask(Some(&own)).await);
    fault(&s.ask(Some(&own)).await, 401, "TOKEN_ATERANVANT");
    s.stop().await;
}
