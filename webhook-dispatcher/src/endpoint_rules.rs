//! What makes an endpoint's settings valid, and which events it wants.

use crate::error::{Error, Result};

const MAX_URL_LEN: usize = 2000;
const MAX_FILTERS: usize = 50;

pub fn url(value: &str) -> Result<String> {
    let value = value.trim();
    let scheme_ok = value.starts_with("https://") || value.starts_with("http://");
    let host_present = value
        .split("://")
        .nth(1)
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
    if !scheme_ok || !host_present || value.len() > MAX_URL_LEN || value.contains(char::is_whitespace) {
        return Err(Error::invalid("url", "must be an absolute http:// or https:// URL"));
    }
    Ok(value.to_owned())
}

pub fn description(value: &str) -> Result<String> {
    if value.chars().count() > 500 {
        return Err(Error::invalid("description", "must be at most 500 characters"));
    }
    Ok(value.trim().to_owned())
}

/// An optional deliveries-per-second ceiling: 0 means none.
pub fn rate_limit(per_second: i32) -> Result<Option<i32>> {
    match per_second {
        0 => Ok(None),
        n if (1..=10_000).contains(&n) => Ok(Some(n)),
        _ => Err(Error::invalid(
            "rate_limit_per_second",
            "must be between 1 and 10000, or 0 for none",
        )),
    }
}

/// Filters: `*`, an exact type (`message.received`) or a prefix wildcard
/// (`message.*`). Empty means every event.
pub fn event_types(filters: &[String]) -> Result<Vec<String>> {
    if filters.len() > MAX_FILTERS {
        return Err(Error::invalid("event_types", format!("at most {MAX_FILTERS} filters")));
    }
    for filter in filters {
        let segments_ok = filter == "*"
            || filter.split('.').enumerate().all(|(i, seg)| {
                let last = i == filter.split('.').count() - 1;
                (!seg.is_empty() && seg.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')) || (last && seg == "*")
            });
        if !segments_ok {
            return Err(Error::invalid(
                "event_types",
                format!("{filter:?} is not an event type, `*`, or a prefix such as `message.*`"),
            ));
        }
    }
    Ok(filters.to_vec())
}

/// Whether an endpoint with `filters` wants an event of `event_type`.
pub fn wants(filters: &[String], event_type: &str) -> bool {
    filters.is_empty()
        || filters.iter().any(|f| {
            f == "*" || f == event_type || f.strip_suffix('*').is_some_and(|prefix| event_type.starts_with(prefix))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_exactly_by_prefix_or_everything() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(wants(&f(&[]), "message.sent"));
        assert!(wants(&f(&["*"]), "bot.trained"));
        assert!(wants(&f(&["message.*"]), "message.received"));
        assert!(!wants(&f(&["message.*"]), "conversation.started"));
        assert!(wants(&f(&["conversation.ended"]), "conversation.ended"));
        assert!(!wants(&f(&["conversation.ended"]), "conversation.endedx"));
    }

    #[test]
    fn malformed_filters_and_urls_are_refused() {
        assert!(event_types(&["message.*".into(), "*".into(), "bot.trained".into()]).is_ok());
        assert!(event_types(&["Message.*".into()]).is_err());
        assert!(event_types(&["message.*.x".into()]).is_err());
        assert!(event_types(&["".into()]).is_err());
        assert!(url("https://hooks.example.com/in").is_ok());
        assert!(url("ftp://x").is_err());
        assert!(url("https:///nohost").is_err());
    }
}
