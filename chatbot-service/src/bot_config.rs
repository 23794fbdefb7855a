//! Validation and defaults of `BotConfig`, so a stored config is always one
//! the reply engines can run.

use proto::chatbot::v1::{BotConfig, LlmConfig};

use crate::{
    error::{Error, Result},
    model::bounded_text,
};

pub const DEFAULT_FALLBACK: &str = "Sorry, I don't know that yet. Let me find someone who can help.";
const DEFAULT_THRESHOLD: f32 = 0.35;
const DEFAULT_MAX_TOKENS: i32 = 512;

/// The config a bot gets when created without one.
pub fn default_config() -> BotConfig {
    normalise(BotConfig::default()).expect("the empty config normalises")
}

/// Validates `config`, filling defaults for fields left empty. Errors name
/// the field as the REST client wrote it (`config.llm.base_url`).
pub fn normalise(mut config: BotConfig) -> Result<BotConfig> {
    config.persona = bounded_text("config.persona", &config.persona, 4000)?;
    config.greeting = bounded_text("config.greeting", &config.greeting, 1000)?;
    config.fallback_message = match config.fallback_message.trim() {
        "" => DEFAULT_FALLBACK.to_owned(),
        text => bounded_text("config.fallback_message", text, 1000)?,
    };
    match config.engine.as_str() {
        "" => config.engine = "knowledge".into(),
        "knowledge" | "llm" => {}
        _ => return Err(Error::invalid("config.engine", "must be knowledge or llm")),
    }
    if !(0.0..=1.0).contains(&config.handoff_threshold) {
        return Err(Error::invalid("config.handoff_threshold", "must be between 0 and 1"));
    }
    if config.handoff_threshold == 0.0 {
        config.handoff_threshold = DEFAULT_THRESHOLD;
    }
    config.language = match config.language.as_str() {
        "" => "en".into(),
        tag if is_language_tag(tag) => tag.to_owned(),
        _ => {
            return Err(Error::invalid(
                "config.language",
                "must be a BCP 47 tag such as en or pt-BR",
            ));
        }
    };
    config.llm = match (config.engine.as_str(), config.llm.take()) {
        ("llm", None) => return Err(Error::invalid("config.llm", "is required when engine is llm")),
        ("llm", Some(llm)) => Some(normalise_llm(llm)?),
        (_, other) => other.map(normalise_llm).transpose()?,
    };
    Ok(config)
}

fn normalise_llm(mut llm: LlmConfig) -> Result<LlmConfig> {
    let url = llm.base_url.trim();
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    if !scheme_ok || url.len() < "http://x".len() || url.contains(char::is_whitespace) {
        return Err(Error::invalid(
            "config.llm.base_url",
            "must be an http:// or https:// URL",
        ));
    }
    llm.base_url = url.trim_end_matches('/').to_owned();
    if llm.model.trim().is_empty() {
        return Err(Error::invalid("config.llm.model", "is required"));
    }
    llm.model = bounded_text("config.llm.model", llm.model.trim(), 200)?;
    llm.api_key_ref = llm.api_key_ref.trim().to_owned();
    if !llm.api_key_ref.is_empty() && !crate::secrets::is_valid_name(&llm.api_key_ref) {
        return Err(Error::invalid(
            "config.llm.api_key_ref",
            "must be a secret's name: letters, digits, '-', '_' or '.'",
        ));
    }
    if !(0.0..=2.0).contains(&llm.temperature) {
        return Err(Error::invalid("config.llm.temperature", "must be between 0 and 2"));
    }
    llm.max_tokens = match llm.max_tokens {
        0 => DEFAULT_MAX_TOKENS,
        n if (1..=32768).contains(&n) => n,
        _ => return Err(Error::invalid("config.llm.max_tokens", "must be between 1 and 32768")),
    };
    let mut tools: Vec<String> = Vec::new();
    for tool in llm.tools.drain(..) {
        let tool = tool.trim().to_owned();
        if !crate::drafting::tools::NAMES.contains(&tool.as_str()) {
            return Err(Error::invalid(
                "config.llm.tools",
                format!("{tool:?} is not a tool ({})", crate::drafting::tools::NAMES.join(", ")),
            ));
        }
        if !tools.contains(&tool) {
            tools.push(tool);
        }
    }
    llm.tools = tools;
    Ok(llm)
}

fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let primary_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    primary_ok && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: Result<BotConfig>) -> String {
        match result {
            Err(Error::InvalidArgument { field, .. }) => field.into_owned(),
            other => panic!("expected an invalid argument, got {other:?}"),
        }
    }

    #[test]
    fn an_empty_config_gets_the_knowledge_engine_and_a_fallback() {
        let config = default_config();
        assert_eq!(config.engine, "knowledge");
        assert_eq!(config.language, "en");
        assert_eq!(config.fallback_message, DEFAULT_FALLBACK);
    }

    #[test]
    fn the_llm_engine_needs_a_server_and_a_model() {
        let config = BotConfig {
            engine: "llm".into(),
            ..Default::default()
        };
        assert_eq!(field_of(normalise(config)), "config.llm");
        let config = BotConfig {
            engine: "llm".into(),
            llm: Some(LlmConfig {
                base_url: "ftp://models".into(),
                model: "m".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(field_of(normalise(config)), "config.llm.base_url");
    }

    #[test]
    fn out_of_range_numbers_name_their_field() {
        let config = BotConfig {
            handoff_threshold: 1.5,
            ..Default::default()
        };
        assert_eq!(field_of(normalise(config)), "config.handoff_threshold");
        let config = BotConfig {
            language: "english please".into(),
            ..Default::default()
        };
        assert_eq!(field_of(normalise(config)), "config.language");
    }
}
