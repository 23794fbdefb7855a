//! What every operation shares: problem responses (RFC 9457), response
//! headers, common parameters, the security schemes with the gateway's
//! real OAuth endpoints and scopes, and the webhooks the platform sends.

use serde_json::{Map, Value, json};

use crate::{api_version, auth::scopes};

/// A success body as JSON and, with `?format=xml` or `Accept:
/// application/xml`, the same document as XML.
pub fn json_and_xml(schema: Value) -> Value {
    json!({
        "application/json": {"schema": schema},
        "application/xml": {"schema": schema},
    })
}

/// Who may call a route that needs `scope`.
pub fn security_for(scope: &str) -> Value {
    json!([{"ApiKey": []}, {"Bearer": []}, {"OAuth2": [scope]}])
}

/// The headers on every response of the API.
pub fn api_headers() -> Value {
    json!({
        "X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"},
        "RateLimit-Limit": {"$ref": "#/components/headers/RateLimit-Limit"},
        "RateLimit-Remaining": {"$ref": "#/components/headers/RateLimit-Remaining"},
        "RateLimit-Reset": {"$ref": "#/components/headers/RateLimit-Reset"},
    })
}

/// (status, when) of each problem a route of a kind can answer.
fn problem_statuses(kind: &str) -> &'static [u16] {
    match kind {
        // Authenticated, scoped, rate-limited, transcoded, called upstream.
        "api" => &[400, 401, 403, 404, 409, 413, 422, 429, 500, 501, 503, 504],
        // Another system's webhook: the service checks its signature.
        "hooks" => &[400, 401, 404, 409, 413, 422, 429, 500, 503, 504],
        // The operator's API.
        _ => &[400, 401, 404, 413, 429, 500, 503, 504],
    }
}

/// References to the problem responses of a route of `kind`.
pub fn problems(kind: &str) -> Value {
    let map: Map<String, Value> = problem_statuses(kind)
        .iter()
        .map(|status| {
            let reference = json!({"$ref": format!("#/components/responses/Problem{status}")});
            (status.to_string(), reference)
        })
        .collect();
    Value::Object(map)
}

fn problem_reason(status: u16) -> &'static str {
    match status {
        400 => {
            "The request is malformed: a body that is not JSON, an unknown field or query parameter, a value out of range. `field` names the culprit when there is one."
        }
        401 => "No credentials, or ones that are invalid, expired or revoked.",
        403 => "The credentials lack the route's scope.",
        404 => "No such resource in the caller's workspace (another workspace's resource is not found either).",
        409 => "The request conflicts with the resource's state (a duplicate, or a retried request still in progress).",
        413 => "The body is larger than the gateway accepts.",
        422 => {
            "A system the request names refused it (a database turning down credentials, say), with that system's reason."
        }
        429 => "A rate limit: retry after `Retry-After` seconds.",
        500 => "An internal error; the request id finds it in the logs.",
        501 => "Not implemented by the service behind the route.",
        503 => "The service behind the route is unavailable (or its circuit is open): retry after `Retry-After`.",
        504 => "The service behind the route did not answer in time.",
        _ => "A problem.",
    }
}

/// The problem responses, the problem document and the OAuth error.
fn responses() -> Value {
    let mut responses = Map::new();
    for status in problem_statuses("api")
        .iter()
        .chain(problem_statuses("hooks"))
        .chain(problem_statuses("admin"))
    {
        let mut headers = api_headers();
        if matches!(status, 429 | 503) {
            headers["Retry-After"] = json!({"$ref": "#/components/headers/Retry-After"});
        }
        if *status == 401 {
            headers["WWW-Authenticate"] = json!({"schema": {"type": "string"}});
        }
        responses.insert(
            format!("Problem{status}"),
            json!({
                "description": problem_reason(*status),
                "headers": headers,
                "content": {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}},
                    "application/problem+xml": {"schema": {"$ref": "#/components/schemas/Problem"}},
                }
            }),
        );
    }
    responses.insert(
        "OAuthError".into(),
        json!({
            "description": "An OAuth 2.0 error (RFC 6749 section 5.2).",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/gateway.OAuthError"}}}
        }),
    );
    Value::Object(responses)
}

/// The RFC 9457 problem document every error of the API is.
fn problem_schema() -> Value {
    json!({
        "type": "object",
        "required": ["type", "title", "status", "detail", "instance", "request_id"],
        "properties": {
            "type": {"type": "string", "format": "uri", "description": "Names the kind of problem; its page explains it."},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string", "description": "What went wrong with this request."},
            "instance": {"type": "string", "description": "The request's path."},
            "request_id": {"type": "string"},
            "field": {"type": "string", "description": "The request field at fault, when there is one."}
        }
    })
}

fn parameters() -> Value {
    json!({
        "Format": {
            "name": "format", "in": "query", "required": false,
            "description": "`xml` for the reply as XML (as `Accept: application/xml` asks); JSON otherwise.",
            "schema": {"type": "string", "enum": ["json", "xml"]}
        },
        "ApiVersion": {
            "name": api_version::HEADER, "in": "header", "required": false,
            "description": "The API version the client was written for; the newest when absent.",
            "schema": {"type": "string", "enum": api_version::SUPPORTED}
        },
        "IdempotencyKey": {
            "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "A key of the client's choosing: a retried request with the same key is done once and gets the first one's answer.",
            "schema": {"type": "string", "maxLength": 255}
        },
        "Limit": {
            "name": "limit", "in": "query", "required": false,
            "description": "1..100, default 20.",
            "schema": {"type": "integer", "format": "int32"}
        },
        "Cursor": {
            "name": "cursor", "in": "query", "required": false,
            "description": "`next_cursor` of the previous page.",
            "schema": {"type": "string"}
        }
    })
}

fn headers() -> Value {
    let integer = json!({"type": "integer", "minimum": 0});
    json!({
        "X-Request-Id": {"description": "The request's id: the client's own `X-Request-Id` when it sent a valid one.", "schema": {"type": "string"}},
        "RateLimit-Limit": {"description": "The size of the caller's token bucket.", "schema": integer},
        "RateLimit-Remaining": {"description": "Requests left in the bucket.", "schema": integer},
        "RateLimit-Reset": {"description": "Seconds until the bucket is full again.", "schema": integer},
        "Retry-After": {"description": "Seconds to wait before retrying.", "schema": integer},
    })
}

/// API keys, bearer tokens (API keys, JWTs from the workspace's identity
/// provider, the gateway's own access tokens), OAuth 2.0 with the gateway's
/// endpoints, and the operator's admin token.
fn security_schemes(public_url: &str) -> Value {
    let scopes: Map<String, Value> = scopes::ALL
        .iter()
        .map(|scope| ((*scope).to_owned(), json!(format!("The `{scope}` permission."))))
        .collect();
    let base = public_url.trim_end_matches('/');
    json!({
        "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "A workspace API key."},
        "Bearer": {
            "type": "http", "scheme": "bearer",
            "description": "An API key, a JWT from the workspace's identity provider, or an access token from `/oauth/token`."
        },
        "OAuth2": {
            "type": "oauth2",
            "flows": {
                "clientCredentials": {"tokenUrl": format!("{base}/oauth/token"), "scopes": scopes},
                "authorizationCode": {
                    "authorizationUrl": format!("{base}/oauth/authorize"),
                    "tokenUrl": format!("{base}/oauth/token"),
                    "refreshUrl": format!("{base}/oauth/token"),
                    "scopes": scopes
                }
            }
        },
        "AdminToken": {
            "type": "http", "scheme": "bearer",
            "description": "The platform operator's `GATEWAY_ADMIN_TOKEN`."
        }
    })
}

/// The components every operation refers to.
pub fn components(public_url: &str) -> Value {
    json!({
        "responses": responses(),
        "parameters": parameters(),
        "headers": headers(),
        "securitySchemes": security_schemes(public_url),
    })
}

/// The problem document's schema, for `components.schemas`.
pub fn problem() -> (String, Value) {
    ("Problem".into(), problem_schema())
}

/// One webhook per event type the platform sends, with the envelope and
/// the signature headers a receiver verifies.
pub fn webhooks() -> Value {
    let header =
        |description: &str| json!({"required": true, "description": description, "schema": {"type": "string"}});
    let headers = json!({
        "webhook-id": header("The event's id: the same on every attempt, so a receiver can drop repeats."),
        "webhook-timestamp": header("Unix seconds when this attempt was signed; refuse old ones."),
        "webhook-signature": header("Standard Webhooks: `v1,<base64 HMAC-SHA256 of id.timestamp.body>`, one per active secret, space-separated."),
        "x-signature": header("`sha256=<hex HMAC-SHA256 of the body>` under the endpoint's first secret."),
        "x-idempotency-key": header("The delivery's id (`dlv_…`): the same on every attempt of this delivery."),
        "x-attempt": header("1 for the first attempt, counting up on retries."),
    });
    let mut hooks = Map::new();
    for (event, description) in proto::events::DESCRIBED {
        hooks.insert(
            (*event).to_owned(),
            json!({"post": {
                "operationId": format!("webhook_{}", event.replace('.', "_")),
                "summary": description,
                "parameters": headers.as_object().map(|h| h.iter().map(|(name, spec)| {
                    let mut parameter = spec.clone();
                    parameter["name"] = json!(name);
                    parameter["in"] = json!("header");
                    parameter
                }).collect::<Vec<_>>()),
                "requestBody": {"required": true, "content": {"application/json": {"schema": envelope(event)}}},
                "responses": {
                    "2XX": {"description": "Received: not sent again."},
                    "default": {"description": "Not received: retried with backoff (a 429's or 503's `Retry-After` is honoured), and the endpoint disabled after failing long enough."}
                }
            }}),
        );
    }
    Value::Object(hooks)
}

/// The envelope of an event of type `event`, as its bytes are signed.
fn envelope(event: &str) -> Value {
    json!({
        "type": "object",
        "required": ["id", "event", "timestamp", "version", "workspace_id", "data"],
        "properties": {
            "id": {"type": "string", "description": "`evt_…`, also in `webhook-id`."},
            "event": {"type": "string", "const": event},
            "timestamp": {"type": "string", "format": "date-time"},
            "version": {"type": "string"},
            "workspace_id": {"type": "string"},
            "data": {"type": "object", "description": "What happened: the resource as the API shows it."}
        }
    })
}
