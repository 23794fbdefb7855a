//! Reading typed settings from environment variables, with errors that name
//! the variable so a bad deployment says exactly what to fix.

use std::{fmt::Display, str::FromStr, time::Duration};

use crate::{
    calls::{CallKeys, Party},
    grpc_server::GrpcServing,
    grpc_tls::GrpcTls,
};

const CALL_KEYS: &str = "PLATFORM_CALL_KEYS";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name} is required{hint}")]
    Missing { name: &'static str, hint: String },
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    /// A variable holding secrets is wrong; its value is not repeated.
    #[error("environment variable {name} is invalid: {reason}")]
    InvalidSecret { name: &'static str, reason: String },
}

impl ConfigError {
    /// `name` holds `value`, which is wrong for `reason`.
    pub fn invalid(name: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            name,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The items of a comma-separated value, trimmed, empty ones dropped.
pub fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The variable's value, or `default` when it is unset or empty.
pub fn string(name: &'static str, default: &str) -> String {
    optional(name).unwrap_or_else(|| default.to_owned())
}

/// The variable's value when set and non-empty; otherwise, when
/// `PLATFORM_SECRETS_DIR` names a directory, the content of its file
/// called `name` (how Kubernetes mounts a Secret: secrets in files stay out
/// of the environment, which child processes and crash reports inherit).
pub fn optional(name: &'static str) -> Option<String> {
    lookup(name, |var| std::env::var(var).ok())
}

/// [`optional`] over the variables `env` gives.
fn lookup(name: &'static str, env: impl Fn(&str) -> Option<String>) -> Option<String> {
    let set = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    if let Some(value) = set(env(name)) {
        return Some(value);
    }
    let dir = set(env(SECRETS_DIR))?;
    let text = std::fs::read_to_string(std::path::Path::new(&dir).join(name)).ok()?;
    // Files written by editors and `echo` end with a newline; values never do.
    set(Some(text.trim_end_matches(['\n', '\r']).to_owned()))
}

/// The directory of one file per secret setting, named as its variable.
pub const SECRETS_DIR: &str = "PLATFORM_SECRETS_DIR";

/// A required variable; `hint` says how to obtain a value.
pub fn required(name: &'static str, hint: &str) -> Result<String, ConfigError> {
    optional(name).ok_or_else(|| ConfigError::Missing {
        name,
        hint: if hint.is_empty() {
            String::new()
        } else {
            format!(" ({hint})")
        },
    })
}

/// The variable parsed as `T`, or `default` when unset.
/// An `on`/`off` setting.
pub fn switch(name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match optional(name).as_deref().map(str::trim) {
        None => Ok(default),
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(other) => Err(ConfigError::invalid(name, other, "must be on or off")),
    }
}

pub fn parsed<T>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match optional(name) {
        None => Ok(default),
        Some(value) => value.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            reason: e.to_string(),
            value,
        }),
    }
}

/// A duration in milliseconds, or `default` when unset.
pub fn millis(name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    Ok(Duration::from_millis(parsed(name, default.as_millis() as u64)?))
}

/// A duration in whole seconds, or `default` when unset.
pub fn seconds(name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(parsed(name, default.as_secs())?))
}

/// Whether the process runs in production mode (`APP_ENV=production`), where
/// a missing secret is a start-up error instead of a development default.
pub fn is_production() -> bool {
    matches!(optional("APP_ENV").as_deref(), Some("production" | "prod"))
}

/// The settings every gRPC service has: its database, where it listens, and
/// its connection pool size. `prefix` names the service's variables
/// (`<PREFIX>_GRPC_ADDR`, `<PREFIX>_DB_MAX_CONNECTIONS`).
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// `DATABASE_URL`
    pub database_url: String,
    pub listen_addr: String,
    pub max_db_connections: u32,
    /// Where `/metrics` and `/healthz` are served (`<PREFIX>_ADMIN_ADDR`;
    /// `off` for nowhere).
    pub admin_addr: Option<crate::listener::Address>,
    /// `GRPC_REFLECTION` (`off`; `on` to serve gRPC server reflection, for
    /// grpcurl and the like): off, a caller must know the API to call it.
    pub reflection: bool,
    /// `PLATFORM_CALL_KEYS`: whom the service accepts calls from, and how
    /// it signs the calls it makes.
    pub call_keys: CallKeys,
    /// `GRPC_TLS_*_FILE`: TLS for what it serves and the calls it makes.
    pub tls: GrpcTls,
    /// `DATABASE_MIGRATIONS` (`apply`; `verify` where a Job migrates).
    pub migrations: Migrations,
    /// `GRPC_DRAIN_DELAY_MS` (2000): how long a stopping service reports
    /// NOT_SERVING while still serving, before it stops accepting calls.
    /// Two of the gateway's health-check intervals.
    pub drain_delay: std::time::Duration,
}

impl ServiceSettings {
    pub fn from_env(
        me: Party,
        addr_var: &'static str,
        default_addr: &str,
        pool_var: &'static str,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            call_keys: call_keys(me)?,
            tls: grpc_tls()?,
            database_url: string("DATABASE_URL", DEFAULT_DATABASE_URL),
            listen_addr: string(addr_var, default_addr),
            max_db_connections: parsed(pool_var, 10)?,
            admin_addr: None,
            reflection: switch("GRPC_REFLECTION", false)?,
            drain_delay: millis("GRPC_DRAIN_DELAY_MS", DEFAULT_DRAIN_DELAY)?,
            migrations: migrations()?,
        })
    }

    /// Serves the admin endpoints where `var` says (`default` when unset,
    /// none when `off`).
    pub fn with_admin(mut self, var: &'static str, default: &str) -> Self {
        self.admin_addr = Some(string(var, default))
            .filter(|addr| addr != "off")
            .map(crate::listener::Address::Bind);
        self
    }

    /// How the service serves gRPC, its calls counted in `metrics`.
    pub fn grpc_serving(&self, metrics: &std::sync::Arc<crate::grpc_metrics::GrpcMetrics>) -> GrpcServing {
        GrpcServing {
            metrics: metrics.clone(),
            keys: self.call_keys.clone(),
            reflection: self.reflection,
            tls: self.tls.clone(),
            drain_delay: self.drain_delay,
        }
    }

    /// Binds the admin listener and serves `scrape` on it, if there is one.
    pub async fn serve_admin(
        &self,
        scrape: crate::admin::Scrape,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<()> {
        if let Some(addr) = &self.admin_addr {
            let listener = addr.listen("the admin address").await?;
            tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
            crate::admin::spawn(listener, scrape, shutdown);
        }
        Ok(())
    }
}

const DEFAULT_DRAIN_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

/// What a service does about its schema's migrations when it starts
/// (`DATABASE_MIGRATIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Migrations {
    /// Create the schema and apply what is missing (`apply`, the default):
    /// one process, or replicas that may all run DDL.
    #[default]
    Apply,
    /// Refuse to start unless every migration this build knows is applied
    /// (`verify`): a Job applies them first, with a role that may run DDL,
    /// so a new version never serves on an old schema.
    Verify,
}

/// `DATABASE_MIGRATIONS`: `apply` (the default) or `verify`.
pub fn migrations() -> Result<Migrations, ConfigError> {
    match optional("DATABASE_MIGRATIONS").as_deref().map(str::trim) {
        None | Some("apply") => Ok(Migrations::Apply),
        Some("verify") => Ok(Migrations::Verify),
        Some(other) => Err(ConfigError::invalid(
            "DATABASE_MIGRATIONS",
            other,
            "must be apply or verify",
        )),
    }
}

/// The local development database, as the README's up command creates it.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/chatbot_platform";

/// `PLATFORM_CALL_KEYS` for `me`, holding a key for every call the platform
/// makes to or from it.
pub fn call_keys(me: Party) -> Result<CallKeys, ConfigError> {
    let text = required(
        CALL_KEYS,
        "caller>callee:base64-of-32-bytes entries; see the README's service-to-service section",
    )?;
    CallKeys::parse(me, &text)
        .and_then(CallKeys::require_platform_calls)
        .map_err(|error| ConfigError::InvalidSecret {
            name: CALL_KEYS,
            reason: error.to_string(),
        })
}

/// The keys in `var` that seal secrets at rest (`id:base64,…`, the first
/// seals), required in production; elsewhere `development` when unset, with
/// a warning.
pub fn keyring(var: &'static str, development: &[u8; 32]) -> Result<sealing::Keyring, ConfigError> {
    let hint = "list keys as id:base64, e.g. k1:$(openssl rand -base64 32)";
    let text = if is_production() {
        required(var, hint)?
    } else {
        match optional(var) {
            Some(text) => text,
            None => {
                tracing::warn!("{var} is unset: sealing secrets with the development key");
                return Ok(sealing::Keyring::single("development", development));
            }
        }
    };
    sealing::Keyring::parse(&text).map_err(|reason| ConfigError::InvalidSecret {
        name: var,
        reason: reason.to_string(),
    })
}

/// `GRPC_TLS_CERT_FILE`, `GRPC_TLS_KEY_FILE` and `GRPC_TLS_CA_FILE`: all
/// three (mutual TLS between components) or none (plaintext).
pub fn grpc_tls() -> Result<GrpcTls, ConfigError> {
    const FILES: [&str; 3] = ["GRPC_TLS_CERT_FILE", "GRPC_TLS_KEY_FILE", "GRPC_TLS_CA_FILE"];
    let paths = FILES.map(|name| (name, optional(name)));
    if paths.iter().all(|(_, path)| path.is_none()) {
        return Ok(GrpcTls::default());
    }
    let read = |(name, path): &(&'static str, Option<String>)| -> Result<Vec<u8>, ConfigError> {
        let path = path.as_deref().ok_or_else(|| ConfigError::Missing {
            name,
            hint: " (TLS between services needs GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE and GRPC_TLS_CA_FILE)".into(),
        })?;
        std::fs::read(path).map_err(|e| ConfigError::invalid(name, path, e.to_string()))
    };
    Ok(GrpcTls::from_pem(read(&paths[0])?, read(&paths[1])?, read(&paths[2])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_missing_from_the_environment_is_read_from_the_secrets_directory() {
        let dir = std::env::temp_dir().join(format!("secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("DATABASE_URL"), "postgres://db/from-file\n").unwrap();
        let dir_text = dir.to_str().unwrap().to_owned();
        let env = |with: Option<&'static str>| {
            let dir_text = dir_text.clone();
            move |var: &str| match var {
                SECRETS_DIR => Some(dir_text.clone()),
                "DATABASE_URL" => with.map(str::to_owned),
                _ => None,
            }
        };
        assert_eq!(
            lookup("DATABASE_URL", env(None)).as_deref(),
            Some("postgres://db/from-file")
        );
        assert_eq!(
            lookup("DATABASE_URL", env(Some("postgres://db/from-env"))).as_deref(),
            Some("postgres://db/from-env"),
            "the environment wins"
        );
        assert_eq!(lookup("AMQP_URL", env(None)), None, "no file, no value");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
