//! Which bots learn what a connection brings in (its products), and
//! whether they are retrained after a change: the same two settings for a
//! Shopify store and a workspace's own database.

use std::time::Duration;

use ids::BotId;
use serde_json::Value;
use service_runtime::error::ServiceError;

type Result<T, E = ServiceError> = std::result::Result<T, E>;

const MAX_BOTS: usize = 20;
const RETRAIN_AFTER_SECONDS: std::ops::RangeInclusive<u64> = 1..=86_400;

/// `bot_ids`: bots of the workspace, each once.
pub fn bot_ids(value: Option<&Value>) -> Result<Vec<BotId>> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let wrong = || {
        ServiceError::invalid(
            "settings.bot_ids",
            format!("must be a list of at most {MAX_BOTS} bot ids"),
        )
    };
    let list = value.as_array().filter(|l| l.len() <= MAX_BOTS).ok_or_else(wrong)?;
    let mut ids: Vec<BotId> = Vec::with_capacity(list.len());
    for item in list {
        let text = item.as_str().ok_or_else(wrong)?;
        let id = BotId::parse("settings.bot_ids", text)
            .map_err(|_| ServiceError::invalid("settings.bot_ids", format!("{text:?} is not a bot id")))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// `retrain_after_seconds`: 0 or absent never retrains.
pub fn retrain_after(value: Option<&Value>) -> Result<Option<Duration>> {
    match value.filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(None),
        Some(Value::Number(n)) => match n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as u64))
        {
            Some(secs) if RETRAIN_AFTER_SECONDS.contains(&secs) => Ok(Some(Duration::from_secs(secs))),
            _ => Err(ServiceError::invalid(
                "settings.retrain_after_seconds",
                "must be whole seconds from 1 to 86400, or 0 to never retrain",
            )),
        },
        Some(_) => Err(ServiceError::invalid(
            "settings.retrain_after_seconds",
            "must be a number of seconds",
        )),
    }
}
