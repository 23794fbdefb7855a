//! Secrets the service holds for bots (model server API keys), named by a
//! reference. A bot's config stores only the name; the value never leaves
//! the service and never appears in an answer or a log.
//!
//! Values come from files in `CHATBOT_SECRETS_DIR` (a mounted Kubernetes
//! Secret: one file per key, the file name is the reference), or from
//! `CHATBOT_SECRET_<REF>` environment variables (reference upper-cased,
//! other characters as `_`).

use std::{collections::HashMap, path::PathBuf, sync::Arc};

#[derive(Clone, Default)]
pub struct Secrets {
    dir: Option<PathBuf>,
    values: Arc<HashMap<String, String>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("dir", &self.dir)
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Secrets {
    pub fn from_env() -> Self {
        let values = std::env::vars()
            .filter_map(|(name, value)| name.strip_prefix("CHATBOT_SECRET_").map(|r| (r.to_owned(), value)))
            .collect();
        Self {
            dir: std::env::var_os("CHATBOT_SECRETS_DIR").map(PathBuf::from),
            values: Arc::new(values),
        }
    }

    /// Secrets given directly, keyed by reference (tests, embedding).
    pub fn from_values(values: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            dir: None,
            values: Arc::new(values.into_iter().map(|(k, v)| (env_name(&k), v)).collect()),
        }
    }

    /// Whether `reference` is a name a secret could have: no path parts.
    pub fn is_valid_reference(reference: &str) -> bool {
        (1..=200).contains(&reference.len())
            && reference
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            && !reference.starts_with('.')
    }

    pub fn get(&self, reference: &str) -> Option<String> {
        if !Self::is_valid_reference(reference) {
            return None;
        }
        if let Some(dir) = &self.dir
            && let Ok(value) = std::fs::read_to_string(dir.join(reference))
        {
            return Some(value.trim().to_owned());
        }
        self.values.get(&env_name(reference)).cloned()
    }
}

fn env_name(reference: &str) -> String {
    reference
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_plain_names_never_paths() {
        assert!(Secrets::is_valid_reference("openai-prod"));
        assert!(!Secrets::is_valid_reference("../etc/passwd"));
        assert!(!Secrets::is_valid_reference(".hidden"));
        assert!(!Secrets::is_valid_reference(""));
    }

    #[test]
    fn values_are_found_by_reference_and_never_printed() {
        let secrets = Secrets::from_values([("openai-prod".to_owned(), "sk-123".to_owned())]);
        assert_eq!(secrets.get("openai-prod").as_deref(), Some("sk-123"));
        assert_eq!(secrets.get("other"), None);
        assert!(!format!("{secrets:?}").contains("sk-123"));
    }
}
