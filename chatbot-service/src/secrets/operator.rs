//! Model API keys the operator provides, named by a reference, usable by a
//! workspace only once the operator grants it, and only toward the origin
//! the grant names.
//!
//! Values come from files in `CHATBOT_SECRETS_DIR` (a mounted Kubernetes
//! Secret: one file per key, the file name is the reference), or from
//! `CHATBOT_SECRET_<REF>` environment variables (reference upper-cased,
//! other characters as `_`). Grants are lines of
//! `CHATBOT_SECRET_GRANTS_FILE` (a mounted ConfigMap, read on every use so
//! a changed grant applies without a restart):
//! `<reference> <workspace id> <origin>`, `#` starting a comment.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

#[derive(Clone, Default)]
pub struct Secrets {
    dir: Option<PathBuf>,
    values: Arc<HashMap<String, String>>,
    grants: Option<PathBuf>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("dir", &self.dir)
            .field("grants", &self.grants)
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
            grants: std::env::var_os("CHATBOT_SECRET_GRANTS_FILE").map(PathBuf::from),
        }
    }

    /// These secrets, granted as `path` says.
    pub fn with_grants(mut self, path: impl Into<PathBuf>) -> Self {
        self.grants = Some(path.into());
        self
    }

    /// The origin `reference` is granted to `workspace_id` for, if it is.
    pub fn granted(&self, reference: &str, workspace_id: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.grants.as_deref()?).ok()?;
        grant_in(&text, reference, workspace_id)
    }

    /// Secrets given directly, keyed by reference (tests, embedding).
    pub fn from_values(values: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            dir: None,
            values: Arc::new(values.into_iter().map(|(k, v)| (env_name(&k), v)).collect()),
            grants: None,
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

/// The origin of the line of `text` granting `reference` to `workspace_id`.
fn grant_in(text: &str, reference: &str, workspace_id: &str) -> Option<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .find_map(|line| match line.split_whitespace().collect::<Vec<_>>()[..] {
            [r, w, origin] if r == reference && w == workspace_id => Some(origin.to_owned()),
            _ => None,
        })
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

    #[test]
    fn a_grant_names_the_reference_the_workspace_and_the_origin() {
        let text =
            "# operator grants\nshared ws_a https://api.openai.com\nshared ws_b https://llm.example:8443 # trial\n";
        assert_eq!(
            grant_in(text, "shared", "ws_a").as_deref(),
            Some("https://api.openai.com")
        );
        assert_eq!(
            grant_in(text, "shared", "ws_b").as_deref(),
            Some("https://llm.example:8443")
        );
        assert_eq!(grant_in(text, "shared", "ws_c"), None);
        assert_eq!(grant_in(text, "other", "ws_a"), None);
    }
}
