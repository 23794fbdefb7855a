//! Bearer JWTs through the gateway: HS256 and JWKS-verified tokens act for
//! their workspace; every kind of bad token is refused with its reason.

use std::time::Duration;

use e2e::{
    Client, Options, TestStack,
    jwt_issuer::{self, JwksServer, SigningKey, claims, sign_hs256},
};
use serde_json::json;

async fn stack_with_jwks(jwks: &JwksServer, min_refresh: Duration) -> TestStack {
    TestStack::start_with(Options {
        jwt: Some(jwks.gateway_config(min_refresh)),
        ..Options::default()
    })
    .await
}

fn bearer(stack: &TestStack, token: &str) -> Client {
    Client::with_key(&stack.base_url, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hs256_token_acts_for_its_workspace_with_its_scopes() {
    let jwks = JwksServer::start(&[]).await;
    let stack = stack_with_jwks(&jwks, Duration::ZERO).await;
    let token = sign_hs256(&claims(&stack.workspace_id, "read:conversations write:conversations"));
    let user = bearer(&stack, &token);

    let conv = user.create_conversation("from-jwt").await;
    let seen_by_key = stack.client.get(&format!("/api/v1/conversations/{conv}")).await;
    assert_eq!(
        seen_by_key.status, 200,
        "the JWT acted for the same workspace as its API key"
    );

    let refused = user.get("/api/v1/bots").await;
    refused.assert_problem(403, "insufficient-scope");
    assert!(
        refused
            .header("www-authenticate")
            .unwrap()
            .contains("scope=\"read:bots\"")
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_token_is_refused_with_its_reason() {
    let jwks = JwksServer::start(&[]).await;
    let stack = stack_with_jwks(&jwks, Duration::ZERO).await;
    let ws = stack.workspace_id.clone();
    let now = chrono::Utc::now().timestamp();
    let with = |patch: serde_json::Value| {
        let mut c = claims(&ws, "read:conversations");
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let cases: Vec<(String, &str)> = vec![
        (sign_hs256(&with(json!({"exp": now - 120}))), "the token has expired"),
        (
            sign_hs256(&with(json!({"nbf": now + 120}))),
            "the token is not valid yet",
        ),
        (
            sign_hs256(&with(json!({"iss": "https://other-idp.test"}))),
            "the token's issuer is not accepted",
        ),
        (
            sign_hs256(&with(json!({"aud": "someone-else"}))),
            "the token's audience is not accepted",
        ),
        (
            sign_hs256(&with(json!({"workspace_id": null}))),
            "the token lacks the workspace_id claim",
        ),
        (
            tampered(&sign_hs256(&claims(&ws, "read:conversations"))),
            "the token's signature is invalid",
        ),
        (
            SigningKey::ed25519("nobody-knows-me").sign(&claims(&ws, "read:conversations")),
            "the token's key id is not in the key set",
        ),
    ];
    for (token, reason) in cases {
        let reply = bearer(&stack, &token).get("/api/v1/conversations").await;
        reply.assert_problem(401, "unauthenticated");
        assert_eq!(reply.json["detail"], reason);
        let challenge = reply.header("www-authenticate").unwrap();
        assert!(
            challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""),
            "{challenge}"
        );
    }

    // An asymmetric algorithm the gateway does not accept.
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &claims(&ws, "read:conversations"),
        &jsonwebtoken::EncodingKey::from_secret(jwt_issuer::HS256_SECRET.as_bytes()),
    )
    .unwrap();
    let reply = bearer(&stack, &hs512).get("/api/v1/conversations").await;
    reply.assert_problem(401, "unauthenticated");
    assert!(reply.json["detail"].as_str().unwrap().contains("algorithm"));
    stack.stop().await;
}

/// Swaps the payload for another workspace's, keeping the signature.
fn tampered(token: &str) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["workspace_id"] = json!("ws_victim");
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_keys_rotate_without_downtime_and_a_failing_jwks_keeps_the_last_good_set() {
    let old = SigningKey::ed25519("2024-old");
    let new = SigningKey::p256("2025-new");
    let jwks = JwksServer::start(&[&old]).await;
    let stack = stack_with_jwks(&jwks, Duration::ZERO).await;
    let ws = stack.workspace_id.clone();
    let scope = "read:conversations";

    assert_eq!(
        bearer(&stack, &old.sign(&claims(&ws, scope)))
            .get("/api/v1/conversations")
            .await
            .status,
        200
    );
    let early = bearer(&stack, &new.sign(&claims(&ws, scope)))
        .get("/api/v1/conversations")
        .await;
    early.assert_problem(401, "unauthenticated");

    // The identity provider publishes the new key; the first token signed
    // with it makes the gateway refetch.
    jwks.publish(&[&old, &new]);
    assert_eq!(
        bearer(&stack, &new.sign(&claims(&ws, scope)))
            .get("/api/v1/conversations")
            .await
            .status,
        200
    );

    // The JWKS endpoint breaks: known keys keep working.
    jwks.fail();
    let unknown = SigningKey::ed25519("never-published");
    bearer(&stack, &unknown.sign(&claims(&ws, scope)))
        .get("/api/v1/conversations")
        .await
        .assert_problem(401, "unauthenticated");
    assert_eq!(
        bearer(&stack, &old.sign(&claims(&ws, scope)))
            .get("/api/v1/conversations")
            .await
            .status,
        200
    );
    assert_eq!(
        bearer(&stack, &new.sign(&claims(&ws, scope)))
            .get("/api/v1/conversations")
            .await
            .status,
        200
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_ids_cannot_make_the_gateway_hammer_the_jwks() {
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(&[&key]).await;
    let stack = stack_with_jwks(&jwks, Duration::from_secs(3600)).await;
    let loaded = jwks.fetches();
    for i in 0..10 {
        let forged =
            SigningKey::ed25519(&format!("forged-{i}")).sign(&claims(&stack.workspace_id, "read:conversations"));
        bearer(&stack, &forged)
            .get("/api/v1/conversations")
            .await
            .assert_problem(401, "unauthenticated");
    }
    assert!(
        jwks.fetches() - loaded <= 1,
        "at most one refetch within the floor, got {}",
        jwks.fetches() - loaded
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_of_every_known_kind_are_refused() {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

    let real = SigningKey::ed25519("real-key");
    let jwks = JwksServer::start(&[&real]).await;
    let stack = stack_with_jwks(&jwks, Duration::ZERO).await;
    let good = claims(&stack.workspace_id, "read:conversations");
    let genuine = bearer(&stack, &real.sign(&good)).get("/api/v1/conversations").await;
    assert_eq!(genuine.status, 200, "the real key's token works: {}", genuine.text);

    let part = |value: serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
    // A verifier that takes the header's word for the algorithm would check
    // these HMACs with the public key as the secret.
    let confused = |secret: &[u8]| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("real-key".into());
        encode(&header, &good, &EncodingKey::from_secret(secret)).unwrap()
    };
    let public_key = URL_SAFE_NO_PAD.decode(real.jwk["x"].as_str().unwrap()).unwrap();
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!("{}.{}.", part(json!({"alg": "none", "typ": "JWT"})), part(good.clone())),
        ),
        (
            "alg none naming the real key",
            format!(
                "{}.{}.",
                part(json!({"alg": "none", "kid": "real-key"})),
                part(good.clone())
            ),
        ),
        ("HS256 keyed with the public key", confused(&public_key)),
        (
            "HS256 keyed with the JWK's text",
            confused(real.jwk.to_string().as_bytes()),
        ),
        (
            "a kid that is a path",
            SigningKey::ed25519("../../../../etc/passwd").sign(&good),
        ),
        ("a kid with SQL", SigningKey::ed25519("x' OR '1'='1' --").sign(&good)),
        ("the real key's signature on other claims", {
            let token = real.sign(&good);
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            let mut other = good.clone();
            other["scope"] = json!("write:conversations admin");
            parts[1] = part(other);
            parts.join(".")
        }),
        ("three empty segments", "..".into()),
        ("not base64", "a!.b!.c!".into()),
        (
            "a header that is not JSON",
            format!("{}.{}.sig", URL_SAFE_NO_PAD.encode("alg"), part(good.clone())),
        ),
    ];
    for (what, token) in &cases {
        let reply = bearer(&stack, token).get("/api/v1/conversations").await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.text);
        reply.assert_problem(401, "unauthenticated");
    }
    println!("{} forged tokens refused", cases.len());
    stack.stop().await;
}
