//! A local model server speaking the OpenAI chat completions wire format:
//! JSON answers, `stream: true` chunks ending in `data: [DONE]`, and
//! OpenAI-style error bodies. Each request takes the next scripted answer
//! (the last one repeats) and is recorded for assertions.

use std::{
    collections::VecDeque,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub enum Answer {
    /// A complete chat completion with this text.
    Text(String),
    /// The text streamed in these pieces, `pause` apart.
    Stream { pieces: Vec<String>, pause: Duration },
    /// An error status with an OpenAI error body (and Retry-After seconds).
    Error {
        status: u16,
        message: String,
        retry_after: Option<u64>,
    },
    /// Never answers.
    Hang,
    /// Asks to call these functions (name and arguments) instead of
    /// answering.
    ToolCalls(Vec<(String, Value)>),
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct Script {
    answers: VecDeque<Answer>,
    received: Vec<Received>,
}

pub struct ModelServer {
    /// What a bot's `llm.base_url` should be.
    pub base_url: String,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

impl ModelServer {
    pub async fn start(answers: Vec<Answer>) -> Self {
        let script = Arc::new(Mutex::new(Script {
            answers: answers.into(),
            received: Vec::new(),
        }));
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(script.clone());
        let (addr, task) = crate::local_server::serve(app, "the model server").await;
        Self {
            base_url: format!("http://{addr}/v1"),
            script,
            task,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.script.lock().expect("the script").received.clone()
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn complete(State(script): State<Arc<Mutex<Script>>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let answer = {
        let mut script = script.lock().expect("the script");
        script.received.push(Received {
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: body.clone(),
        });
        if script.answers.len() > 1 {
            script.answers.pop_front()
        } else {
            script.answers.front().cloned()
        }
        .unwrap_or(Answer::Text("ok".into()))
    };
    let model = body["model"].as_str().unwrap_or("model").to_owned();
    let stream = body["stream"].as_bool().unwrap_or(false);
    match answer {
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Answer::Error {
            status,
            message,
            retry_after,
        } => {
            let mut response = (
                StatusCode::from_u16(status).expect("a status"),
                Json(json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})),
            )
                .into_response();
            if let Some(seconds) = retry_after {
                response.headers_mut().insert("retry-after", seconds.into());
            }
            response
        }
        Answer::Text(text) if !stream => Json(json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        }))
        .into_response(),
        Answer::Text(text) => streamed(model, vec![text], Duration::ZERO),
        Answer::ToolCalls(calls) => {
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(n, (name, arguments))| {
                    json!({"id": format!("call_{n}"), "type": "function",
                        "function": {"name": name, "arguments": arguments.to_string()}})
                })
                .collect();
            Json(json!({
                "id": "chatcmpl-test", "object": "chat.completion", "created": 1_700_000_000, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": calls},
                    "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
            }))
            .into_response()
        }
        Answer::Stream { pieces, pause } => {
            if stream {
                streamed(model, pieces, pause)
            } else {
                let text: String = pieces.concat();
                Json(json!({
                    "id": "chatcmpl-test", "object": "chat.completion", "created": 1_700_000_000, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]
                }))
                .into_response()
            }
        }
    }
}

/// `chat.completion.chunk` events: a role chunk, one per piece, a finish
/// chunk, then `[DONE]`.
fn streamed(model: String, pieces: Vec<String>, pause: Duration) -> Response {
    let chunk = move |delta: Value, finish: Value| {
        let data = json!({
            "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        });
        format!("data: {data}\n\n")
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
    events.extend(pieces.iter().map(|p| chunk(json!({"content": p}), Value::Null)));
    events.push(chunk(json!({}), json!("stop")));
    events.push("data: [DONE]\n\n".to_owned());
    let body = futures_util::stream::unfold(events.into_iter(), move |mut events| async move {
        let next = events.next()?;
        tokio::time::sleep(pause).await;
        Some((Ok::<_, Infallible>(next), events))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(body))
        .expect("a streaming response")
}
