//! Why a request got no answer, down to the root cause (a refused target,
//! a reset connection): what the owner of a webhook endpoint or a model
//! server needs to see, and what decides whether trying again can help.

use crate::target_guard::REFUSED;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("timed out")]
    Timeout,
    /// The target resolves only to addresses the guard refuses: trying
    /// again cannot help.
    #[error("connection failed: {0}")]
    Refused(String),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Other(String),
}

impl Failure {
    /// Whether the same request may succeed later.
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::Refused(_))
    }

    /// The root cause's text, without the kind.
    pub fn cause(&self) -> &str {
        match self {
            Self::Timeout => "timed out",
            Self::Refused(cause) | Self::Connect(cause) | Self::Other(cause) => cause,
        }
    }
}

impl From<reqwest::Error> for Failure {
    fn from(error: reqwest::Error) -> Self {
        if error.is_timeout() {
            return Self::Timeout;
        }
        let mut root: &dyn std::error::Error = &error;
        while let Some(source) = root.source() {
            root = source;
        }
        let cause = root.to_string();
        if cause.contains(REFUSED) {
            Self::Refused(cause)
        } else if error.is_connect() {
            Self::Connect(cause)
        } else {
            Self::Other(cause)
        }
    }
}
