//! The permission vocabulary of API credentials.

/// Every scope a workspace credential can hold. Keys made by the platform
/// admin for a new workspace get all of them.
pub const ALL: &[&str] = &[
    "read:conversations",
    "write:conversations",
    "write:messages",
    "read:bots",
    "write:bots",
    "manage:secrets",
    "read:analytics",
    "manage:integrations",
    "manage:webhooks",
    "manage:api-keys",
    "manage:oauth-clients",
];

/// Checks requested scopes against the vocabulary; empty means all.
pub fn parse(requested: &[String]) -> Result<Vec<String>, String> {
    if requested.is_empty() {
        return Ok(ALL.iter().map(|s| (*s).to_owned()).collect());
    }
    for scope in requested {
        if !ALL.contains(&scope.as_str()) {
            return Err(format!("unknown scope {scope:?}; known scopes: {}", ALL.join(", ")));
        }
    }
    Ok(requested.to_vec())
}
