//! JSON Schemas of protobuf messages as the gateway writes and reads them:
//! the proto3 JSON mapping with proto field names, 64-bit integers as
//! strings, enums by name, well-known types in their JSON forms, and the
//! proto comments as descriptions.

use std::collections::{BTreeMap, HashMap, HashSet};

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

/// Leading comments of every described element, by file and path.
pub struct Comments(HashMap<(String, Vec<i32>), String>);

impl Comments {
    pub fn of(pool: &DescriptorPool) -> Self {
        let mut comments = HashMap::new();
        for file in pool.files() {
            let Some(info) = &file.file_descriptor_proto().source_code_info else {
                continue;
            };
            for location in &info.location {
                if let Some(text) = location
                    .leading_comments
                    .as_deref()
                    .or(location.trailing_comments.as_deref())
                {
                    let text = text.trim();
                    if !text.is_empty() {
                        comments.insert((file.name().to_owned(), location.path.clone()), tidy(text));
                    }
                }
            }
        }
        Self(comments)
    }

    /// The comment on the element at `path` of `file`.
    pub fn at(&self, file: &str, path: &[i32]) -> Option<&str> {
        self.0.get(&(file.to_owned(), path.to_vec())).map(String::as_str)
    }

    fn of_message(&self, message: &MessageDescriptor) -> Option<&str> {
        self.at(message.parent_file().name(), message.path())
    }

    fn of_field(&self, field: &FieldDescriptor) -> Option<&str> {
        self.at(field.parent_file().name(), field.path())
    }
}

/// A comment's lines joined as they were, each stripped of the one space
/// after `//`.
fn tidy(text: &str) -> String {
    text.lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Which way a message travels: an output's fields without presence are
/// always written, so they are required; an input needs none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
}

/// The schemas defined so far, by component name.
pub struct Schemas<'a> {
    comments: &'a Comments,
    /// Messages some output reaches: their input form gets its own name.
    outputs: HashSet<String>,
    pub defined: BTreeMap<String, Value>,
}

impl<'a> Schemas<'a> {
    /// Schemas for a document whose outputs are `outputs` (and whatever
    /// they contain).
    pub fn new(comments: &'a Comments, outputs: impl IntoIterator<Item = MessageDescriptor>) -> Self {
        let mut reached = HashSet::new();
        for message in outputs {
            reach(&message, &mut reached);
        }
        Self {
            comments,
            outputs: reached,
            defined: BTreeMap::new(),
        }
    }

    /// A schema for `message` travelling `direction`: a reference to its
    /// component (defined on first use), or a well-known type's JSON form.
    pub fn message(&mut self, message: &MessageDescriptor, direction: Direction) -> Value {
        if let Some(known) = well_known(message.full_name()) {
            return known;
        }
        let name = self.name(message, direction);
        if !self.defined.contains_key(&name) {
            // A placeholder first: messages can contain themselves.
            self.defined.insert(name.clone(), Value::Null);
            let schema = self.object(message, direction, |_| true);
            self.defined.insert(name.clone(), schema);
        }
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    /// An inline object of the fields of `message` that `keep` keeps: a
    /// request body without the fields the path carries.
    pub fn object(
        &mut self,
        message: &MessageDescriptor,
        direction: Direction,
        keep: impl Fn(&FieldDescriptor) -> bool,
    ) -> Value {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in message.fields().filter(|f| keep(f)) {
            let behaviors = behaviors(&field);
            if direction == Direction::Input && behaviors.contains(&Behavior::OutputOnly) {
                // Set by the service; a client has nothing to send.
                continue;
            }
            let mut schema = self.field(&field, direction);
            if let Some(comment) = self.comments.of_field(&field) {
                schema = described(schema, comment);
            }
            let always_written = direction == Direction::Output && !field.supports_presence();
            let must_send = direction == Direction::Input && behaviors.contains(&Behavior::Required);
            if always_written || must_send {
                required.push(json!(field.name()));
            }
            if must_send && field.kind() == Kind::String && !field.is_list() {
                // Required text is refused when empty.
                schema["minLength"] = json!(1);
            }
            if direction == Direction::Output && behaviors.contains(&Behavior::OutputOnly) {
                schema = read_only(schema);
            }
            properties.insert(field.name().to_owned(), schema);
        }
        let mut schema = json!({"type": "object", "properties": properties});
        if !required.is_empty() {
            schema["required"] = Value::Array(required);
        }
        if direction == Direction::Input {
            // The gateway refuses fields the message does not have, and
            // more than one field of a oneof.
            schema["additionalProperties"] = json!(false);
            if let Some(exclusive) = one_of_each(message) {
                schema["not"] = exclusive;
            }
        }
        match self.comments.of_message(message) {
            Some(comment) => described(schema, comment),
            None => schema,
        }
    }

    /// The schema of one field's JSON value.
    pub fn field(&mut self, field: &FieldDescriptor, direction: Direction) -> Value {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                unreachable!("a map field's kind is its entry message")
            };
            let value = entry.map_entry_value_field();
            return json!({"type": "object", "additionalProperties": self.kind(&value.kind(), direction)});
        }
        let item = self.kind(&field.kind(), direction);
        match field.is_list() {
            true => json!({"type": "array", "items": item}),
            false => item,
        }
    }

    /// The schema of a singular value of `kind`.
    pub fn kind(&mut self, kind: &Kind, direction: Direction) -> Value {
        match kind {
            Kind::Double | Kind::Float => json!({"type": "number"}),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => json!({"type": "integer", "format": "int32"}),
            Kind::Uint32 | Kind::Fixed32 => json!({"type": "integer", "format": "int32", "minimum": 0}),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => int64(true),
            Kind::Uint64 | Kind::Fixed64 => int64(false),
            Kind::Bool => json!({"type": "boolean"}),
            Kind::String => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
            Kind::Enum(enumeration) => {
                let names: Vec<String> = enumeration.values().map(|v| v.name().to_owned()).collect();
                json!({"type": "string", "enum": names})
            }
            Kind::Message(message) => self.message(message, direction),
        }
    }

    fn name(&self, message: &MessageDescriptor, direction: Direction) -> String {
        let full = message.full_name();
        match direction == Direction::Input && self.outputs.contains(full) {
            true => format!("{full}.Input"),
            false => full.to_owned(),
        }
    }
}

/// The `google.api.field_behavior` values the document acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behavior {
    Required,
    OutputOnly,
}

/// A field's `google.api.field_behavior` annotations.
fn behaviors(field: &FieldDescriptor) -> Vec<Behavior> {
    let Some(extension) = field.parent_pool().get_extension_by_name("google.api.field_behavior") else {
        return Vec::new();
    };
    let options = field.options();
    if !options.has_extension(&extension) {
        return Vec::new();
    }
    let values = options.get_extension(&extension);
    let Some(list) = values.as_list() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|value| match value.as_enum_number()? {
            2 => Some(Behavior::Required),
            3 => Some(Behavior::OutputOnly),
            _ => None,
        })
        .collect()
}

/// A schema matching objects that set two fields of one oneof (the
/// request's schema is its negation), if the message has a real oneof.
fn one_of_each(message: &MessageDescriptor) -> Option<Value> {
    let mut pairs = Vec::new();
    for oneof in message.oneofs().filter(|o| !o.is_synthetic()) {
        let names: Vec<String> = oneof.fields().map(|f| f.name().to_owned()).collect();
        for (i, first) in names.iter().enumerate() {
            for second in &names[i + 1..] {
                pairs.push(json!({"required": [first, second]}));
            }
        }
    }
    (!pairs.is_empty()).then(|| json!({"anyOf": pairs}))
}

/// `schema` marked as set by the service alone.
fn read_only(mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        map.insert("readOnly".into(), json!(true));
    }
    schema
}

/// Every message `message` contains, itself included.
fn reach(message: &MessageDescriptor, reached: &mut HashSet<String>) {
    if well_known(message.full_name()).is_some() || !reached.insert(message.full_name().to_owned()) {
        return;
    }
    for field in message.fields() {
        if let Kind::Message(inner) = field.kind() {
            reach(&inner, reached);
        }
    }
}

/// A 64-bit integer: written as a decimal string, read as one or as a
/// number.
fn int64(signed: bool) -> Value {
    let pattern = if signed { "^-?[0-9]+$" } else { "^[0-9]+$" };
    json!({
        "oneOf": [
            {"type": "string", "pattern": pattern},
            {"type": "integer"}
        ],
        "format": if signed { "int64" } else { "uint64" }
    })
}

/// `schema` with `text` as its description (beside a `$ref` in 3.1).
fn described(mut schema: Value, text: &str) -> Value {
    if let Value::Object(map) = &mut schema {
        map.insert("description".into(), json!(text));
    }
    schema
}

/// The JSON form of a well-known type.
fn well_known(full_name: &str) -> Option<Value> {
    let schema = match full_name {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"}),
        "google.protobuf.Struct" => json!({"type": "object", "additionalProperties": true}),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.ListValue" => json!({"type": "array"}),
        "google.protobuf.Empty" => json!({"type": "object", "additionalProperties": false}),
        "google.protobuf.FieldMask" => json!({"type": "string"}),
        "google.protobuf.Any" => {
            json!({"type": "object", "required": ["@type"], "properties": {"@type": {"type": "string"}}})
        }
        "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => json!({"type": "number"}),
        "google.protobuf.Int64Value" => int64(true),
        "google.protobuf.UInt64Value" => int64(false),
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => json!({"type": "integer"}),
        "google.protobuf.BoolValue" => json!({"type": "boolean"}),
        "google.protobuf.StringValue" => json!({"type": "string"}),
        "google.protobuf.BytesValue" => json!({"type": "string", "contentEncoding": "base64"}),
        _ => return None,
    };
    Some(schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> DescriptorPool {
        DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET).unwrap()
    }

    #[test]
    fn an_output_requires_what_is_always_written_and_describes_fields_from_their_comments() {
        let pool = pool();
        let comments = Comments::of(&pool);
        let conversation = pool.get_message_by_name("chatbot.v1.Conversation").unwrap();
        let mut schemas = Schemas::new(&comments, [conversation.clone()]);
        let reference = schemas.message(&conversation, Direction::Output);
        assert_eq!(reference["$ref"], "#/components/schemas/chatbot.v1.Conversation");
        let schema = &schemas.defined["chatbot.v1.Conversation"];
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            required.contains(&"id") && required.contains(&"message_count"),
            "{schema}"
        );
        assert!(
            !required.contains(&"metadata"),
            "a message field is left out when unset"
        );
        let properties = &schema["properties"];
        assert_eq!(properties["created_at"]["format"], "date-time");
        assert_eq!(properties["message_count"]["format"], "int64");
        assert_eq!(properties["metadata"]["type"], "object");
        assert!(
            properties["user_id"]["description"]
                .as_str()
                .unwrap()
                .contains("end user"),
            "{}",
            properties["user_id"]
        );
    }

    #[test]
    fn an_input_requires_nothing_refuses_unknown_fields_and_is_named_apart_from_its_output() {
        let pool = pool();
        let comments = Comments::of(&pool);
        let conversation = pool.get_message_by_name("chatbot.v1.Conversation").unwrap();
        let mut schemas = Schemas::new(&comments, [conversation.clone()]);
        let reference = schemas.message(&conversation, Direction::Input);
        assert_eq!(reference["$ref"], "#/components/schemas/chatbot.v1.Conversation.Input");
        let schema = &schemas.defined["chatbot.v1.Conversation.Input"];
        assert!(schema.get("required").is_none(), "{schema}");
        assert_eq!(schema["additionalProperties"], false);
        assert!(
            schema["properties"].get("id").is_none(),
            "output-only fields are not sent"
        );
    }

    #[test]
    fn field_behavior_makes_request_fields_required_and_response_fields_read_only() {
        let pool = pool();
        let comments = Comments::of(&pool);
        let create = pool
            .get_message_by_name("chatbot.v1.CreateConversationRequest")
            .unwrap();
        let conversation = pool.get_message_by_name("chatbot.v1.Conversation").unwrap();
        let mut schemas = Schemas::new(&comments, [conversation.clone()]);
        let body = schemas.object(&create, Direction::Input, |_| true);
        assert_eq!(body["required"], json!(["user_id", "channel"]), "{body}");
        assert_eq!(body["properties"]["user_id"]["minLength"], 1);
        let item = pool.get_message_by_name("chatbot.v1.KnowledgeItem").unwrap();
        let input = schemas.object(&item, Direction::Input, |_| true);
        assert_eq!(
            input["not"],
            json!({"anyOf": [{"required": ["document", "faq"]}]}),
            "{input}"
        );
        schemas.message(&conversation, Direction::Output);
        let output = &schemas.defined["chatbot.v1.Conversation"];
        assert_eq!(output["properties"]["created_at"]["readOnly"], true);
        assert!(output["properties"]["user_id"].get("readOnly").is_none());
    }
}
