//! Reading answers without trusting their size: a server that is not ours
//! decides how much it sends, so every read has a bound.

use crate::failure::Failure;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the answer exceeds {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Failed(#[from] Failure),
}

/// The whole answer, refusing more than `limit` bytes.
pub async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Failure::from)? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The first `keep` bytes of the answer, for the record. Reading goes on
/// (discarding) up to `limit` bytes so the connection can be reused, and
/// stops there; a failure midway keeps what was read.
pub async fn read_excerpt(mut response: reqwest::Response, keep: usize, limit: usize) -> Vec<u8> {
    let mut excerpt = Vec::new();
    let mut read = 0;
    while read < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                let room = keep.saturating_sub(excerpt.len());
                excerpt.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    excerpt
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &'static str) -> reqwest::Response {
        reqwest::Response::from(http::Response::new(body))
    }

    #[tokio::test]
    async fn an_answer_within_the_bound_is_read_whole() {
        let body = read_bounded(answer("{\"ok\":true}"), 64).await.unwrap();
        assert_eq!(body, b"{\"ok\":true}");
    }

    #[tokio::test]
    async fn an_answer_past_the_bound_is_refused() {
        let refused = read_bounded(answer("0123456789"), 4).await;
        assert!(matches!(refused, Err(ReadError::TooLarge(4))), "{refused:?}");
    }

    #[tokio::test]
    async fn an_excerpt_keeps_only_the_start() {
        assert_eq!(read_excerpt(answer("0123456789"), 4, 1024).await, b"0123");
        assert_eq!(read_excerpt(answer("01"), 4, 1024).await, b"01");
    }
}
