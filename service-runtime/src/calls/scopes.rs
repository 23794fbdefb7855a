//! The scope each RPC requires, read from the `platform.required_scope`
//! option in the shared descriptor set: the same option the gateway reads,
//! so a service asks exactly what the gateway asks.

use std::{collections::HashMap, sync::LazyLock};

use prost_reflect::{DescriptorPool, Value};

const SCOPE_EXTENSION: &str = "platform.required_scope";

static REQUIRED: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    let pool = DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET).expect("the compiled descriptor set is valid");
    read(&pool)
});

/// The scope `path` (`/package.Service/Method`) requires, if any.
pub fn required(path: &str) -> Option<&'static str> {
    REQUIRED.get(path).map(String::as_str)
}

fn read(pool: &DescriptorPool) -> HashMap<String, String> {
    let Some(extension) = pool.get_extension_by_name(SCOPE_EXTENSION) else {
        return HashMap::new();
    };
    pool.services()
        .flat_map(|service| service.methods().collect::<Vec<_>>())
        .filter_map(|method| {
            let options = method.options();
            if !options.has_extension(&extension) {
                return None;
            }
            match options.get_extension(&extension).as_ref() {
                Value::String(scope) if !scope.is_empty() => Some((
                    format!("/{}/{}", method.parent_service().full_name(), method.name()),
                    scope.clone(),
                )),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_come_from_the_proto_options() {
        assert_eq!(required("/chatbot.v1.BotService/CreateBot"), Some("write:bots"));
        assert_eq!(
            required("/integration.v1.IntegrationService/CreateIntegration"),
            Some("manage:integrations")
        );
        // Internal RPCs declare none; the call token alone admits them.
        assert_eq!(required("/chatbot.v1.KnowledgeService/SyncKnowledgeSource"), None);
        assert!(REQUIRED.len() > 40, "{} scoped RPCs", REQUIRED.len());
    }
}
