//! Salesforce's REST API as the platform calls it: the OAuth 2.0 token
//! endpoint (JWT bearer or client credentials), the Lead's description, and
//! upserts by external id. Calls go through the vendor policy. Salesforce's
//! errors are an array of `{message, errorCode, fields}`: a record it
//! refuses for what it holds (`DUPLICATES_DETECTED`, `DUPLICATE_VALUE`,
//! `REQUIRED_FIELD_MISSING`, …) is a permanent failure, a spent session
//! (`INVALID_SESSION_ID`) asks for a new one, and `REQUEST_LIMIT_EXCEEDED`
//! pauses the org.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use outbound_http::{
    body::read_bounded,
    policy::{CallError, CallPolicy},
};
use serde_json::{Value, json};

use super::{SalesforceCredentials, SalesforceSettings};

const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// A JWT bearer assertion lives this long: Salesforce accepts at most 3
/// minutes.
const ASSERTION_SECONDS: u64 = 170;

#[derive(Debug, thiserror::Error)]
pub enum SalesforceError {
    /// The credentials, or the session, are not (or no longer) accepted.
    #[error("Salesforce refused the credentials: {0}")]
    Unauthorized(String),
    /// The record cannot be stored as it is; trying again cannot help.
    #[error("Salesforce rejected the record: {code}: {message}")]
    Rejected { code: String, message: String },
    /// The org's daily API requests are used up.
    #[error("Salesforce's API request limit is used up: {0}")]
    LimitExceeded(String),
    #[error("Salesforce refused: {0}")]
    Refused(String),
    #[error("Salesforce could not be reached: {0}")]
    Unreachable(CallError),
}

/// A signed-in session: where the org's API is, and the token for it.
#[derive(Debug, Clone)]
pub struct Session {
    pub access_token: String,
    pub instance_url: String,
    pub scopes: Vec<String>,
}

/// An upserted lead.
#[derive(Debug, Clone, PartialEq)]
pub struct Upserted {
    pub id: String,
    pub created: bool,
}

/// An org's API requests in its rolling 24-hour window, as the last
/// answer's `Sforce-Limit-Info` said.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub used: u64,
    pub max: u64,
}

impl Usage {
    /// `api-usage=18/5000` (other entries may precede it).
    fn parse(header: &str) -> Option<Self> {
        let usage = header
            .split(',')
            .find_map(|entry| entry.trim().strip_prefix("api-usage="))?;
        let (used, max) = usage.split_once('/')?;
        Some(Self {
            used: used.trim().parse().ok()?,
            max: max.trim().parse().ok()?,
        })
    }

    /// Whether so little is left that calls should wait for the window.
    pub fn nearly_spent(&self) -> bool {
        self.max > 0 && self.used * 100 >= self.max * 98
    }
}

#[derive(Clone)]
pub struct Salesforce {
    http: reqwest::Client,
    policy: CallPolicy,
    usage: Arc<Mutex<HashMap<String, Usage>>>,
}

impl Salesforce {
    pub fn new(http: reqwest::Client, policy: CallPolicy) -> Self {
        Self {
            http,
            policy,
            usage: Arc::default(),
        }
    }

    /// Forgets what the org reported of its usage (it is waiting for its
    /// window; the next answer will tell again).
    pub fn forget_usage(&self, connection: &str) {
        if let Ok(mut known) = self.usage.lock() {
            known.remove(connection);
        }
    }

    /// The org's API usage as its last answer reported it.
    pub fn usage(&self, connection: &str) -> Option<Usage> {
        self.usage.lock().ok()?.get(connection).copied()
    }

    /// Signs in (`connection` names the breaker).
    pub async fn sign_in(
        &self,
        connection: &str,
        settings: &SalesforceSettings,
        credentials: &SalesforceCredentials,
    ) -> Result<Session, SalesforceError> {
        let form: Vec<(&str, String)> = match credentials {
            SalesforceCredentials::JwtBearer {
                consumer_key,
                username,
                private_key,
            } => vec![
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer".into()),
                ("assertion", assertion(settings, consumer_key, username, private_key)?),
            ],
            SalesforceCredentials::ClientCredentials {
                client_id,
                client_secret,
            } => vec![
                ("grant_type", "client_credentials".into()),
                ("client_id", client_id.clone()),
                ("client_secret", client_secret.clone()),
            ],
        };
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let url = format!("{}/services/oauth2/token", settings.login_url);
        let request = || {
            self.http
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone())
        };
        let (status, answer) = self.call(connection, request).await?;
        if !status.is_success() {
            let reason = answer["error_description"]
                .as_str()
                .or(answer["error"].as_str())
                .map_or_else(|| format!("HTTP {status}"), |r| format!("HTTP {status}: {r}"));
            return Err(match status.is_client_error() {
                true => SalesforceError::Unauthorized(reason),
                false => SalesforceError::Refused(reason),
            });
        }
        let text = |key: &str| answer[key].as_str().filter(|v| !v.is_empty()).map(str::to_owned);
        let (Some(access_token), Some(instance_url)) = (text("access_token"), text("instance_url")) else {
            return Err(SalesforceError::Refused(
                "the token answer has no access token or instance".into(),
            ));
        };
        let scopes = text("scope")
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        Ok(Session {
            access_token,
            instance_url: instance_url.trim_end_matches('/').to_owned(),
            scopes,
        })
    }

    /// Checks that Lead has the external id field leads are upserted by.
    pub async fn check_lead_field(
        &self,
        connection: &str,
        settings: &SalesforceSettings,
        session: &Session,
    ) -> Result<(), SalesforceError> {
        let url = format!(
            "{}/services/data/{}/sobjects/Lead/describe",
            session.instance_url, settings.api_version
        );
        let (status, answer) = self
            .call(connection, || self.http.get(&url).bearer_auth(&session.access_token))
            .await?;
        if !status.is_success() {
            return Err(failure(status, &answer));
        }
        let field = &settings.lead_external_id_field;
        let found = answer["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["name"].as_str() == Some(field.as_str()));
        match found {
            Some(f) if f["externalId"] == true => Ok(()),
            Some(_) => Err(SalesforceError::Refused(format!(
                "the Lead field {field} is not marked External ID"
            ))),
            None => Err(SalesforceError::Refused(format!("Lead has no field {field}"))),
        }
    }

    /// Creates or updates the lead whose external id field holds
    /// `external_id`.
    pub async fn upsert_lead(
        &self,
        connection: &str,
        settings: &SalesforceSettings,
        session: &Session,
        external_id: &str,
        fields: &Value,
    ) -> Result<Upserted, SalesforceError> {
        let url = format!(
            "{}/services/data/{}/sobjects/Lead/{}/{}",
            session.instance_url,
            settings.api_version,
            settings.lead_external_id_field,
            form_urlencoded::byte_serialize(external_id.as_bytes()).collect::<String>()
        );
        let request = || self.http.patch(&url).bearer_auth(&session.access_token).json(fields);
        let (status, answer) = self.call(connection, request).await?;
        if !status.is_success() {
            return Err(failure(status, &answer));
        }
        Ok(Upserted {
            id: answer["id"].as_str().unwrap_or_default().to_owned(),
            created: status == reqwest::StatusCode::CREATED || answer["created"] == true,
        })
    }

    /// Creates or updates several leads in one call (the sObject
    /// Collections upsert, up to 200), each by its external id; each
    /// record's own outcome, in order.
    pub async fn upsert_leads(
        &self,
        connection: &str,
        settings: &SalesforceSettings,
        session: &Session,
        leads: &[(&str, &Value)],
    ) -> Result<Vec<Result<Upserted, SalesforceError>>, SalesforceError> {
        let field = &settings.lead_external_id_field;
        let records: Vec<Value> = leads
            .iter()
            .map(|(external_id, fields)| {
                let mut record = (*fields).clone();
                record["attributes"] = json!({"type": "Lead"});
                record[field.as_str()] = json!(external_id);
                record
            })
            .collect();
        let url = format!(
            "{}/services/data/{}/composite/sobjects/Lead/{field}",
            session.instance_url, settings.api_version
        );
        let body = json!({ "allOrNone": false, "records": records });
        let request = || self.http.patch(&url).bearer_auth(&session.access_token).json(&body);
        let (status, answer) = self.call(connection, request).await?;
        if !status.is_success() {
            return Err(failure(status, &answer));
        }
        let results = answer.as_array().cloned().unwrap_or_default();
        if results.len() != leads.len() {
            return Err(SalesforceError::Refused(format!(
                "{} results for {} records",
                results.len(),
                leads.len()
            )));
        }
        Ok(results.iter().map(record_outcome).collect())
    }

    /// Every record a SOQL query returns (up to `max`), following
    /// `nextRecordsUrl` from page to page.
    pub async fn query(
        &self,
        connection: &str,
        settings: &SalesforceSettings,
        session: &Session,
        soql: &str,
        max: usize,
    ) -> Result<Vec<Value>, SalesforceError> {
        let mut url = format!(
            "{}/services/data/{}/query?q={}",
            session.instance_url,
            settings.api_version,
            form_urlencoded::byte_serialize(soql.as_bytes()).collect::<String>()
        );
        let mut records = Vec::new();
        loop {
            let (status, answer) = self
                .call(connection, || self.http.get(&url).bearer_auth(&session.access_token))
                .await?;
            if !status.is_success() {
                return Err(failure(status, &answer));
            }
            records.extend(answer["records"].as_array().cloned().unwrap_or_default());
            let next = answer["nextRecordsUrl"].as_str().filter(|_| answer["done"] != true);
            match next {
                // Only ever a path on the same instance.
                Some(path) if path.starts_with("/services/data/") && records.len() < max => {
                    url = format!("{}{path}", session.instance_url);
                }
                _ => {
                    records.truncate(max);
                    return Ok(records);
                }
            }
        }
    }

    async fn call(
        &self,
        connection: &str,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, Value), SalesforceError> {
        let answer = self
            .policy
            .send(connection, request)
            .await
            .map_err(SalesforceError::Unreachable)?;
        let status = answer.status();
        let usage = answer
            .headers()
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
            .and_then(Usage::parse);
        if let (Some(usage), Ok(mut known)) = (usage, self.usage.lock()) {
            known.insert(connection.to_owned(), usage);
        }
        let body = read_bounded(answer, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| SalesforceError::Refused(e.to_string()))?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }
}

/// The JWT bearer flow's assertion, signed with the connection's key.
fn assertion(
    settings: &SalesforceSettings,
    consumer_key: &str,
    username: &str,
    private_key: &str,
) -> Result<String, SalesforceError> {
    let key = EncodingKey::from_rsa_pem(private_key.as_bytes())
        .map_err(|_| SalesforceError::Unauthorized("the private key does not read".into()))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let claims =
        json!({"iss": consumer_key, "sub": username, "aud": settings.login_url, "exp": now + ASSERTION_SECONDS});
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key)
        .map_err(|e| SalesforceError::Unauthorized(format!("signing the assertion: {e}")))
}

/// `text` as a SOQL string literal, quotes included: every character SOQL
/// would read as syntax escaped, so a value can never end the literal.
pub fn soql_string(text: &str) -> String {
    let mut literal = String::with_capacity(text.len() + 2);
    literal.push('\'');
    for c in text.chars() {
        match c {
            '\\' => literal.push_str("\\\\"),
            '\'' => literal.push_str("\\'"),
            '"' => literal.push_str("\\\""),
            '\n' => literal.push_str("\\n"),
            '\r' => literal.push_str("\\r"),
            '\t' => literal.push_str("\\t"),
            '\u{8}' => literal.push_str("\\b"),
            '\u{c}' => literal.push_str("\\f"),
            c => literal.push(c),
        }
    }
    literal.push('\'');
    literal
}

/// One record's outcome in a collection's answer (whose errors carry
/// `statusCode`, not `errorCode`).
fn record_outcome(result: &Value) -> Result<Upserted, SalesforceError> {
    if result["success"] == true {
        return Ok(Upserted {
            id: result["id"].as_str().unwrap_or_default().to_owned(),
            created: result["created"] == true,
        });
    }
    let error = &result["errors"][0];
    let code = error["statusCode"].as_str().unwrap_or("UNKNOWN").to_owned();
    let message = error["message"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    match code.as_str() {
        // Another transaction held the row: worth another try.
        "UNABLE_TO_LOCK_ROW" => Err(SalesforceError::Refused(format!("{code}: {message}"))),
        _ => Err(SalesforceError::Rejected { code, message }),
    }
}

/// Salesforce's error array as one failure.
fn failure(status: reqwest::StatusCode, answer: &Value) -> SalesforceError {
    let first = answer.as_array().and_then(|errors| errors.first());
    let code = first
        .and_then(|e| e["errorCode"].as_str())
        .unwrap_or_default()
        .to_owned();
    let message = first
        .and_then(|e| e["message"].as_str())
        .map(|m| m.chars().take(300).collect())
        .unwrap_or_else(|| format!("HTTP {status}"));
    match (status.as_u16(), code.as_str()) {
        (401, _) | (_, "INVALID_SESSION_ID") => SalesforceError::Unauthorized(message),
        (403, "REQUEST_LIMIT_EXCEEDED") => SalesforceError::LimitExceeded(message),
        (400, "") | (_, "") => SalesforceError::Refused(format!("HTTP {status}: {message}")),
        (400..=499, _) => SalesforceError::Rejected { code, message },
        _ => SalesforceError::Refused(format!("HTTP {status}: {code}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_header_says_how_much_of_the_window_is_left() {
        let usage = Usage::parse("per-app-api-usage=2/250(appName=x), api-usage=4900/5000").unwrap();
        assert_eq!(usage, Usage { used: 4900, max: 5000 });
        assert!(usage.nearly_spent());
        assert!(!Usage::parse("api-usage=18/5000").unwrap().nearly_spent());
        assert_eq!(Usage::parse("nonsense"), None);
    }

    #[test]
    fn each_record_of_a_collection_has_its_own_outcome() {
        let created = record_outcome(&json!({"id": "00Q1", "success": true, "errors": [], "created": true}));
        assert_eq!(
            created.unwrap(),
            Upserted {
                id: "00Q1".into(),
                created: true
            }
        );
        let duplicate = json!({"success": false, "errors": [{"statusCode": "DUPLICATES_DETECTED", "message": "dup"}]});
        assert!(matches!(
            record_outcome(&duplicate),
            Err(SalesforceError::Rejected { .. })
        ));
        let locked = json!({"success": false, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "busy"}]});
        assert!(matches!(record_outcome(&locked), Err(SalesforceError::Refused(_))));
    }

    #[test]
    fn a_value_never_ends_its_soql_literal() {
        assert_eq!(soql_string("ann@example.com"), "'ann@example.com'");
        assert_eq!(soql_string("x' OR Name != '"), r"'x\' OR Name != \''");
        assert_eq!(soql_string("a\\b\n\""), r#"'a\\b\n\"'"#);
    }

    #[test]
    fn salesforces_error_arrays_say_what_to_do_next() {
        let error = |status: u16, code: &str| {
            failure(
                reqwest::StatusCode::from_u16(status).unwrap(),
                &json!([{"message": "why", "errorCode": code, "fields": []}]),
            )
        };
        assert!(matches!(
            error(401, "INVALID_SESSION_ID"),
            SalesforceError::Unauthorized(_)
        ));
        assert!(matches!(
            error(403, "REQUEST_LIMIT_EXCEEDED"),
            SalesforceError::LimitExceeded(_)
        ));
        assert!(matches!(
            error(400, "REQUIRED_FIELD_MISSING"),
            SalesforceError::Rejected { code, .. } if code == "REQUIRED_FIELD_MISSING"
        ));
        assert!(matches!(error(500, "UNKNOWN_EXCEPTION"), SalesforceError::Refused(_)));
    }
}
