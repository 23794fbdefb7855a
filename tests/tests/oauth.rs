//! The gateway as an OAuth 2.0 authorization server: every flow driven by
//! an unmodified OAuth client library (authlib), and every refusal with
//! the status and error RFC 6749 prescribes.

use e2e::{Client, TestStack};
use serde_json::{Value, json};

const REDIRECT: &str = "https://app.example.com/callback";

async fn register(stack: &TestStack, kind: &str) -> Value {
    let reply = stack
        .client
        .post(
            "/api/v1/oauth/clients",
            json!({"name": format!("{kind} app"), "kind": kind, "redirect_uris": [REDIRECT],
                   "allowed_scopes": ["read:conversations", "write:conversations"]}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json["client"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_party_apps_complete_every_flow_with_an_unmodified_client_library() {
    let stack = TestStack::start().await;
    let confidential = register(&stack, "confidential").await;
    let public = register(&stack, "public").await;
    assert!(public.get("client_secret").is_none(), "public clients get no secret");
    // A workspace admin's key approves the requests.
    let approver = stack.client.post("/api/v1/api-keys", json!({"name": "approver"})).await;
    let approver_key = approver.json["api_key"]["key"].as_str().expect("a new key").to_owned();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/oauth_client/flows.py");
    // deploy/test.sh points E2E_PYTHON at a venv holding authlib.
    let python = std::env::var("E2E_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .env("BASE_URL", &stack.base_url)
        .env("APPROVER_KEY", approver_key)
        .env("CONFIDENTIAL_ID", confidential["client_id"].as_str().unwrap())
        .env("CONFIDENTIAL_SECRET", confidential["client_secret"].as_str().unwrap())
        .env("PUBLIC_ID", public["client_id"].as_str().unwrap())
        .env("REDIRECT_URI", REDIRECT)
        .output()
        .await
        .expect("python3 runs (deploy/test.sh installs it with authlib and requests)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("OK"),
        "the authlib flows failed (install with `pip install authlib requests`):\n{stdout}\n{stderr}"
    );
    stack.stop().await;
}

fn location_params(reply: &e2e::Reply) -> std::collections::HashMap<String, String> {
    assert_eq!(reply.status, 302, "expected a redirect: {}", reply.text);
    let location = reply.header("location").unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_errors_go_back_to_the_client_unless_the_client_itself_is_bad() {
    let stack = TestStack::start().await;
    let public = register(&stack, "public").await;
    let id = public["client_id"].as_str().unwrap();
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let authorize = |query: String| {
        let api = stack.client.clone();
        async move {
            api.post_form(&format!("/oauth/authorize?{query}"), &[("decision", "approve")])
                .await
        }
    };
    let good =
        format!("response_type=code&client_id={id}&state=s1&code_challenge={challenge}&code_challenge_method=S256");

    // Bad client or redirect URI: shown directly, never redirected.
    authorize("response_type=code&client_id=cli_unknown".into())
        .await
        .assert_problem(400, "invalid-authorization-request");
    let foreign = authorize(format!("{good}&redirect_uri=https://evil.example/steal")).await;
    foreign.assert_problem(400, "invalid-authorization-request");
    assert!(foreign.header("location").is_none());

    // Everything else goes back to the client with its state.
    let cases = [
        (
            format!("{}&response_type=token", good.replace("response_type=code&", "")),
            "unsupported_response_type",
        ),
        (format!("response_type=code&client_id={id}&state=s1"), "invalid_request"),
        (format!("{good}&scope=write:bots"), "invalid_scope"),
        (good.replace("S256", "plain"), "invalid_request"),
    ];
    for (query, error) in cases {
        let params = location_params(&authorize(query).await);
        assert_eq!(params["error"], error);
        assert_eq!(params["state"], "s1");
        assert!(!params["error_description"].is_empty());
    }
    let denied = stack
        .client
        .post_form(&format!("/oauth/authorize?{good}"), &[("decision", "deny")])
        .await;
    assert_eq!(location_params(&denied)["error"], "access_denied");

    // Without credentials nobody can approve.
    let anonymous = Client::anonymous(&stack.base_url);
    anonymous
        .get(&format!("/oauth/authorize?{good}"))
        .await
        .assert_problem(401, "unauthenticated");

    let consent = stack.client.get(&format!("/oauth/authorize?{good}")).await;
    assert_eq!(consent.status, 200, "{}", consent.text);
    assert_eq!(consent.json["client"]["client_id"], id);
    assert_eq!(
        consent.json["scopes"],
        json!(["read:conversations", "write:conversations"])
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_errors_follow_rfc_6749() {
    let stack = TestStack::start().await;
    let confidential = register(&stack, "confidential").await;
    let public = register(&stack, "public").await;
    let (cid, secret) = (
        confidential["client_id"].as_str().unwrap(),
        confidential["client_secret"].as_str().unwrap(),
    );
    let pid = public["client_id"].as_str().unwrap();
    let anonymous = Client::anonymous(&stack.base_url);
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    let code_for = |client: String| {
        let api = stack.client.clone();
        async move {
            let query = format!(
                "response_type=code&client_id={client}&code_challenge={challenge}&code_challenge_method=S256&scope=read:conversations"
            );
            location_params(
                &api.post_form(&format!("/oauth/authorize?{query}"), &[("decision", "approve")])
                    .await,
            )["code"]
                .clone()
        }
    };
    let exchange = |code: String, client: &str, verifier: &str| {
        let (anonymous, client, verifier) = (anonymous.clone(), client.to_owned(), verifier.to_owned());
        async move {
            anonymous
                .post_form(
                    "/oauth/token",
                    &[
                        ("grant_type", "authorization_code"),
                        ("code", &code),
                        ("redirect_uri", REDIRECT),
                        ("client_id", &client),
                        ("code_verifier", &verifier),
                    ],
                )
                .await
        }
    };
    let expect = |reply: &e2e::Reply, status: u16, error: &str| {
        assert_eq!(reply.status, status, "{}", reply.text);
        assert_eq!(reply.json["error"], error, "{}", reply.text);
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    };

    let code = code_for(pid.into()).await;
    expect(
        &exchange(code.clone(), pid, "wrong-verifier-wrong-verifier-wrong-verifier-x").await,
        400,
        "invalid_grant",
    );
    let code = code_for(pid.into()).await;
    let first = exchange(code.clone(), pid, verifier).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json["token_type"], "Bearer");
    expect(&exchange(code, pid, verifier).await, 400, "invalid_grant");
    let refresh = first.json["refresh_token"].as_str().unwrap();
    let after_replay = anonymous
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("client_id", pid),
            ],
        )
        .await;
    expect(&after_replay, 400, "invalid_grant");

    let other_client_code = code_for(pid.into()).await;
    let stolen = anonymous
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &other_client_code),
                ("redirect_uri", REDIRECT),
                ("client_id", cid),
                ("client_secret", secret),
                ("code_verifier", verifier),
            ],
        )
        .await;
    expect(&stolen, 400, "invalid_grant");

    let bad_secret = Client::send(
        anonymous
            .request(reqwest::Method::POST, "/oauth/token")
            .basic_auth(cid, Some("not-the-secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials"),
    )
    .await;
    expect(&bad_secret, 401, "invalid_client");
    assert_eq!(bad_secret.header("www-authenticate"), Some("Basic realm=\"oauth\""));
    // A client id no client can have (schemathesis found this one a 500).
    let impossible = anonymous
        .post_form(
            "/oauth/token",
            &[("grant_type", "client_credentials"), ("client_id", "0(K\u{9c}\u{0}")],
        )
        .await;
    expect(&impossible, 401, "invalid_client");

    let public_machine = anonymous
        .post_form(
            "/oauth/token",
            &[("grant_type", "client_credentials"), ("client_id", pid)],
        )
        .await;
    expect(&public_machine, 400, "unauthorized_client");
    let unknown_grant = anonymous
        .post_form("/oauth/token", &[("grant_type", "password"), ("client_id", pid)])
        .await;
    expect(&unknown_grant, 400, "unsupported_grant_type");
    let repeated = anonymous
        .post_form(
            "/oauth/token",
            &[("grant_type", "client_credentials"), ("grant_type", "x")],
        )
        .await;
    expect(&repeated, 400, "invalid_request");
    let wide = anonymous
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", cid),
                ("client_secret", secret),
                ("scope", "write:bots"),
            ],
        )
        .await;
    expect(&wide, 400, "invalid_scope");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_rotate_while_tokens_signed_before_keep_working() {
    let stack = TestStack::start().await;
    let confidential = register(&stack, "confidential").await;
    let (cid, secret) = (
        confidential["client_id"].as_str().unwrap(),
        confidential["client_secret"].as_str().unwrap(),
    );
    let anonymous = Client::anonymous(&stack.base_url);
    let mint = || {
        let anonymous = anonymous.clone();
        async move {
            let reply = anonymous
                .post_form(
                    "/oauth/token",
                    &[
                        ("grant_type", "client_credentials"),
                        ("client_id", cid),
                        ("client_secret", secret),
                    ],
                )
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            reply.json["access_token"].as_str().unwrap().to_owned()
        }
    };
    let before = mint().await;
    let rotated = stack.admin().post("/admin/v1/oauth/signing-keys", json!({})).await;
    assert_eq!(rotated.status, 201, "{}", rotated.text);
    let after = mint().await;
    assert_ne!(kid(&before), kid(&after), "new tokens use the new key");
    for token in [&before, &after] {
        let reply = Client::with_key(&stack.base_url, token)
            .get("/api/v1/conversations")
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let jwks = anonymous.get("/.well-known/jwks.json").await;
    let kids: Vec<&str> = jwks.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&kid(&before).as_str()) && kids.contains(&kid(&after).as_str()),
        "{kids:?}"
    );
    stack.stop().await;
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}
