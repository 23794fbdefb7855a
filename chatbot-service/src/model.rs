//! The closed vocabularies of the domain (conversation status, message role,
//! channel) and the rules between their values.

use crate::error::{Error, Result};

/// Longest message, in characters; bot replies are cut to it too.
pub const MAX_MESSAGE_CHARS: usize = 32 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationStatus {
    /// Handed to a human agent.
    Waiting,
    Active,
    /// Final: no more messages, no more changes of status.
    Ended,
}

impl ConversationStatus {
    pub fn parse(field: &'static str, value: &str) -> Result<Self> {
        match value {
            "waiting" => Ok(Self::Waiting),
            "active" => Ok(Self::Active),
            "ended" => Ok(Self::Ended),
            _ => Err(Error::invalid(field, "must be one of waiting, active, ended")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Active => "active",
            Self::Ended => "ended",
        }
    }

    /// The status after a requested change, if the change is allowed.
    /// Asking for the current status is a no-op, not an error.
    pub fn transition_to(self, next: Self) -> Result<Self> {
        use ConversationStatus::*;
        match (self, next) {
            (a, b) if a == b => Ok(b),
            (Ended, _) => Err(Error::FailedPrecondition(format!(
                "conversation is ended; it cannot become {}",
                next.as_str()
            ))),
            (Waiting | Active, _) => Ok(next),
        }
    }

    pub fn accepts_messages(self) -> bool {
        self != Self::Ended
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Bot,
    Agent,
    System,
}

impl Role {
    pub fn parse(field: &'static str, value: &str) -> Result<Self> {
        match value {
            "user" => Ok(Self::User),
            "bot" => Ok(Self::Bot),
            "agent" => Ok(Self::Agent),
            "system" => Ok(Self::System),
            "" => Err(Error::invalid(field, "is required (user, bot, agent or system)")),
            _ => Err(Error::invalid(field, "must be one of user, bot, agent, system")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Bot => "bot",
            Self::Agent => "agent",
            Self::System => "system",
        }
    }
}

pub const CHANNELS: &[&str] = &[
    "web",
    "whatsapp",
    "sms",
    "email",
    "api",
    "messenger",
    "slack",
    "telegram",
    "voice",
];

/// Validates a channel name against the supported set.
pub fn parse_channel(field: &'static str, value: &str) -> Result<String> {
    if value.is_empty() {
        return Err(Error::invalid(
            field,
            format!("is required (one of {})", CHANNELS.join(", ")),
        ));
    }
    if CHANNELS.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(Error::invalid(field, format!("must be one of {}", CHANNELS.join(", "))))
    }
}

/// Checks a required free-text field's presence and length.
pub fn required_text(field: &'static str, value: &str, max_chars: usize) -> Result<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    bounded_text(field, trimmed, max_chars)
}

/// Checks an optional free-text field's length.
pub fn bounded_text(field: &'static str, value: &str, max_chars: usize) -> Result<String> {
    if value.chars().count() > max_chars {
        return Err(Error::invalid(field, format!("must be at most {max_chars} characters")));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::ConversationStatus::*;
    use super::*;

    #[test]
    fn open_conversations_move_freely_between_waiting_active_and_ended() {
        assert_eq!(Active.transition_to(Waiting).unwrap(), Waiting);
        assert_eq!(Waiting.transition_to(Active).unwrap(), Active);
        assert_eq!(Waiting.transition_to(Ended).unwrap(), Ended);
        assert_eq!(Active.transition_to(Ended).unwrap(), Ended);
    }

    #[test]
    fn an_ended_conversation_never_reopens() {
        assert!(matches!(Ended.transition_to(Active), Err(Error::FailedPrecondition(_))));
        assert!(matches!(
            Ended.transition_to(Waiting),
            Err(Error::FailedPrecondition(_))
        ));
        assert_eq!(Ended.transition_to(Ended).unwrap(), Ended);
        assert!(!Ended.accepts_messages());
    }

    #[test]
    fn unknown_roles_and_channels_name_the_field() {
        assert!(matches!(
            Role::parse("role", "robot"),
            Err(Error::InvalidArgument { field, .. }) if field == "role"
        ));
        assert!(matches!(
            parse_channel("channel", "fax"),
            Err(Error::InvalidArgument { field, .. }) if field == "channel"
        ));
    }
}
