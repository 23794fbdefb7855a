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
    collections::{HashSet, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
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
        }
    }

    /// The next GraphQL calls answer with these, in order.
    pub fn trouble_ahead(&self, troubles: Vec<Trouble>) {
        self.store.troubles.lock().unwrap().extend(troubles);
    }

    /// Every GraphQL call answers `status` from now on (`None`: recovered).
    pub fn go_down(&self, status: Option<u16>) {
        *self.store.always_down.lock().unwrap() = status;
    }

    /// Every access token issued so far stops working, as a lapsed or
    /// revoked one does.
    pub fn expire_access_tokens(&self) {
        self.store.tokens.lock().unwrap().clear();
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

    /// Sends `webhook` to `url`, whatever is subscribed.
    pub async fn send_to(&self, url: &str, webhook: &Webhook) -> (u16, String) {
        let secret = webhook.secret.as_deref().unwrap_or(CLIENT_SECRET);
        let triggered_at = webhook.triggered_at.unwrap_or_else(Utc::now);
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
        let mut request = reqwest::Client::new().post(url).body(webhook.body.clone());
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
    if let Some(status) = *store.always_down.lock().unwrap() {
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
