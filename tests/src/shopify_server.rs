//! A local Shopify speaking the Admin API's wire format, for one store:
//! the GraphQL endpoint (`X-Shopify-Access-Token`, `data` with the query
//! cost in `extensions`, 401 `{"errors": "[API] Invalid API key or access
//! token …"}`, 429 with a fractional `Retry-After`, 5xx) and the token
//! endpoint for expiring offline tokens, whose refresh tokens rotate: each
//! refresh invalidates the one it used, and replaying it is refused.
//!
//! It also keeps the webhook subscriptions an app registers
//! (`webhookSubscriptionCreate`/`Delete`) and sends webhooks to them as
//! Shopify does: the REST JSON of the resource, `X-Shopify-Topic`,
//! `-Hmac-Sha256` (base64 HMAC-SHA256 of the body under the app's client
//! secret), `-Shop-Domain`, `-Webhook-Id`, `-Triggered-At`, `-API-Version`.
//!
//! It answers under `/{shop}/…`, so `INTEGRATION_SHOPIFY_URL` is
//! [`ShopifyServer::url`].

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

pub const SHOP: &str = "acme-test.myshopify.com";
pub const CLIENT_ID: &str = "app-client-id";
pub const CLIENT_SECRET: &str = "app-client-secret";
pub const SCOPES: &[&str] = &["read_products", "read_orders", "read_inventory"];

/// A failure the next GraphQL call answers with instead of its data.
#[derive(Clone, Debug)]
pub enum Trouble {
    /// 429 with this `Retry-After`, in seconds as Shopify writes it ("0.5").
    Throttled(&'static str),
    /// A 5xx.
    Down(u16),
}

struct Store {
    /// Access tokens Shopify accepts now.
    tokens: Mutex<HashSet<String>>,
    /// The one refresh token that works now.
    refresh_token: Mutex<String>,
    troubles: Mutex<VecDeque<Trouble>>,
    /// Every GraphQL call fails with this status, when set.
    always_down: Mutex<Option<u16>>,
    /// How long a refresh takes, to widen the window concurrent callers
    /// would race in.
    refresh_delay: Duration,
    graphql_calls: AtomicUsize,
    refreshes: AtomicUsize,
    issued: AtomicUsize,
    subscriptions: Mutex<Vec<Subscription>>,
    subscribed: AtomicUsize,
    catalog: Mutex<Catalog>,
    bucket: Mutex<Bucket>,
    /// `THROTTLED` answers given.
    throttled: AtomicUsize,
    /// GraphQL calls answered before every call fails with the status.
    down_after: Mutex<Option<(usize, u16)>>,
    /// Each page of products or orders answered: resource and cursor.
    pages_served: Mutex<Vec<(String, Option<String>)>>,
}

/// What the store holds, in the REST shape its webhooks carry, with when
/// each record last changed (a stale webhook never rolls it back).
#[derive(Default)]
struct Catalog {
    products: BTreeMap<i64, (Value, DateTime<Utc>)>,
    orders: BTreeMap<i64, (Value, DateTime<Utc>)>,
}

/// GraphQL Admin's leaky bucket of query cost points: a query whose
/// requested cost exceeds what is available is `THROTTLED`.
struct Bucket {
    maximum: f64,
    restore_rate: f64,
    available: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self) {
        let now = Instant::now();
        let restored = now.duration_since(self.at).as_secs_f64() * self.restore_rate;
        self.available = (self.available + restored).min(self.maximum);
        self.at = now;
    }
}

/// A webhook subscription an app registered.
#[derive(Clone, Debug)]
pub struct Subscription {
    /// `gid://shopify/WebhookSubscription/…`
    pub id: String,
    /// As webhooks name it: `orders/create`.
    pub topic: String,
    pub callback: String,
}

/// One webhook to send: the topic and the exact body, and what a test
/// wants different from a faithful delivery.
#[derive(Clone, Debug)]
pub struct Webhook {
    pub topic: String,
    pub body: String,
    /// Random when `None`; a repeated id is how Shopify retries.
    pub webhook_id: Option<String>,
    /// Now when `None`.
    pub triggered_at: Option<DateTime<Utc>>,
    /// [`CLIENT_SECRET`] when `None`.
    pub secret: Option<String>,
    /// [`SHOP`] when `None`.
    pub shop: Option<String>,
    /// Headers left out.
    pub without: Vec<&'static str>,
}

impl Webhook {
    pub fn new(topic: &str, body: Value) -> Self {
        Self {
            topic: topic.to_owned(),
            body: body.to_string(),
            webhook_id: None,
            triggered_at: None,
            secret: None,
            shop: None,
            without: Vec::new(),
        }
    }

    pub fn id(mut self, id: &str) -> Self {
        self.webhook_id = Some(id.to_owned());
        self
    }

    pub fn triggered_at(mut self, at: DateTime<Utc>) -> Self {
        self.triggered_at = Some(at);
        self
    }
}

/// The base64 HMAC-SHA256 Shopify signs a body with.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

pub struct ShopifyServer {
    /// `http://127.0.0.1:port/{shop}`
    pub url: String,
    store: Arc<Store>,
    task: tokio::task::JoinHandle<()>,
    /// Sends webhooks, reusing connections as Shopify does.
    http: reqwest::Client,
}

impl ShopifyServer {
    /// A store that accepts `admin_token`, and refreshes `refresh_token`
    /// for the app [`CLIENT_ID`].
    pub async fn start(admin_token: &str, refresh_token: &str, refresh_delay: Duration) -> Self {
        let store = Arc::new(Store {
            tokens: Mutex::new(HashSet::from([admin_token.to_owned()])),
            refresh_token: Mutex::new(refresh_token.to_owned()),
            troubles: Mutex::new(VecDeque::new()),
            always_down: Mutex::new(None),
            refresh_delay,
            graphql_calls: AtomicUsize::new(0),
            refreshes: AtomicUsize::new(0),
            issued: AtomicUsize::new(0),
            subscriptions: Mutex::new(Vec::new()),
            subscribed: AtomicUsize::new(0),
            catalog: Mutex::new(Catalog::default()),
            bucket: Mutex::new(Bucket {
                maximum: 2000.0,
                restore_rate: 100.0,
                available: 2000.0,
                at: Instant::now(),
            }),
            throttled: AtomicUsize::new(0),
            down_after: Mutex::new(None),
            pages_served: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/{shop}/admin/api/{version}/graphql.json", post(graphql))
            .route("/{shop}/admin/oauth/access_token", post(access_token))
            .with_state(store.clone());
        let (addr, task) = crate::local_server::serve(app, "the fake Shopify").await;
        Self {
            url: format!("http://{addr}/{{shop}}"),
            store,
            task,
            http: {
                outbound_http::tls::install();
                reqwest::Client::new()
            },
        }
    }

    /// The next GraphQL calls answer with these, in order.
    pub fn trouble_ahead(&self, troubles: Vec<Trouble>) {
        self.store.troubles.lock().unwrap().extend(troubles);
    }

    /// Every GraphQL call answers `status` from now on (`None`: recovered,
    /// also from [`Self::go_down_after`]).
    pub fn go_down(&self, status: Option<u16>) {
        *self.store.always_down.lock().unwrap() = status;
        if status.is_none() {
            *self.store.down_after.lock().unwrap() = None;
        }
    }

    /// Every access token issued so far stops working, as a lapsed or
    /// revoked one does.
    pub fn expire_access_tokens(&self) {
        self.store.tokens.lock().unwrap().clear();
    }

    /// Adds or replaces a product (its REST JSON) without telling anyone:
    /// as if its webhook was lost.
    pub fn put_product(&self, product: Value) {
        let id = product["id"].as_i64().expect("a product has an id");
        self.store
            .catalog
            .lock()
            .unwrap()
            .products
            .insert(id, (product, Utc::now()));
    }

    /// Deletes a product without telling anyone.
    pub fn remove_product(&self, id: i64) {
        self.store.catalog.lock().unwrap().products.remove(&id);
    }

    /// Adds or replaces an order (its REST JSON) without telling anyone.
    pub fn put_order(&self, order: Value) {
        let id = order["id"].as_i64().expect("an order has an id");
        self.store
            .catalog
            .lock()
            .unwrap()
            .orders
            .insert(id, (order, Utc::now()));
    }

    /// The products the store holds now, in their REST JSON, by id.
    pub fn products(&self) -> Vec<Value> {
        let catalog = self.store.catalog.lock().unwrap();
        catalog.products.values().map(|(p, _)| p.clone()).collect()
    }

    /// The orders the store holds now, in their REST JSON, by id.
    pub fn orders(&self) -> Vec<Value> {
        let catalog = self.store.catalog.lock().unwrap();
        catalog.orders.values().map(|(o, _)| o.clone()).collect()
    }

    /// The cost bucket's size and restore rate (points a second); full.
    pub fn set_cost_limit(&self, maximum: f64, restore_rate: f64) {
        let mut bucket = self.store.bucket.lock().unwrap();
        *bucket = Bucket {
            maximum,
            restore_rate,
            available: maximum,
            at: Instant::now(),
        };
    }

    /// Another app spent the whole bucket.
    pub fn drain_bucket(&self) {
        let mut bucket = self.store.bucket.lock().unwrap();
        bucket.available = 0.0;
        bucket.at = Instant::now();
    }

    /// `THROTTLED` answers given so far.
    pub fn throttled(&self) -> usize {
        self.store.throttled.load(Ordering::SeqCst)
    }

    /// After `calls` more GraphQL calls, every one answers `status`.
    pub fn go_down_after(&self, calls: usize, status: u16) {
        let at = self.graphql_calls() + calls;
        *self.store.down_after.lock().unwrap() = Some((at, status));
    }

    /// Each page of products or orders answered so far: the resource and
    /// the cursor it was read after.
    pub fn pages_served(&self) -> Vec<(String, Option<String>)> {
        self.store.pages_served.lock().unwrap().clone()
    }

    pub fn graphql_calls(&self) -> usize {
        self.store.graphql_calls.load(Ordering::SeqCst)
    }

    pub fn refreshes(&self) -> usize {
        self.store.refreshes.load(Ordering::SeqCst)
    }

    /// The webhook subscriptions registered now.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.store.subscriptions.lock().unwrap().clone()
    }

    /// Sends `webhook` as Shopify would, to the callback subscribed to its
    /// topic (the privacy topics, which need no subscription, go to any of
    /// the app's callbacks); the answer's status and body.
    pub async fn send(&self, webhook: &Webhook) -> (u16, String) {
        let callback = {
            let subscriptions = self.store.subscriptions.lock().unwrap();
            subscriptions
                .iter()
                .find(|s| s.topic == webhook.topic)
                .or_else(|| subscriptions.first())
                .map(|s| s.callback.clone())
                .expect("the app subscribed to webhooks")
        };
        self.send_to(&callback, webhook).await
    }

    /// Sends `webhook` to `url`, whatever is subscribed. A faithful one
    /// (Shopify's own secret and shop) first changes what the store holds,
    /// as the change it announces did.
    pub async fn send_to(&self, url: &str, webhook: &Webhook) -> (u16, String) {
        let secret = webhook.secret.as_deref().unwrap_or(CLIENT_SECRET);
        let triggered_at = webhook.triggered_at.unwrap_or_else(Utc::now);
        if webhook.secret.is_none() && webhook.shop.is_none() {
            self.store.catalog.lock().unwrap().apply(webhook, triggered_at);
        }
        let headers = [
            ("content-type", "application/json".to_owned()),
            ("x-shopify-topic", webhook.topic.clone()),
            ("x-shopify-hmac-sha256", signature(secret, webhook.body.as_bytes())),
            (
                "x-shopify-shop-domain",
                webhook.shop.clone().unwrap_or_else(|| SHOP.to_owned()),
            ),
            ("x-shopify-api-version", "2025-07".to_owned()),
            (
                "x-shopify-webhook-id",
                webhook
                    .webhook_id
                    .clone()
                    .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>())),
            ),
            (
                "x-shopify-triggered-at",
                triggered_at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            ),
        ];
        let mut request = self.http.post(url).body(webhook.body.clone());
        for (name, value) in headers {
            if !webhook.without.contains(&name) {
                request = request.header(name, value);
            }
        }
        let response = request.send().await.expect("the platform answers webhooks");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }
}

impl Drop for ShopifyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Catalog {
    fn apply(&mut self, webhook: &Webhook, at: DateTime<Utc>) {
        let Ok(body) = serde_json::from_str::<Value>(&webhook.body) else {
            return;
        };
        let Some(id) = body["id"].as_i64() else {
            return;
        };
        let records = match webhook.topic.split('/').next() {
            Some("products") => &mut self.products,
            Some("orders") => &mut self.orders,
            _ => return,
        };
        if records.get(&id).is_some_and(|(_, stored)| *stored > at) {
            return;
        }
        if webhook.topic == "products/delete" {
            records.remove(&id);
        } else {
            records.insert(id, (body, at));
        }
    }
}

fn errors(status: StatusCode, errors: Value) -> Response {
    (status, Json(json!({ "errors": errors }))).into_response()
}

async fn graphql(
    State(store): State<Arc<Store>>,
    Path((shop, _version)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    store.graphql_calls.fetch_add(1, Ordering::SeqCst);
    if shop != SHOP {
        return errors(StatusCode::NOT_FOUND, json!("Not Found"));
    }
    let token = headers
        .get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !store.tokens.lock().unwrap().contains(token) {
        return errors(
            StatusCode::UNAUTHORIZED,
            json!("[API] Invalid API key or access token (unrecognized login or wrong password)"),
        );
    }
    let down_after = store
        .down_after
        .lock()
        .unwrap()
        .filter(|(at, _)| store.graphql_calls.load(Ordering::SeqCst) > *at)
        .map(|(_, status)| status);
    if let Some(status) = (*store.always_down.lock().unwrap()).or(down_after) {
        return errors(StatusCode::from_u16(status).unwrap(), json!("Internal Server Error"));
    }
    let trouble = store.troubles.lock().unwrap().pop_front();
    match trouble {
        Some(Trouble::Throttled(after)) => {
            let mut response = errors(
                StatusCode::TOO_MANY_REQUESTS,
                json!(
                    "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."
                ),
            );
            response.headers_mut().insert("retry-after", after.parse().unwrap());
            return response;
        }
        Some(Trouble::Down(status)) => {
            return errors(StatusCode::from_u16(status).unwrap(), json!("Service Unavailable"));
        }
        None => {}
    }
    let query = body["query"].as_str().unwrap_or_default();
    let variables = &body["variables"];
    if query.contains("products(") || query.contains("product(") || query.contains("orders(") {
        return read_catalog(&store, query, variables);
    }
    let data = if query.contains("webhookSubscriptionCreate") {
        subscribe(&store, &body["variables"])
    } else if query.contains("webhookSubscriptionDelete") {
        unsubscribe(&store, &body["variables"])
    } else if query.contains("accessScopes") {
        let handles: Vec<Value> = SCOPES.iter().map(|s| json!({ "handle": s })).collect();
        json!({"shop": {"name": "Acme Test"}, "currentAppInstallation": {"accessScopes": handles}})
    } else {
        return errors(StatusCode::OK, json!([{"message": "unknown query"}]));
    };
    Json(json!({
        "data": data,
        "extensions": {"cost": {"requestedQueryCost": 10, "actualQueryCost": 10,
            "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1990, "restoreRate": 100.0}}}
    }))
    .into_response()
}

/// A page of products, of one product's variants, or of orders. As
/// Shopify does, a query runs only when the bucket holds its requested
/// cost (from the page sizes asked for), and is then charged its actual
/// cost (from the nodes it returned).
fn read_catalog(store: &Store, query: &str, variables: &Value) -> Response {
    let first = variables["first"].as_u64().unwrap_or(10).clamp(1, 250) as usize;
    let nested = variables["variants"]
        .as_u64()
        .or(variables["lineItems"].as_u64())
        .unwrap_or(0) as usize;
    let requested = 2.0 + (first * (1 + nested)) as f64;
    let throttle_status = |bucket: &Bucket| {
        json!({"maximumAvailable": bucket.maximum, "currentlyAvailable": bucket.available,
            "restoreRate": bucket.restore_rate})
    };
    {
        let mut bucket = store.bucket.lock().unwrap();
        bucket.refill();
        if requested > bucket.available {
            store.throttled.fetch_add(1, Ordering::SeqCst);
            return Json(json!({
                "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED",
                    "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": null,
                    "throttleStatus": throttle_status(&bucket)}},
            }))
            .into_response();
        }
    }
    let data = catalog_page(store, query, variables, first, nested);
    let actual = 2.0 + count_nodes(&data) as f64;
    let mut bucket = store.bucket.lock().unwrap();
    bucket.available -= actual;
    let cost = json!({"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
        "throttleStatus": throttle_status(&bucket)}});
    Json(json!({"data": data, "extensions": cost})).into_response()
}

/// Every object under a `nodes` list, nested ones included.
fn count_nodes(value: &Value) -> usize {
    match value {
        Value::Object(fields) => fields
            .iter()
            .map(|(key, v)| match (key.as_str(), v) {
                ("nodes", Value::Array(nodes)) => nodes.len() + nodes.iter().map(count_nodes).sum::<usize>(),
                _ => count_nodes(v),
            })
            .sum(),
        Value::Array(items) => items.iter().map(count_nodes).sum(),
        _ => 0,
    }
}

fn catalog_page(store: &Store, query: &str, variables: &Value, first: usize, nested: usize) -> Value {
    let after = variables["after"].as_str().map(str::to_owned);
    let catalog = store.catalog.lock().unwrap();
    if query.contains("product(") {
        let id: i64 = variables["id"]
            .as_str()
            .and_then(|gid| gid.rsplit('/').next())
            .and_then(|id| id.parse().ok())
            .unwrap_or_default();
        let variants = catalog.products.get(&id).map(|(p, _)| p["variants"].clone());
        return json!({"product": variants.map(|v| json!({"variants": variant_page(&v, after.as_deref(), first)}))});
    }
    let (resource, records) = match query.contains("orders(") {
        true => ("orders", &catalog.orders),
        false => ("products", &catalog.products),
    };
    store
        .pages_served
        .lock()
        .unwrap()
        .push((resource.to_owned(), after.clone()));
    let start = after.and_then(|c| c.strip_prefix("after:")?.parse::<i64>().ok());
    let mut rest = records
        .range(start.map_or(i64::MIN, |s| s.saturating_add(1))..)
        .map(|(id, (record, _))| (*id, record));
    let page: Vec<(i64, &Value)> = rest.by_ref().take(first).collect();
    let more = rest.next().is_some();
    let nodes: Vec<Value> = page
        .iter()
        .map(|(_, record)| match resource {
            "orders" => order_node(record, nested),
            _ => product_node(record, nested),
        })
        .collect();
    let end = page.last().map(|(id, _)| format!("after:{id}"));
    json!({ resource: {"pageInfo": {"hasNextPage": more, "endCursor": end}, "nodes": nodes} })
}

fn legacy(id: &Value) -> Value {
    id.as_i64().map_or(Value::Null, |id| json!(id.to_string()))
}

fn upper(value: &Value) -> Value {
    value.as_str().map_or(Value::Null, |s| json!(s.to_ascii_uppercase()))
}

/// A page of a product's variants after the cursor (`after:<index>`).
fn variant_page(variants: &Value, after: Option<&str>, first: usize) -> Value {
    let all = variants.as_array().cloned().unwrap_or_default();
    let start = after
        .and_then(|c| c.strip_prefix("after:")?.parse::<usize>().ok())
        .map_or(0, |i| i + 1);
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(first)
        .map(|v| {
            json!({"legacyResourceId": legacy(&v["id"]), "title": v["title"], "sku": v["sku"], "price": v["price"],
                "inventoryQuantity": v["inventory_quantity"],
                "inventoryItem": {"legacyResourceId": legacy(&v["inventory_item_id"])}})
        })
        .collect();
    let end = start + page.len();
    // The cursor after a page is its last variant's index; an empty page has none.
    let cursor = (end > start).then(|| format!("after:{}", end - 1));
    json!({"pageInfo": {"hasNextPage": end < all.len(), "endCursor": cursor}, "nodes": page})
}

/// A product's REST JSON as a GraphQL node.
fn product_node(product: &Value, variants: usize) -> Value {
    json!({
        "id": format!("gid://shopify/Product/{}", product["id"]),
        "legacyResourceId": legacy(&product["id"]),
        "title": product["title"], "descriptionHtml": product["body_html"], "handle": product["handle"],
        "status": upper(&product["status"]), "updatedAt": product["updated_at"],
        "variants": variant_page(&product["variants"], None, variants),
    })
}

/// An order's REST JSON as a GraphQL node.
fn order_node(order: &Value, line_items: usize) -> Value {
    let fulfillment = match order["fulfillment_status"].as_str() {
        None => json!("UNFULFILLED"),
        Some("partial") => json!("PARTIALLY_FULFILLED"),
        Some(other) => json!(other.to_ascii_uppercase()),
    };
    let fulfillments: Vec<Value> = order["fulfillments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let numbers = f["tracking_numbers"].as_array().cloned().unwrap_or_default();
            let urls = f["tracking_urls"].as_array().cloned().unwrap_or_default();
            let info: Vec<Value> = numbers
                .iter()
                .enumerate()
                .map(|(i, number)| json!({"number": number, "company": f["tracking_company"], "url": urls.get(i)}))
                .collect();
            json!({ "trackingInfo": info })
        })
        .collect();
    let items: Vec<Value> = order["line_items"]
        .as_array()
        .into_iter()
        .flatten()
        .take(line_items)
        .map(|l| json!({"title": l["title"], "quantity": l["quantity"]}))
        .collect();
    json!({
        "legacyResourceId": legacy(&order["id"]), "name": order["name"], "email": order["email"],
        "customer": order["customer"].as_object().map(|c| json!({"legacyResourceId": legacy(&c["id"]), "email": c["email"]})),
        "displayFinancialStatus": upper(&order["financial_status"]), "displayFulfillmentStatus": fulfillment,
        "totalPriceSet": {"shopMoney": {"amount": order["total_price"], "currencyCode": order["currency"]}},
        "lineItems": {"nodes": items}, "fulfillments": fulfillments,
        "createdAt": order["created_at"], "updatedAt": order["updated_at"], "cancelledAt": order["cancelled_at"],
    })
}

fn subscribe(store: &Store, variables: &Value) -> Value {
    let topic = variables["topic"].as_str().unwrap_or_default();
    let callback = variables["subscription"]["callbackUrl"].as_str().unwrap_or_default();
    if topic.is_empty() || !callback.starts_with("http") {
        return json!({"webhookSubscriptionCreate": {"webhookSubscription": null,
            "userErrors": [{"field": ["webhookSubscription", "callbackUrl"], "message": "Address is invalid"}]}});
    }
    let n = store.subscribed.fetch_add(1, Ordering::SeqCst) + 1;
    let subscription = Subscription {
        id: format!("gid://shopify/WebhookSubscription/{n}"),
        // INVENTORY_LEVELS_UPDATE is inventory_levels/update.
        topic: match topic.to_ascii_lowercase().rsplit_once('_') {
            Some((resource, action)) => format!("{resource}/{action}"),
            None => topic.to_ascii_lowercase(),
        },
        callback: callback.to_owned(),
    };
    let id = subscription.id.clone();
    store.subscriptions.lock().unwrap().push(subscription);
    json!({"webhookSubscriptionCreate": {"webhookSubscription": {"id": id}, "userErrors": []}})
}

fn unsubscribe(store: &Store, variables: &Value) -> Value {
    let id = variables["id"].as_str().unwrap_or_default();
    let mut subscriptions = store.subscriptions.lock().unwrap();
    let before = subscriptions.len();
    subscriptions.retain(|s| s.id != id);
    if subscriptions.len() == before {
        return json!({"webhookSubscriptionDelete": {"deletedWebhookSubscriptionId": null,
            "userErrors": [{"field": ["id"], "message": "Webhook subscription does not exist"}]}});
    }
    json!({"webhookSubscriptionDelete": {"deletedWebhookSubscriptionId": id, "userErrors": []}})
}

async fn access_token(State(store): State<Arc<Store>>, Json(body): Json<Value>) -> Response {
    tokio::time::sleep(store.refresh_delay).await;
    let refused = |description: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request", "error_description": description})),
        )
            .into_response()
    };
    if body["client_id"] != CLIENT_ID || body["client_secret"] != CLIENT_SECRET {
        return refused("invalid client credentials");
    }
    if body["grant_type"] != "refresh_token" {
        return refused("unsupported grant_type");
    }
    let mut current = store.refresh_token.lock().unwrap();
    if body["refresh_token"] != current.as_str() {
        return refused("the refresh token is invalid or was already used");
    }
    store.refreshes.fetch_add(1, Ordering::SeqCst);
    let n = store.issued.fetch_add(1, Ordering::SeqCst);
    let access_token = format!("shpat_expiring_{n}");
    *current = format!("shprt_rotated_{n}");
    store.tokens.lock().unwrap().insert(access_token.clone());
    Json(json!({
        "access_token": access_token,
        "expires_in": 3600,
        "refresh_token": current.clone(),
        "refresh_token_expires_in": 7_776_000,
        "scope": SCOPES.join(","),
    }))
    .into_response()
}
