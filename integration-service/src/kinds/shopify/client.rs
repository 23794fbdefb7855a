//! Shopify's Admin API as the platform calls it: one GraphQL query that
//! reads the scopes a token grants, webhook subscriptions, and the token
//! endpoint that refreshes an expiring token. Calls go through the vendor
//! policy (retries, `Retry-After`, a breaker per connection); GraphQL's own
//! throttling (`THROTTLED` in a 200 answer) waits as long as the cost
//! bucket needs.

use std::time::Duration;

use chrono::Utc;
use outbound_http::{
    body::read_bounded,
    policy::{CallError, CallPolicy},
};
use serde_json::{Value, json};

use super::{
    Refresh, ShopifyCredentials, ShopifySettings, catalog_pages as pages,
    payloads::{Order, Product},
};

const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// GraphQL `THROTTLED` answers waited out before giving up.
const THROTTLED_RETRIES: u32 = 3;
const CONNECTION_QUERY: &str = "query Connection { shop { name } currentAppInstallation { accessScopes { handle } } }";

/// Why a call to Shopify did not give what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ShopifyError {
    /// The access token is not (or no longer) accepted.
    #[error("Shopify refused the access token: {0}")]
    Unauthorized(String),
    #[error("Shopify refused: {0}")]
    Refused(String),
    #[error("Shopify could not be reached: {0}")]
    Unreachable(CallError),
}

/// A client of Shopify's Admin API.
#[derive(Clone)]
pub struct Shopify {
    http: reqwest::Client,
    policy: CallPolicy,
    /// `https://{shop}`: where a store's API is, `{shop}` its domain.
    url: String,
}

/// One GraphQL call: which connection's breaker it goes through, the
/// store and its token.
pub struct Caller<'a> {
    pub connection: &'a str,
    pub settings: &'a ShopifySettings,
    pub access_token: &'a str,
}

const SUBSCRIBE: &str = "mutation Subscribe($topic: WebhookSubscriptionTopic!, $subscription: WebhookSubscriptionInput!) { \
    webhookSubscriptionCreate(topic: $topic, webhookSubscription: $subscription) { \
    webhookSubscription { id } userErrors { field message } } }";
const UNSUBSCRIBE: &str = "mutation Unsubscribe($id: ID!) { \
    webhookSubscriptionDelete(id: $id) { deletedWebhookSubscriptionId userErrors { field message } } }";

impl Shopify {
    pub fn new(http: reqwest::Client, policy: CallPolicy, url: String) -> Self {
        Self { http, policy, url }
    }

    fn base(&self, settings: &ShopifySettings) -> String {
        self.url.replace("{shop}", &settings.shop)
    }

    /// The scopes the token grants, from one query.
    pub async fn granted_scopes(&self, caller: &Caller<'_>) -> Result<Vec<String>, ShopifyError> {
        let data = self.graphql(caller, CONNECTION_QUERY, Value::Null).await?;
        let scopes = data["currentAppInstallation"]["accessScopes"]
            .as_array()
            .map(|scopes| {
                scopes
                    .iter()
                    .filter_map(|s| s["handle"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(scopes)
    }

    /// Subscribes `callback` to `topic` (`orders/create`); the
    /// subscription's id, to unsubscribe with.
    pub async fn subscribe(&self, caller: &Caller<'_>, topic: &str, callback: &str) -> Result<String, ShopifyError> {
        let variables = json!({
            "topic": topic.replace('/', "_").to_ascii_uppercase(),
            "subscription": { "callbackUrl": callback, "format": "JSON" },
        });
        let data = self.graphql(caller, SUBSCRIBE, variables).await?;
        let created = &data["webhookSubscriptionCreate"];
        user_errors(created)?;
        created["webhookSubscription"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ShopifyError::Refused(format!("subscribing to {topic} gave no subscription id")))
    }

    /// Removes a subscription; one already gone counts as removed.
    pub async fn unsubscribe(&self, caller: &Caller<'_>, id: &str) -> Result<(), ShopifyError> {
        let data = self.graphql(caller, UNSUBSCRIBE, json!({ "id": id })).await?;
        match user_errors(&data["webhookSubscriptionDelete"]) {
            Err(ShopifyError::Refused(reason)) if reason.contains("not exist") || reason.contains("not found") => {
                Ok(())
            }
            outcome => outcome,
        }
    }

    /// One page of the store's products, each complete with its variants.
    pub async fn products_page(&self, caller: &Caller<'_>, after: Option<&str>) -> Result<Page<Product>, ShopifyError> {
        let variables = pages::page_variables(
            after,
            pages::PRODUCTS_PER_PAGE,
            ("variants", pages::VARIANTS_PER_PRODUCT),
        );
        let (data, mut pause) = self.graphql_paced(caller, &pages::products_query(), variables).await?;
        let nodes = connection(&data["products"])?;
        let mut items = Vec::with_capacity(nodes.nodes.len());
        for node in nodes.nodes.iter().cloned() {
            let read = match pages::product(node) {
                Ok(read) => read,
                Err(reason) => {
                    items.push(Err(reason));
                    continue;
                }
            };
            let mut product = read.product;
            if let Some((gid, cursor)) = read.more_variants {
                pause = self.rest_of_variants(caller, &gid, cursor, &mut product, pause).await?;
            }
            items.push(Ok(product));
        }
        Ok(Page {
            items,
            next: nodes.next(),
            pause,
        })
    }

    /// Reads a product's variants after `cursor` into it.
    async fn rest_of_variants(
        &self,
        caller: &Caller<'_>,
        gid: &str,
        mut cursor: String,
        product: &mut Product,
        mut pause: Option<Duration>,
    ) -> Result<Option<Duration>, ShopifyError> {
        loop {
            if let Some(wait) = pause {
                tokio::time::sleep(wait).await;
            }
            let variables = json!({ "id": gid, "first": pages::VARIANTS_PER_FOLLOW_UP, "after": cursor });
            let (data, next_pause) = self.graphql_paced(caller, &pages::variants_query(), variables).await?;
            pause = next_pause;
            let nodes = connection(&data["product"]["variants"])?;
            let next = nodes.next();
            product
                .variants
                .extend(pages::variants(nodes.nodes).map_err(ShopifyError::Refused)?);
            match next {
                Some(after) => cursor = after,
                None => return Ok(pause),
            }
        }
    }

    /// One page of the store's orders, as summaries.
    pub async fn orders_page(&self, caller: &Caller<'_>, after: Option<&str>) -> Result<Page<Order>, ShopifyError> {
        let variables = pages::page_variables(
            after,
            pages::ORDERS_PER_PAGE,
            ("lineItems", pages::LINE_ITEMS_PER_ORDER),
        );
        let (data, pause) = self.graphql_paced(caller, pages::ORDERS_QUERY, variables).await?;
        let nodes = connection(&data["orders"])?;
        let next = nodes.next();
        Ok(Page {
            items: nodes.nodes.into_iter().map(pages::order).collect(),
            next,
            pause,
        })
    }

    /// One GraphQL call; its data, and how long to wait before the next
    /// call of the same cost so that the bucket holds enough for it.
    async fn graphql_paced(
        &self,
        caller: &Caller<'_>,
        query: &str,
        variables: Value,
    ) -> Result<(Value, Option<Duration>), ShopifyError> {
        let answer = self.graphql_answer(caller, query, variables).await?;
        Ok((answer["data"].clone(), pause_for(&answer)))
    }

    /// One GraphQL call's data.
    async fn graphql(&self, caller: &Caller<'_>, query: &str, variables: Value) -> Result<Value, ShopifyError> {
        Ok(self.graphql_answer(caller, query, variables).await?["data"].take())
    }

    /// One GraphQL call, waiting out `THROTTLED` answers as the cost
    /// bucket says; the whole answer.
    async fn graphql_answer(&self, caller: &Caller<'_>, query: &str, variables: Value) -> Result<Value, ShopifyError> {
        let url = format!(
            "{}/admin/api/{}/graphql.json",
            self.base(caller.settings),
            caller.settings.api_version
        );
        let body = match variables {
            Value::Null => json!({ "query": query }),
            variables => json!({ "query": query, "variables": variables }),
        };
        for _ in 0..=THROTTLED_RETRIES {
            let request = || {
                self.http
                    .post(&url)
                    .header("X-Shopify-Access-Token", caller.access_token)
                    .json(&body)
            };
            let (status, parsed) = self.call(caller.connection, request).await?;
            if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
                return Err(ShopifyError::Unauthorized(error_text(&parsed, status)));
            }
            if !status.is_success() {
                return Err(ShopifyError::Refused(error_text(&parsed, status)));
            }
            match throttled_for(&parsed) {
                Some(wait) => tokio::time::sleep(wait).await,
                None if parsed["errors"].is_array() => return Err(ShopifyError::Refused(error_text(&parsed, status))),
                None => return Ok(parsed),
            }
        }
        Err(ShopifyError::Refused("the query stayed throttled".into()))
    }

    /// One call through the vendor policy; the answer's status and its
    /// JSON body (`null` when it is not JSON).
    async fn call(
        &self,
        connection: &str,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, Value), ShopifyError> {
        let answer = self
            .policy
            .send(connection, request)
            .await
            .map_err(ShopifyError::Unreachable)?;
        let status = answer.status();
        let body = read_bounded(answer, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| ShopifyError::Refused(e.to_string()))?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// Exchanges the refresh token for a new access token (and a new
    /// refresh token: the old one stops working).
    pub async fn refresh(
        &self,
        connection: &str,
        settings: &ShopifySettings,
        credentials: &ShopifyCredentials,
    ) -> Result<ShopifyCredentials, ShopifyError> {
        let (Some(refresh), Some(client_secret)) = (&credentials.refresh, &credentials.client_secret) else {
            return Err(ShopifyError::Unauthorized(
                "the connection has no refresh token to renew its access token with".into(),
            ));
        };
        let url = format!("{}/admin/oauth/access_token", self.base(settings));
        let body = json!({
            "client_id": refresh.client_id,
            "client_secret": client_secret,
            "grant_type": "refresh_token",
            "refresh_token": refresh.refresh_token,
        });
        let (status, parsed) = self.call(connection, || self.http.post(&url).json(&body)).await?;
        if status.is_client_error() {
            return Err(ShopifyError::Unauthorized(error_text(&parsed, status)));
        }
        if !status.is_success() {
            return Err(ShopifyError::Refused(error_text(&parsed, status)));
        }
        let token = |key: &str| parsed[key].as_str().filter(|t| !t.is_empty()).map(str::to_owned);
        let (Some(access_token), Some(refresh_token)) = (token("access_token"), token("refresh_token")) else {
            return Err(ShopifyError::Refused("the refresh answer has no tokens".into()));
        };
        let lifetime = parsed["expires_in"].as_i64().unwrap_or(0).max(0);
        Ok(ShopifyCredentials {
            access_token,
            refresh: Some(Refresh {
                client_id: refresh.client_id.clone(),
                refresh_token,
                expires_at: Utc::now() + chrono::Duration::seconds(lifetime),
            }),
            ..credentials.clone()
        })
    }
}

/// One page of a resource: each item read (or why it could not be), the
/// cursor to go on from, and the pause the cost bucket asks for first.
pub struct Page<T> {
    pub items: Vec<Result<T, String>>,
    pub next: Option<String>,
    pub pause: Option<Duration>,
}

fn connection(value: &Value) -> Result<pages::Nodes, ShopifyError> {
    serde_json::from_value(value.clone()).map_err(|e| ShopifyError::Refused(format!("the page does not read: {e}")))
}

/// The wait before another query of the same cost fits the bucket: the
/// cost less what is left, at the restore rate.
fn pause_for(answer: &Value) -> Option<Duration> {
    let cost = &answer["extensions"]["cost"];
    let needed = cost["requestedQueryCost"].as_f64()?;
    let status = &cost["throttleStatus"];
    let available = status["currentlyAvailable"].as_f64()?;
    let rate = status["restoreRate"].as_f64().filter(|r| *r > 0.0)?;
    (available < needed).then(|| refill_time(needed, available, rate))
}

/// A mutation's `userErrors`, as one refusal.
fn user_errors(payload: &Value) -> Result<(), ShopifyError> {
    let messages: Vec<&str> = payload["userErrors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["message"].as_str()).collect())
        .unwrap_or_default();
    match messages.is_empty() {
        true => Ok(()),
        false => Err(ShopifyError::Refused(messages.join("; "))),
    }
}

/// How long a `THROTTLED` answer asks to wait: until the bucket holds the
/// query's cost again.
fn throttled_for(answer: &Value) -> Option<Duration> {
    let throttled = answer["errors"]
        .as_array()?
        .iter()
        .any(|e| e["extensions"]["code"] == "THROTTLED");
    if !throttled {
        return None;
    }
    let cost = &answer["extensions"]["cost"];
    let needed = cost["requestedQueryCost"].as_f64().unwrap_or(1.0);
    let available = cost["throttleStatus"]["currentlyAvailable"].as_f64().unwrap_or(0.0);
    let rate = cost["throttleStatus"]["restoreRate"]
        .as_f64()
        .filter(|r| *r > 0.0)
        .unwrap_or(50.0);
    Some(refill_time(needed, available, rate).max(Duration::from_millis(50)))
}

/// How long the bucket takes to hold `needed` points again, a little over
/// so that it surely does when the next call lands.
fn refill_time(needed: f64, available: f64, rate: f64) -> Duration {
    let margin = Duration::from_millis(10);
    Duration::from_secs_f64(((needed - available).max(0.0) / rate).min(10.0)) + margin
}

/// Shopify's explanation: `errors` as a string, a list of messages, or an
/// OAuth `error_description`, after the HTTP status when it is a failure
/// (a 502's body rarely says it was a 502).
fn error_text(answer: &Value, status: reqwest::StatusCode) -> String {
    let text = match &answer["errors"] {
        Value::String(text) => Some(text.clone()),
        Value::Array(errors) => Some(
            errors
                .iter()
                .filter_map(|e| e["message"].as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => answer["error_description"]
            .as_str()
            .or_else(|| answer["error"].as_str())
            .map(str::to_owned),
    };
    let text: String = text.unwrap_or_default().chars().take(300).collect();
    match (status.is_success(), text.is_empty()) {
        (_, true) => format!("HTTP {status}"),
        (true, false) => text,
        (false, false) => format!("HTTP {status}: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_query_waits_for_its_cost_to_come_back() {
        let answer = json!({
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": {"cost": {"requestedQueryCost": 102, "throttleStatus":
                {"maximumAvailable": 2000.0, "currentlyAvailable": 2, "restoreRate": 100.0}}}
        });
        assert_eq!(throttled_for(&answer), Some(Duration::from_millis(1010)));
        assert_eq!(throttled_for(&json!({"data": {}})), None);
    }

    #[test]
    fn a_page_waits_until_the_bucket_holds_the_next_pages_cost() {
        let answer = |available: f64| {
            json!({"data": {}, "extensions": {"cost": {"requestedQueryCost": 500, "actualQueryCost": 400,
                "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": available, "restoreRate": 50.0}}}})
        };
        assert_eq!(pause_for(&answer(600.0)), None);
        assert_eq!(pause_for(&answer(400.0)), Some(Duration::from_millis(2010)));
        assert_eq!(pause_for(&json!({"data": {}})), None);
    }

    #[test]
    fn shopifys_errors_are_read_in_each_of_its_shapes() {
        let status = reqwest::StatusCode::UNAUTHORIZED;
        assert_eq!(
            error_text(&json!({"errors": "[API] Invalid API key or access token"}), status),
            "HTTP 401 Unauthorized: [API] Invalid API key or access token"
        );
        assert_eq!(
            error_text(
                &json!({"errors": [{"message": "a"}, {"message": "b"}]}),
                reqwest::StatusCode::OK
            ),
            "a; b"
        );
        assert_eq!(
            error_text(
                &json!({"error": "invalid_grant", "error_description": "expired"}),
                reqwest::StatusCode::BAD_REQUEST
            ),
            "HTTP 400 Bad Request: expired"
        );
        assert_eq!(error_text(&Value::Null, status), "HTTP 401 Unauthorized");
    }
}
