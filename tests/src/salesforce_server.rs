//! A local Salesforce speaking its REST wire format, for one org: the
//! OAuth 2.0 token endpoint (`/services/oauth2/token`, form-encoded: the
//! JWT bearer flow with an RS256 assertion checked against the connected
//! app's certificate key, `iss` the consumer key, `sub` the user, `aud` the
//! login URL, `exp` at most 3 minutes ahead; and client credentials),
//! answering `{access_token, instance_url, id, token_type, scope}` with no
//! expiry; `sobjects/Lead/describe`; and upserts by external id
//! (`PATCH …/sobjects/Lead/{field}/{value}`: 201 with `created: true`, 200
//! with `created: false`). Errors are Salesforce's arrays of `{message,
//! errorCode, fields}`: 401 `INVALID_SESSION_ID` for a spent session, 400
//! `REQUIRED_FIELD_MISSING` without `LastName` or `Company`, 400
//! `DUPLICATES_DETECTED` for an email its duplicate rules flag.
//!
//! The login URL and the instance are both [`SalesforceServer::url`].

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, patch, post},
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

pub const CONSUMER_KEY: &str = "3MVG9-test-consumer-key";
pub const USERNAME: &str = "integration@acme.example";
pub const CLIENT_ID: &str = "3MVG9-client-id";
pub const CLIENT_SECRET: &str = "client-secret";
pub const LEAD_FIELD: &str = "Chatbot_Conversation_Id__c";
/// The connected app's private key (tests only).
pub const PRIVATE_KEY: &str = include_str!("../fixtures/salesforce_test_key.pem");
const PUBLIC_KEY: &str = include_str!("../fixtures/salesforce_test_key.pub.pem");

#[derive(Clone, Debug)]
pub struct StoredLead {
    pub id: String,
    pub external_id: String,
    pub fields: Value,
}

#[derive(Default)]
struct Org {
    /// The login URL assertions must name as `aud`.
    url: String,
    sessions: Mutex<HashSet<String>>,
    leads: Mutex<HashMap<String, StoredLead>>,
    duplicate_emails: Mutex<HashSet<String>>,
    /// Contacts, in Salesforce's record JSON.
    contacts: Mutex<Vec<Value>>,
    /// Every SOQL query received.
    queries: Mutex<Vec<String>>,
    token_requests: AtomicUsize,
    upserts: AtomicUsize,
    collection_upserts: AtomicUsize,
    /// The next single upsert waits this long before answering.
    hold_next: Mutex<Option<std::time::Duration>>,
    /// `Sforce-Limit-Info`'s api-usage on every REST answer.
    api_usage: Mutex<(u64, u64)>,
    /// Every call answers this status while set, as an outage does.
    down: Mutex<Option<u16>>,
    /// Calls received while down.
    calls_while_down: AtomicUsize,
}

pub struct SalesforceServer {
    pub url: String,
    org: Arc<Org>,
    task: tokio::task::JoinHandle<()>,
}

impl SalesforceServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the fake Salesforce");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let org = Arc::new(Org {
            url: url.clone(),
            api_usage: Mutex::new((10, 15_000)),
            ..Org::default()
        });
        let app = Router::new()
            .route("/services/oauth2/token", post(token))
            .route("/services/data/{version}/sobjects/Lead/describe", get(describe))
            .route("/services/data/{version}/sobjects/Lead/{field}/{value}", patch(upsert))
            .route(
                "/services/data/{version}/composite/sobjects/Lead/{field}",
                patch(upsert_collection),
            )
            .route("/services/data/{version}/query", get(query))
            .route("/services/data/{version}/query/{locator}", get(query_more))
            .layer(axum::middleware::from_fn_with_state(org.clone(), limit_info))
            .layer(axum::middleware::from_fn_with_state(org.clone(), outage))
            .with_state(org.clone());
        let (_, task) = crate::local_server::serve_on(listener, app).await;
        Self { url, org, task }
    }

    /// Every session issued so far stops working.
    pub fn expire_sessions(&self) {
        self.org.sessions.lock().unwrap().clear();
    }

    /// Upserts with this email are refused as duplicates.
    pub fn flag_duplicate(&self, email: &str) {
        self.org.duplicate_emails.lock().unwrap().insert(email.to_owned());
    }

    /// Adds a contact (Salesforce's record JSON, with `Email`).
    pub fn add_contact(&self, contact: Value) {
        self.org.contacts.lock().unwrap().push(contact);
    }

    /// Every SOQL query received so far.
    pub fn queries(&self) -> Vec<String> {
        self.org.queries.lock().unwrap().clone()
    }

    pub fn leads(&self) -> Vec<StoredLead> {
        self.org.leads.lock().unwrap().values().cloned().collect()
    }

    /// What `Sforce-Limit-Info` reports of the org's API requests.
    pub fn set_api_usage(&self, used: u64, max: u64) {
        *self.org.api_usage.lock().unwrap() = (used, max);
    }

    /// The next single upsert waits `hold` before it is answered.
    pub fn hold_next_upsert(&self, hold: std::time::Duration) {
        *self.org.hold_next.lock().unwrap() = Some(hold);
    }

    /// Every call answers `status` from now on, with Salesforce's error
    /// array; `None`: back up.
    pub fn go_down(&self, status: Option<u16>) {
        *self.org.down.lock().unwrap() = status;
    }

    /// Calls received while down.
    pub fn calls_while_down(&self) -> usize {
        self.org.calls_while_down.load(Ordering::SeqCst)
    }

    /// sObject Collections upserts received.
    pub fn collection_upserts(&self) -> usize {
        self.org.collection_upserts.load(Ordering::SeqCst)
    }

    pub fn token_requests(&self) -> usize {
        self.org.token_requests.load(Ordering::SeqCst)
    }

    pub fn upserts(&self) -> usize {
        self.org.upserts.load(Ordering::SeqCst)
    }
}

impl Drop for SalesforceServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// While the org is down, every call gets the outage's status.
async fn outage(
    State(org): State<Arc<Org>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let down = *org.down.lock().unwrap();
    match down {
        Some(status) => {
            org.calls_while_down.fetch_add(1, Ordering::SeqCst);
            let status = StatusCode::from_u16(status).expect("an HTTP status");
            errors(status, "SERVER_UNAVAILABLE", "The server is temporarily unavailable")
        }
        None => next.run(request).await,
    }
}

/// Every REST answer reports the org's API usage, as Salesforce's do.
async fn limit_info(
    State(org): State<Arc<Org>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let rest = request.uri().path().starts_with("/services/data/");
    let mut response = next.run(request).await;
    if rest {
        let (used, max) = *org.api_usage.lock().unwrap();
        let value = format!("api-usage={used}/{max}");
        response
            .headers_mut()
            .insert("sforce-limit-info", value.parse().expect("ascii"));
    }
    response
}

/// Salesforce's answer to a missing or spent session.
fn session_refused() -> Response {
    errors(
        StatusCode::UNAUTHORIZED,
        "INVALID_SESSION_ID",
        "Session expired or invalid",
    )
}

fn errors(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!([{"message": message, "errorCode": code, "fields": []}])),
    )
        .into_response()
}

async fn token(State(org): State<Arc<Org>>, body: Bytes) -> Response {
    org.token_requests.fetch_add(1, Ordering::SeqCst);
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let refused = |error: &str, description: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    let accepted = match form.get("grant_type").map(String::as_str) {
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            valid_assertion(&org, form.get("assertion").map(String::as_str).unwrap_or_default())
        }
        Some("client_credentials") => {
            form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
                && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
        }
        _ => return refused("unsupported_grant_type", "grant type not supported"),
    };
    if !accepted {
        return refused("invalid_grant", "invalid assertion or client credentials");
    }
    let session = format!("00Dxx0000001gPL!session{}", org.token_requests.load(Ordering::SeqCst));
    org.sessions.lock().unwrap().insert(session.clone());
    Json(json!({
        "access_token": session, "instance_url": org.url, "id": format!("{}/id/00Dxx0000001gPL/005xx000001X8Uz", org.url),
        "token_type": "Bearer", "scope": "api", "issued_at": "1700000000000", "signature": "not-checked"
    }))
    .into_response()
}

fn valid_assertion(org: &Org, assertion: &str) -> bool {
    let Ok(key) = DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()) else {
        return false;
    };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[&org.url]);
    validation.set_issuer(&[CONSUMER_KEY]);
    validation.sub = Some(USERNAME.to_owned());
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    let Ok(decoded) = jsonwebtoken::decode::<Value>(assertion, &key, &validation) else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    decoded.claims["exp"].as_u64().is_some_and(|exp| exp <= now + 180)
}

fn authorized(org: &Org, headers: &HeaderMap) -> bool {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    org.sessions.lock().unwrap().contains(token)
}

async fn describe(State(org): State<Arc<Org>>, headers: HeaderMap) -> Response {
    if !authorized(&org, &headers) {
        return session_refused();
    }
    Json(json!({"name": "Lead", "fields": [
        {"name": "Id", "externalId": false}, {"name": "FirstName", "externalId": false},
        {"name": "LastName", "externalId": false}, {"name": "Email", "externalId": false},
        {"name": "Company", "externalId": false}, {"name": "Description", "externalId": false},
        {"name": LEAD_FIELD, "externalId": true}
    ]}))
    .into_response()
}

async fn upsert(
    State(org): State<Arc<Org>>,
    Path((_version, field, value)): Path<(String, String, String)>,
    headers: HeaderMap,
    Json(fields): Json<Value>,
) -> Response {
    if !authorized(&org, &headers) {
        return session_refused();
    }
    org.upserts.fetch_add(1, Ordering::SeqCst);
    let hold = org.hold_next.lock().unwrap().take();
    if let Some(hold) = hold {
        tokio::time::sleep(hold).await;
    }
    if field != LEAD_FIELD {
        return errors(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Provided external ID field does not exist or is not accessible: {field}"),
        );
    }
    match store_lead(&org, &value, fields) {
        Ok((id, created)) => {
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            (
                status,
                Json(json!({"id": id, "success": true, "errors": [], "created": created})),
            )
                .into_response()
        }
        Err((code, message)) => errors(StatusCode::BAD_REQUEST, code, &message),
    }
}

/// `PATCH …/composite/sobjects/Lead/{field}`: each record upserted on its
/// own (`allOrNone: false`), one result per record, errors with
/// `statusCode`.
async fn upsert_collection(
    State(org): State<Arc<Org>>,
    Path((_version, field)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !authorized(&org, &headers) {
        return session_refused();
    }
    org.collection_upserts.fetch_add(1, Ordering::SeqCst);
    let records = body["records"].as_array().cloned().unwrap_or_default();
    let results: Vec<Value> = records
        .into_iter()
        .map(|mut record| {
            org.upserts.fetch_add(1, Ordering::SeqCst);
            let value = record[field.as_str()].as_str().unwrap_or_default().to_owned();
            if let Some(fields) = record.as_object_mut() {
                fields.remove("attributes");
                fields.remove(field.as_str());
            }
            match store_lead(&org, &value, record) {
                Ok((id, created)) => json!({"id": id, "success": true, "errors": [], "created": created}),
                Err((code, message)) => {
                    json!({"success": false, "errors": [{"statusCode": code, "message": message, "fields": []}]})
                }
            }
        })
        .collect();
    Json(results).into_response()
}

/// Stores a lead by its external id: its id and whether it is new, or the
/// error code and message Salesforce would give.
fn store_lead(org: &Org, value: &str, fields: Value) -> Result<(String, bool), (&'static str, String)> {
    for required in ["LastName", "Company"] {
        if fields[required].as_str().is_none_or(str::is_empty) {
            return Err((
                "REQUIRED_FIELD_MISSING",
                format!("Required fields are missing: [{required}]"),
            ));
        }
    }
    let email = fields["Email"].as_str().unwrap_or_default();
    if org.duplicate_emails.lock().unwrap().contains(email) {
        return Err((
            "DUPLICATES_DETECTED",
            "You're creating a duplicate record. We recommend you use an existing record instead.".into(),
        ));
    }
    let mut leads = org.leads.lock().unwrap();
    let created = !leads.contains_key(value);
    let count = leads.len();
    let lead = leads.entry(value.to_owned()).or_insert_with(|| StoredLead {
        id: format!("00Qxx{count:010}"),
        external_id: value.to_owned(),
        fields: Value::Null,
    });
    lead.fields = fields;
    Ok((lead.id.clone(), created))
}

/// Records one query page holds; more come through `nextRecordsUrl`.
const PAGE: usize = 2;

/// A SOQL query, read as far as the fake needs: the object after `FROM`
/// and the literal of `Email = '…'` with its escapes undone. Anything after
/// the literal but `AND IsConverted = false` and `ORDER BY …` is what a
/// lookup that spliced the value would have let through: the fake then
/// answers as the injected query would, with every record.
async fn query(
    State(org): State<Arc<Org>>,
    headers: HeaderMap,
    axum::extract::Query(params): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&org, &headers) {
        return session_refused();
    }
    let soql = params.get("q").cloned().unwrap_or_default();
    let position = {
        let mut queries = org.queries.lock().unwrap();
        queries.push(soql.clone());
        queries.len() - 1
    };
    match matching(&org, &soql) {
        Some(records) => page(&records, position, 0),
        None => errors(StatusCode::BAD_REQUEST, "MALFORMED_QUERY", "unexpected token"),
    }
}

/// The rest of a query's records, from `nextRecordsUrl`: the locator names
/// the query (its position among those received) and the offset.
async fn query_more(
    State(org): State<Arc<Org>>,
    headers: HeaderMap,
    Path((_version, locator)): Path<(String, String)>,
) -> Response {
    if !authorized(&org, &headers) {
        return session_refused();
    }
    let parsed = locator
        .strip_prefix("01gq")
        .and_then(|rest| rest.split_once('-'))
        .and_then(|(n, offset)| Some((n.parse::<usize>().ok()?, offset.parse::<usize>().ok()?)));
    let soql = parsed.and_then(|(n, _)| org.queries.lock().unwrap().get(n).cloned());
    match (parsed, soql.and_then(|soql| matching(&org, &soql))) {
        (Some((n, offset)), Some(records)) => page(&records, n, offset),
        _ => errors(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        ),
    }
}

/// The records `soql` selects; `None` when it does not read.
fn matching(org: &Org, soql: &str) -> Option<Vec<Value>> {
    let records: Vec<Value> = match soql.contains("FROM Contact") {
        true => org.contacts.lock().unwrap().clone(),
        false => org
            .leads
            .lock()
            .unwrap()
            .values()
            .map(|l| {
                let mut record = l.fields.clone();
                record["Id"] = json!(l.id);
                record
            })
            .collect(),
    };
    let (email, rest) = email_condition(soql)?;
    Some(match injected(&rest) {
        true => records,
        false => records.into_iter().filter(|r| r["Email"] == email.as_str()).collect(),
    })
}

/// One page of the records of query `position`, from `offset`.
fn page(records: &[Value], position: usize, offset: usize) -> Response {
    let slice: Vec<Value> = records
        .iter()
        .skip(offset)
        .take(PAGE)
        .map(|r| {
            let mut r = r.clone();
            r["attributes"] = json!({"type": "Contact", "url": "/services/data/v61.0/sobjects/Contact/x"});
            r
        })
        .collect();
    let next = offset + PAGE;
    let done = next >= records.len();
    let mut body = json!({"totalSize": records.len(), "done": done, "records": slice});
    if !done {
        body["nextRecordsUrl"] = json!(format!("/services/data/v61.0/query/01gq{position}-{next}"));
    }
    Json(body).into_response()
}

/// The literal of `Email = '…'`, unescaped, and the text after it.
fn email_condition(soql: &str) -> Option<(String, String)> {
    let start = soql.find("Email = '")? + "Email = '".len();
    let mut literal = String::new();
    let mut chars = soql[start..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                let (_, escaped) = chars.next()?;
                literal.push(match escaped {
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    other => other,
                });
            }
            '\'' => return Some((literal, soql[start + i + 1..].to_owned())),
            c => literal.push(c),
        }
    }
    None
}

/// Whether text after the literal changes what the query selects.
fn injected(rest: &str) -> bool {
    let rest = rest.trim();
    let rest = rest.strip_prefix("AND IsConverted = false").unwrap_or(rest).trim();
    !(rest.is_empty() || rest.starts_with("ORDER BY"))
}
