//! A small REST client for tests: every call returns status, headers, raw
//! text and (when it parses) JSON, so assertions can look at all of them.

use reqwest::{Method, RequestBuilder, header::HeaderMap};
use serde_json::Value;

#[derive(Clone)]
pub struct Client {
    base_url: String,
    key: Option<String>,
    http: reqwest::Client,
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 9457 problem with this status and `type` suffix.
    pub fn assert_problem(&self, status: u16, kind: &str) -> &Self {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "problems are application/problem+json; body: {}",
            self.text
        );
        let problem_type = self.json["type"].as_str().unwrap_or_default();
        assert!(
            problem_type.ends_with(&format!("/{kind}")),
            "problem type {problem_type} is not {kind}"
        );
        assert_eq!(self.json["status"], status, "status member matches");
        assert!(self.json["title"].is_string() && self.json["detail"].is_string());
        assert!(
            self.json["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "problems carry the request id"
        );
        self
    }
}

impl Client {
    /// The key this client sends, if any.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    pub fn anonymous(base_url: &str) -> Self {
        outbound_http::tls::install();
        Self {
            base_url: base_url.to_owned(),
            key: None,
            // Redirects are answers to look at (OAuth), never to follow.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("building the test HTTP client"),
        }
    }

    pub fn with_key(base_url: &str, key: &str) -> Self {
        Self {
            key: Some(key.to_owned()),
            ..Self::anonymous(base_url)
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base_url));
        match &self.key {
            Some(key) => builder.bearer_auth(key),
            None => builder,
        }
    }

    pub async fn send(builder: RequestBuilder) -> Reply {
        let response = builder.send().await.expect("the gateway answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("reading the body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        Self::send(self.request(Method::GET, path)).await
    }

    pub async fn try_get(&self, path: &str) -> Option<Reply> {
        let response = self.request(Method::GET, path).send().await.ok()?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.ok()?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Some(Reply {
            status,
            headers,
            text,
            json,
        })
    }

    /// GETs `path` until `done` holds of its JSON, every 50 ms for at most
    /// `within`; that JSON.
    pub async fn get_until(&self, path: &str, within: std::time::Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let reply = self.get(path).await;
            assert_eq!(reply.status, 200, "{path}: {}", reply.text);
            if done(&reply.json) {
                return reply.json;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} did not get there within {within:?}: {}",
                reply.text
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        Self::send(self.request(Method::POST, path).json(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        Self::send(self.request(Method::PATCH, path).json(&body)).await
    }

    /// POSTs an `application/x-www-form-urlencoded` body.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let request = self
            .request(Method::POST, path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        Self::send(request).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        Self::send(self.request(Method::PUT, path).json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        Self::send(self.request(Method::DELETE, path)).await
    }

    /// Creates a conversation and returns its id.
    pub async fn create_conversation(&self, user_id: &str) -> String {
        let reply = self
            .post(
                "/api/v1/conversations",
                serde_json::json!({"user_id": user_id, "channel": "web"}),
            )
            .await;
        assert_eq!(reply.status, 200, "creating a conversation: {}", reply.text);
        reply.json["id"].as_str().expect("conversation id").to_owned()
    }

    /// Sends a user message and returns the stored message.
    pub async fn send_message(&self, conversation_id: &str, content: &str) -> Value {
        let reply = self
            .post(
                &format!("/api/v1/conversations/{conversation_id}/messages"),
                serde_json::json!({"role": "user", "content": content}),
            )
            .await;
        assert_eq!(reply.status, 200, "sending a message: {}", reply.text);
        reply.json["message"].clone()
    }

    /// Sends a user message with an `Idempotency-Key`; the whole answer.
    pub async fn send_with_key(&self, conversation_id: &str, key: &str, content: &str) -> Reply {
        let request = self
            .request(
                Method::POST,
                &format!("/api/v1/conversations/{conversation_id}/messages"),
            )
            .header("Idempotency-Key", key)
            .json(&serde_json::json!({"role": "user", "content": content}));
        Self::send(request).await
    }
}
