//! A local Shopify speaking the Admin API's wire format, for one store:
//! the GraphQL endpoint (`X-Shopify-Access-Token`, `data` with the query
//! cost in `extensions`, 401 `{"errors": "[API] Invalid API key or access
//! token …"}`, 429 with a fractional `Retry-After`, 5xx) and the token
//! endpoint for expiring offline tokens, whose refresh tokens rotate: each
//! refresh invalidates the one it used, and replaying it is refused.
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
use serde_json::{Value, json};

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
    if !body["query"].as_str().unwrap_or_default().contains("accessScopes") {
        return errors(StatusCode::OK, json!([{"message": "unknown query"}]));
    }
    let handles: Vec<Value> = SCOPES.iter().map(|s| json!({ "handle": s })).collect();
    Json(json!({
        "data": {"shop": {"name": "Acme Test"}, "currentAppInstallation": {"accessScopes": handles}},
        "extensions": {"cost": {"requestedQueryCost": 2, "actualQueryCost": 2,
            "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1998, "restoreRate": 100.0}}}
    }))
    .into_response()
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
