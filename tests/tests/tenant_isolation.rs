//! Every public route, walked from the gateway's route table (so a new RPC
//! is probed without editing this file), called against workspace A's
//! resources by workspace B: none answers with A's data, and a route that
//! names one of A's resources answers 404, exactly as for one that does
//! not exist. And A's own key without a route's scope gets 403 everywhere.

use std::collections::HashMap;

use e2e::{
    Client, TestStack, bots,
    customer_db::{CustomerDb, Engine},
};
use prost_reflect::DescriptorPool;
use reqwest::Method;
use serde_json::json;

/// Every kind of resource a public route names, by its path variable.
const KINDS: [&str; 10] = [
    "bot_id",
    "item_id",
    "job_id",
    "conversation_id",
    "message_id",
    "endpoint_id",
    "delivery_id",
    "integration_id",
    "name",
    "replay_id",
];

/// A route as the gateway serves it.
struct Probe {
    method: Method,
    template: String,
    scope: String,
}

fn public_routes() -> Vec<Probe> {
    let pool = DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET).expect("the descriptor set decodes");
    let table = gateway::routes::RouteTable::build(&pool, |_| Some(0)).expect("the route table builds");
    table
        .routes()
        .filter(|r| !r.inbound_webhook)
        .map(|r| Probe {
            method: Method::from_bytes(r.http_method.as_str().as_bytes()).expect("an HTTP method"),
            template: r.template.as_str().to_owned(),
            scope: r.required_scope.clone(),
        })
        .collect()
}

/// Workspace A's resources, one of each kind a route can name.
async fn resources_of(api: &Client) -> (HashMap<&'static str, String>, CustomerDb) {
    let mut ids = HashMap::new();
    let bot = bots::create_bot(api, "a's bot", json!({})).await;
    let items = bots::add_faqs(api, &bot, &[("When do you open?".into(), "At nine.".into())]).await;
    let job = bots::train(api, &bot).await;
    let conversation = bots::conversation_with(api, &bot).await;
    let message = api.send_message(&conversation, "hello").await;
    let endpoint = api
        .post(
            "/api/v1/webhooks/endpoints",
            json!({"url": "https://example.com/a-hooks", "event_types": []}),
        )
        .await;
    assert_eq!(endpoint.status, 200, "{}", endpoint.text);
    let endpoint_id = endpoint.json["endpoint"]["id"].as_str().unwrap().to_owned();
    let tested = api
        .post(&format!("/api/v1/webhooks/endpoints/{endpoint_id}/test"), json!({}))
        .await;
    assert!(tested.status < 300, "{}", tested.text);
    let delivery = api
        .get_until(
            &format!("/api/v1/webhooks/endpoints/{endpoint_id}/deliveries"),
            std::time::Duration::from_secs(10),
            |page| page["deliveries"].as_array().is_some_and(|d| !d.is_empty()),
        )
        .await;
    let replay = api
        .post(
            &format!("/api/v1/webhooks/endpoints/{endpoint_id}/replay"),
            json!({"since": "2026-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(replay.status, 202, "{}", replay.text);
    let db = CustomerDb::create(Engine::Postgres).await;
    let integration = api.post("/api/v1/integrations", db.connect_request(&db.password)).await;
    assert_eq!(integration.status, 200, "{}", integration.text);
    let secret = api
        .post(
            "/api/v1/secrets",
            json!({"name": "secret_model1", "value": "sk-a-only", "origin": "https://llm.example"}),
        )
        .await;
    assert_eq!(secret.status, 201, "{}", secret.text);

    ids.insert("bot_id", bot);
    ids.insert("item_id", items[0].clone());
    ids.insert("job_id", job["id"].as_str().unwrap().to_owned());
    ids.insert("conversation_id", conversation);
    ids.insert("message_id", message["id"].as_str().unwrap().to_owned());
    ids.insert("endpoint_id", endpoint_id);
    ids.insert(
        "delivery_id",
        delivery["deliveries"][0]["id"].as_str().unwrap().to_owned(),
    );
    ids.insert("integration_id", integration.json["id"].as_str().unwrap().to_owned());
    ids.insert("name", "secret_model1".to_owned());
    ids.insert("replay_id", replay.json["id"].as_str().unwrap().to_owned());
    (ids, db)
}

/// The template with each variable replaced by A's resource of that name;
/// `None` when it names a kind this test has no resource of.
fn path_for(template: &str, ids: &HashMap<&'static str, String>) -> Option<String> {
    let mut path = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}')? + open;
        let name = rest[open + 1..close].split('=').next()?;
        path.push_str(&rest[..open]);
        path.push_str(ids.get(name)?);
        rest = &rest[close + 1..];
    }
    path.push_str(rest);
    Some(path)
}

/// A well-formed id of the same kind that names nothing.
fn ghost_of(id: &str) -> String {
    match id.split_once('_') {
        Some((prefix, rest)) => format!("{prefix}_{}", "z".repeat(rest.len())),
        None => "z".repeat(id.len()),
    }
}

async fn call(client: &Client, method: &Method, path: &str) -> e2e::Reply {
    let mut request = client.request(method.clone(), path);
    if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        request = request.json(&json!({}));
    }
    Client::send(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_lets_one_workspace_reach_anothers_resources() {
    e2e::require_embedding_model();
    let stack = TestStack::start().await;
    let a = &stack.client;
    let (ids, db) = resources_of(a).await;
    let b = stack.new_workspace("b").await;
    let routes = public_routes();
    let ghosts: HashMap<&'static str, String> = ids.iter().map(|(kind, id)| (*kind, ghost_of(id))).collect();
    let (mut named, mut listed, mut not_found) = (0, 0, 0);
    let mut checked_first = Vec::new();
    for route in &routes {
        let path = path_for(&route.template, &ids)
            .unwrap_or_else(|| panic!("{} names a resource kind this test does not create", route.template));
        let reply = call(&b, &route.method, &path).await;
        let what = format!("{} {} as workspace B", route.method, path);
        assert!(reply.status < 500, "{what}: {} {}", reply.status, reply.text);
        // A 404 may repeat the ids the caller sent; any other of A's is a
        // leak.
        for id in ids.values().filter(|id| !path.contains(id.as_str())) {
            assert!(
                !reply.text.contains(id.as_str()),
                "{what} showed A's {id}: {}",
                reply.text
            );
        }
        if route.template.contains('{') {
            named += 1;
            // B must learn nothing: the answer is the one for ids that
            // exist nowhere (404, or 400 where the request is checked
            // before the resource is looked up).
            let ghost = call(&b, &route.method, &path_for(&route.template, &ghosts).unwrap()).await;
            assert_eq!(
                (reply.status, &reply.json["type"]),
                (ghost.status, &ghost.json["type"]),
                "{what} differs from the same call on ids that do not exist: {} / {}",
                reply.text,
                ghost.text
            );
            assert!(matches!(reply.status, 400 | 404), "{what}: {}", reply.text);
            if reply.status == 404 {
                not_found += 1;
            } else {
                checked_first.push(format!("{} {}", route.method, route.template));
            }
        } else {
            listed += 1;
        }
    }
    println!(
        "{named} routes naming A's resources answered B as for ids that exist nowhere ({not_found} with 404, \
         the rest 400 for a request checked first: {checked_first:?}); {listed} routes without one showed B \
         none of A's data"
    );

    // A's own key with only a scope the route does not require: 403, never
    // data, whatever the route.
    let mut refused = 0;
    for route in &routes {
        let other = if route.scope == "read:analytics" {
            "read:bots"
        } else {
            "read:analytics"
        };
        let narrow = a
            .post("/api/v1/api-keys", json!({"name": "narrow", "scopes": [other]}))
            .await;
        assert_eq!(narrow.status, 201, "{}", narrow.text);
        let narrow = Client::with_key(&stack.base_url, narrow.json["api_key"]["key"].as_str().unwrap());
        let path = path_for(&route.template, &ids).unwrap();
        let reply = call(&narrow, &route.method, &path).await;
        assert_eq!(
            reply.status, 403,
            "{} {path} without {}: {}",
            route.method, route.scope, reply.text
        );
        reply.assert_problem(403, "insufficient-scope");
        refused += 1;
    }
    println!("{refused} routes refused a key without their scope");
    assert_eq!(named + listed, routes.len());
    stack.stop().await;
    db.remove().await;
}

#[test]
fn every_resource_kind_a_route_names_is_created_by_the_probe() {
    let ids: HashMap<&'static str, String> = KINDS.iter().map(|k| (*k, "x".to_owned())).collect();
    for route in public_routes() {
        assert!(
            path_for(&route.template, &ids).is_some(),
            "{} names a kind the probe does not create: add it to resources_of",
            route.template
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_oversized_requests_are_4xx_problems_on_every_route() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    // Well-formed ids naming nothing: every route must still refuse bad
    // input with a problem, whether or not it would find the resource.
    let ids: HashMap<&'static str, String> = KINDS
        .iter()
        .map(|kind| (*kind, format!("{}_zzzzzzzzzzzzzzzzzzzz", &kind[..kind.len() - 3])))
        .collect();
    let oversized = "x".repeat(200 * 1024);
    let mut tried = 0;
    for route in public_routes() {
        let path = path_for(&route.template, &ids).unwrap();
        let mut variants: Vec<(&str, reqwest::RequestBuilder)> = vec![
            (
                "a malformed query",
                api.request(
                    route.method.clone(),
                    &format!("{path}?limit=abc&cursor=%ZZ&since=yesterday&x[]="),
                ),
            ),
            (
                "a huge query",
                api.request(
                    route.method.clone(),
                    &format!("{path}?cursor={}", "y".repeat(16 * 1024)),
                ),
            ),
            (
                "an API version that never was",
                api.request(route.method.clone(), &path)
                    .header("x-api-version", "1999-13"),
            ),
            (
                "a header of 64 KiB",
                api.request(route.method.clone(), &path)
                    .header("x-junk", "z".repeat(64 * 1024)),
            ),
        ];
        if matches!(route.method, Method::POST | Method::PUT | Method::PATCH) {
            let body = |b: String| {
                api.request(route.method.clone(), &path)
                    .header("content-type", "application/json")
                    .body(b)
            };
            variants.push(("a truncated JSON body", body("{\"name\": ".into())));
            variants.push(("a JSON array body", body("[1, 2, 3]".into())));
            variants.push((
                "fields of the wrong type",
                body("{\"limit\": {\"a\": [true]}, \"name\": 7}".into()),
            ));
            variants.push(("a body over the limit", body(format!("{{\"name\": \"{oversized}\"}}"))));
            variants.push((
                "not JSON at all",
                api.request(route.method.clone(), &path)
                    .header("content-type", "text/plain")
                    .body("hello"),
            ));
        }
        for (what, request) in variants {
            let reply = Client::send(request).await;
            tried += 1;
            assert!(
                (400..500).contains(&reply.status),
                "{} {path} with {what}: {} {}",
                route.method,
                reply.status,
                reply.text
            );
            assert!(
                reply.header("content-type") == Some("application/problem+json"),
                "{} {path} with {what}: {} is not a problem: {:?}",
                route.method,
                reply.status,
                reply.header("content-type")
            );
        }
    }
    println!("{tried} malformed or oversized requests, every one a 4xx problem");
    stack.stop().await;
}
