//! A client of OpenAI-compatible `/chat/completions` servers (OpenAI, vLLM,
//! Ollama, llama.cpp), plain JSON or `stream: true`.
//!
//! Time-outs, 429 and 5xx are retried with exponential backoff (honouring a
//! bounded `Retry-After`) a fixed number of times; a streamed answer is only
//! retried while nothing of it has been passed on. Addresses are checked by
//! the SSRF guard, so a bot cannot be pointed at cloud metadata or internal
//! services unless configuration allows their range.

use std::time::Duration;

use outbound_http::{
    Failure, RetrySchedule, TargetGuard,
    body::{ReadError, read_bounded},
    client::Timeouts,
    retry::{retry_after, retryable_status},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

/// Largest answer read from a model server (a reply is at most 32 768
/// characters of text, and JSON framing adds some).
const MAX_ANSWER_BYTES: usize = 256 * 1024;
const MAX_ERROR_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct ModelSettings {
    /// Per attempt; for a stream, the longest silence between chunks.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_attempts: u32,
    /// First retry delay; doubled each time.
    pub backoff: Duration,
    pub guard: TargetGuard,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_attempts: 3,
            backoff: Duration::from_millis(500),
            guard: TargetGuard::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ChatMessage {
    pub role: &'static str,
    pub content: String,
    /// The assistant's calls, as the server sent them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<Value>,
    /// A tool's answer: which call it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn text(role: &'static str, content: String) -> Self {
        Self {
            role,
            content,
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub temperature: f32,
    pub max_tokens: i32,
    pub stream: bool,
    /// Functions the model may call.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Value>,
}

#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub text: String,
    pub finish_reason: Option<String>,
    pub usage: Option<Value>,
    /// Functions the model asked to call instead of answering.
    pub tool_calls: Vec<Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model server address refused: {0}")]
    Refused(String),
    #[error("model server answered {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("model server unreachable: {0}")]
    Network(String),
    #[error("model server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("model server sent an answer that is not a chat completion: {0}")]
    Malformed(String),
}

impl ModelError {
    fn retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => reqwest::StatusCode::from_u16(*status).is_ok_and(retryable_status),
            Self::Network(_) | Self::Timeout(_) => true,
            Self::Refused(_) | Self::Malformed(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct ModelClient {
    http: reqwest::Client,
    settings: ModelSettings,
    retries: RetrySchedule,
}

impl ModelClient {
    pub fn new(settings: ModelSettings) -> Self {
        let timeouts = Timeouts {
            connect: settings.connect_timeout,
            request: None,
            read: Some(settings.timeout),
        };
        let user_agent = concat!("chatbot-platform/", env!("CARGO_PKG_VERSION"));
        // A server's Retry-After is honoured, but never beyond four
        // backoffs: a user is waiting.
        let retries = RetrySchedule::exponential(settings.backoff, settings.max_attempts)
            .with_max_retry_after(settings.backoff.saturating_mul(4));
        Self {
            http: outbound_http::client::guarded(&settings.guard, timeouts, user_agent),
            settings,
            retries,
        }
    }

    /// One completion; with `deltas`, streamed, each piece of text sent on
    /// as it arrives (a closed receiver is ignored: the answer completes).
    pub async fn complete(
        &self,
        base_url: &str,
        api_key: Option<&str>,
        mut request: ChatRequest,
        deltas: Option<&mpsc::Sender<String>>,
    ) -> Result<Completion, ModelError> {
        if let Some(reason) = self.settings.guard.refuse_literal(base_url) {
            return Err(ModelError::Refused(reason));
        }
        request.stream = deltas.is_some();
        let url = format!("{base_url}/chat/completions");
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut forwarded = false;
            let outcome = self.attempt(&url, api_key, &request, deltas, &mut forwarded).await;
            let wait = match &outcome {
                Err(error) if error.retryable() && !forwarded => self.retries.next_delay(attempts, error.retry_after()),
                _ => None,
            };
            match (outcome, wait) {
                (Err(error), Some(wait)) => {
                    tracing::info!(%error, attempts, wait_ms = wait.as_millis() as u64, "retrying the model server");
                    tokio::time::sleep(wait).await;
                }
                (outcome, _) => return outcome,
            }
        }
    }

    async fn attempt(
        &self,
        url: &str,
        api_key: Option<&str>,
        request: &ChatRequest,
        deltas: Option<&mpsc::Sender<String>>,
        forwarded: &mut bool,
    ) -> Result<Completion, ModelError> {
        let mut builder = self.http.post(url).json(request);
        if let Some(key) = api_key {
            builder = builder.bearer_auth(key);
        }
        if deltas.is_none() {
            builder = builder.timeout(self.settings.timeout);
        }
        let response = builder.send().await.map_err(|e| self.failed(e.into()))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = retry_after(response.headers());
            let body = read_bounded(response, MAX_ERROR_BYTES).await.unwrap_or_default();
            let mut message = error_message(&body);
            // Some servers quote the key they were sent; it must not end up
            // in a stored message or an event.
            if let Some(key) = api_key.filter(|k| !k.is_empty()) {
                message = message.replace(key, "[redacted]");
            }
            return Err(ModelError::Status {
                status: status.as_u16(),
                message,
                retry_after,
            });
        }
        match deltas {
            None => {
                let body = read_bounded(response, MAX_ANSWER_BYTES)
                    .await
                    .map_err(|e| self.unread(e))?;
                parse_completion(&body)
            }
            Some(sender) => self.read_stream(response, sender, forwarded).await,
        }
    }

    async fn read_stream(
        &self,
        mut response: reqwest::Response,
        sender: &mpsc::Sender<String>,
        forwarded: &mut bool,
    ) -> Result<Completion, ModelError> {
        let mut completion = Completion::default();
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            let chunk = response.chunk().await.map_err(|e| self.failed(e.into()))?;
            let Some(chunk) = chunk else {
                return Err(ModelError::Malformed("the stream ended before [DONE]".into()));
            };
            buffer.extend_from_slice(&chunk);
            while let Some(event) = next_event(&mut buffer) {
                let Some(data) = event_data(&event) else { continue };
                if data.trim() == "[DONE]" {
                    return Ok(completion);
                }
                let piece = parse_chunk(&data, &mut completion)?;
                if completion.text.len() + piece.len() > MAX_ANSWER_BYTES {
                    return Err(ModelError::Malformed(format!(
                        "the answer exceeds {MAX_ANSWER_BYTES} bytes"
                    )));
                }
                if !piece.is_empty() {
                    completion.text.push_str(&piece);
                    *forwarded = true;
                    let _ = sender.send(piece).await;
                }
            }
        }
    }

    fn failed(&self, failure: Failure) -> ModelError {
        match failure {
            Failure::Timeout => ModelError::Timeout(self.settings.timeout),
            Failure::Refused(cause) => ModelError::Refused(cause),
            Failure::Connect(cause) | Failure::Other(cause) => ModelError::Network(cause),
        }
    }

    /// A model server is not trusted to bound its own answers.
    fn unread(&self, error: ReadError) -> ModelError {
        match error {
            ReadError::TooLarge(limit) => ModelError::Malformed(format!("the answer exceeds {limit} bytes")),
            ReadError::Failed(failure) => self.failed(failure),
        }
    }
}

#[derive(Deserialize)]
struct CompletionBody {
    choices: Vec<Choice>,
    usage: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    message: Option<ChoiceMessage>,
    delta: Option<ChoiceMessage>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
}

fn parse_completion(body: &[u8]) -> Result<Completion, ModelError> {
    let parsed: CompletionBody = serde_json::from_slice(body).map_err(|e| ModelError::Malformed(e.to_string()))?;
    let choice = parsed
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| ModelError::Malformed("no choices".into()))?;
    let (text, tool_calls) = match choice.message {
        Some(message) => (
            message.content.unwrap_or_default(),
            message.tool_calls.unwrap_or_default(),
        ),
        None => (String::new(), Vec::new()),
    };
    Ok(Completion {
        text,
        finish_reason: choice.finish_reason,
        usage: parsed.usage,
        tool_calls,
    })
}

/// The text of one `chat.completion.chunk`, noting its finish reason and
/// usage (some servers send usage in a last chunk with no choices).
fn parse_chunk(data: &str, completion: &mut Completion) -> Result<String, ModelError> {
    let parsed: CompletionBody = serde_json::from_str(data).map_err(|e| ModelError::Malformed(e.to_string()))?;
    if parsed.usage.is_some() {
        completion.usage = parsed.usage;
    }
    let Some(choice) = parsed.choices.into_iter().next() else {
        return Ok(String::new());
    };
    if choice.finish_reason.is_some() {
        completion.finish_reason = choice.finish_reason;
    }
    Ok(choice.delta.and_then(|d| d.content).unwrap_or_default())
}

/// Takes one complete server-sent event (up to a blank line) off `buffer`.
fn next_event(buffer: &mut Vec<u8>) -> Option<String> {
    let end = buffer
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, 2))
        .or_else(|| buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4)))?;
    let event: Vec<u8> = buffer.drain(..end.0 + end.1).collect();
    Some(String::from_utf8_lossy(&event[..end.0]).into_owned())
}

/// The joined `data:` lines of an event, if it has any.
fn event_data(event: &str) -> Option<String> {
    let lines: Vec<&str> = event
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|rest| rest.strip_prefix(' ').unwrap_or(rest))
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The server's own explanation from an OpenAI-style error body, bounded;
/// the raw start of the body otherwise.
fn error_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message").or_else(|| v.get("error")))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    message.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_events_are_cut_at_blank_lines_and_keep_partial_tails() {
        let mut buffer = b"data: {\"a\":1}\n\ndata: [DONE]\n\ndata: {\"partial".to_vec();
        assert_eq!(event_data(&next_event(&mut buffer).unwrap()).unwrap(), "{\"a\":1}");
        assert_eq!(event_data(&next_event(&mut buffer).unwrap()).unwrap(), "[DONE]");
        assert!(next_event(&mut buffer).is_none());
        assert_eq!(buffer, b"data: {\"partial");
    }

    #[test]
    fn openai_error_bodies_give_their_message() {
        let body = br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit"}}"#;
        assert_eq!(error_message(body), "Rate limit reached");
        assert_eq!(error_message(b"upstream connect error"), "upstream connect error");
    }

    #[test]
    fn chunks_carry_text_finish_reason_and_usage() {
        let mut completion = Completion::default();
        let text = parse_chunk(
            r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
            &mut completion,
        )
        .unwrap();
        assert_eq!(text, "Hi");
        parse_chunk(
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"total_tokens":9}}"#,
            &mut completion,
        )
        .unwrap();
        assert_eq!(completion.finish_reason.as_deref(), Some("stop"));
        assert_eq!(completion.usage.unwrap()["total_tokens"], 9);
    }
}
