//! Integrations with a workspace's own databases: connected only once the
//! database takes the credentials, the credentials sealed and never shown,
//! every connection and disconnection announced, and nothing of one
//! workspace visible to another. The databases are real: a database and a
//! user made for each test on the machine's PostgreSQL and MariaDB.

use std::time::Duration;

use e2e::{
    Options, TestStack,
    customer_db::{CustomerDb, Engine},
    event_tap::EventTap,
};
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection};

const WAIT: Duration = Duration::from_secs(10);

/// The integration's credentials as stored in the service's schema.
async fn sealed_credentials(stack: &TestStack, id: &str) -> Option<Vec<u8>> {
    let mut db = PgConnection::connect(stack.database_url())
        .await
        .expect("the stack's database");
    sqlx::query_scalar("SELECT credentials_sealed FROM integration.integrations WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut db)
        .await
        .expect("reading the integrations table")
        .flatten()
}

async fn connects_and_shows_no_credential(engine: Engine) {
    let stack = TestStack::start().await;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    let db = CustomerDb::create(engine).await;
    let api = &stack.client;

    let created = api.post("/api/v1/integrations", db.connect_request(&db.password)).await;
    assert_eq!(created.status, 200, "{}", created.text);
    let integration = &created.json;
    let id = integration["id"].as_str().expect("an id");
    assert!(id.starts_with("int_"), "{id}");
    assert_eq!(integration["kind"], db.kind());
    assert_eq!(integration["status"], "connected");
    assert_eq!(integration["scopes"], json!(["read"]));
    assert_eq!(integration["settings"]["database"], db.name.as_str());
    assert_eq!(integration["settings"]["tls"], "disable");
    assert!(!created.text.contains(&db.password), "the password is never shown");

    let fetched = api.get(&format!("/api/v1/integrations/{id}")).await;
    assert_eq!(fetched.status, 200, "{}", fetched.text);
    assert_eq!(fetched.json, created.json);
    let listed = api.get("/api/v1/integrations").await;
    assert_eq!(listed.json["integrations"], json!([created.json]));

    let event = tap.skip_until("integration.connected", WAIT).await;
    assert_eq!(event["workspace_id"], stack.workspace_id.as_str());
    assert_eq!(event["data"]["integration"]["id"], id);
    assert_eq!(event["data"]["integration"]["kind"], db.kind());
    assert!(!event.to_string().contains(&db.password), "events carry no credential");

    let sealed = sealed_credentials(&stack, id).await.expect("credentials are kept");
    assert!(sealed.starts_with(b"s1"), "sealed with a key id");
    let password = db.password.as_bytes();
    assert!(
        !sealed.windows(password.len()).any(|w| w == password),
        "the password is not stored in clear"
    );
    db.remove().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_is_connected_once_it_takes_the_credentials() {
    connects_and_shows_no_credential(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_database_is_connected_once_it_takes_the_credentials() {
    connects_and_shows_no_credential(Engine::Mariadb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_database_refuses_is_422_with_its_reason_and_nothing_is_saved() {
    let stack = TestStack::start().await;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    // MariaDB checks the password. This machine's PostgreSQL trusts
    // loopback, so it is given a user it does not know; with password
    // authentication it would say the password failed instead.
    let mariadb = CustomerDb::create(Engine::Mariadb).await;
    let wrong_password = mariadb.connect_request("not-the-password");
    let postgres = CustomerDb::create(Engine::Postgres).await;
    let mut unknown_user = postgres.connect_request(&postgres.password);
    unknown_user["settings"]["user"] = json!("nobody_here");
    for (request, reasons) in [
        (wrong_password, &["Access denied"][..]),
        (unknown_user, &["does not exist", "password authentication failed"][..]),
    ] {
        let refused = stack.client.post("/api/v1/integrations", request).await;
        refused.assert_problem(422, "unprocessable");
        let detail = refused.json["detail"].as_str().unwrap_or_default();
        assert!(reasons.iter().any(|r| detail.contains(r)), "{detail}");
        assert!(!detail.contains("not-the-password"), "{detail}");
    }
    let listed = stack.client.get("/api/v1/integrations").await;
    assert_eq!(listed.json["integrations"], json!([]), "nothing was saved");
    tap.expect_none(Duration::from_secs(1)).await;
    mariadb.remove().await;
    postgres.remove().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_unless_the_workspace_turns_it_off() {
    let stack = TestStack::start().await;
    for engine in [Engine::Postgres, Engine::Mariadb] {
        let db = CustomerDb::create(engine).await;
        let mut request = db.connect_request(&db.password);
        // The local servers have no certificate valid for 127.0.0.1, if any.
        request["settings"].as_object_mut().unwrap().remove("tls");
        let refused = stack.client.post("/api/v1/integrations", request).await;
        refused.assert_problem(422, "unprocessable");
        db.remove().await;
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnecting_forgets_the_credentials_and_announces_it() {
    let stack = TestStack::start().await;
    let db = CustomerDb::create(Engine::Postgres).await;
    let api = &stack.client;
    let created = api.post("/api/v1/integrations", db.connect_request(&db.password)).await;
    let id = created.json["id"].as_str().expect("an id").to_owned();
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;

    let deleted = api.delete(&format!("/api/v1/integrations/{id}")).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(deleted.json, json!({"id": id, "deleted": true}));
    api.get(&format!("/api/v1/integrations/{id}"))
        .await
        .assert_problem(404, "not-found");
    let event = tap.skip_until("integration.disconnected", WAIT).await;
    assert_eq!(event["data"]["integration"]["id"], id.as_str());
    assert_eq!(sealed_credentials(&stack, &id).await, None, "the credentials are gone");
    api.delete(&format!("/api/v1/integrations/{id}"))
        .await
        .assert_problem(404, "not-found");
    db.remove().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_workspace_can_neither_see_nor_disconnect_it() {
    let stack = TestStack::start().await;
    let db = CustomerDb::create(Engine::Postgres).await;
    let created = stack
        .client
        .post("/api/v1/integrations", db.connect_request(&db.password))
        .await;
    let id = created.json["id"].as_str().expect("an id");
    let other = stack.new_workspace("someone else").await;
    other
        .get(&format!("/api/v1/integrations/{id}"))
        .await
        .assert_problem(404, "not-found");
    other
        .delete(&format!("/api/v1/integrations/{id}"))
        .await
        .assert_problem(404, "not-found");
    assert_eq!(other.get("/api/v1/integrations").await.json["integrations"], json!([]));
    let still = stack.client.get(&format!("/api/v1/integrations/{id}")).await;
    assert_eq!(still.status, 200, "{}", still.text);
    db.remove().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_on_an_internal_address_is_refused_unless_its_network_is_allowed() {
    let stack = TestStack::start_with(Options {
        forbid_internal_integration_targets: true,
        ..Options::default()
    })
    .await;
    let db = CustomerDb::create(Engine::Postgres).await;
    let refused = stack
        .client
        .post("/api/v1/integrations", db.connect_request(&db.password))
        .await;
    refused.assert_problem(400, "invalid-argument");
    assert_eq!(refused.json["field"], "settings.host");
    assert!(
        refused.json["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("INTEGRATION_ALLOWED_CIDRS"),
        "{}",
        refused.text
    );
    db.remove().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_connection_names_the_field_at_fault() {
    let stack = TestStack::start().await;
    let valid = json!({
        "kind": "postgres", "name": "shop",
        "settings": {"host": "127.0.0.1", "port": 5432, "database": "shop", "user": "bot", "tls": "disable"},
        "credentials": {"password": "p"},
    });
    let cases = [
        ("kind", "/kind", json!("oracle")),
        ("name", "/name", json!("")),
        ("settings.host", "/settings/host", json!("")),
        ("settings.port", "/settings/port", json!(0)),
        ("settings.tls", "/settings/tls", json!("sometimes")),
        ("credentials.password", "/credentials", json!({})),
    ];
    for (field, pointer, spoiled) in cases {
        let mut request: Value = valid.clone();
        *request.pointer_mut(pointer).expect("the valid request has it") = spoiled;
        let refused = stack.client.post("/api/v1/integrations", request).await;
        refused.assert_problem(400, "invalid-argument");
        assert_eq!(refused.json["field"], field, "{}", refused.text);
    }
    stack.stop().await;
}
