//! Compiles `proto/**/*.proto` with protox (no system `protoc` needed), writes
//! the file descriptor set next to the generated code, and generates the
//! tonic clients and servers from that same set so both always agree.

use std::{env, fs, path::PathBuf};

use prost::Message;

const FILES: &[&str] = &[
    "chatbot/v1/conversations.proto",
    "chatbot/v1/messages.proto",
    "chatbot/v1/bots.proto",
    "chatbot/v1/knowledge.proto",
    "chatbot/v1/secrets.proto",
    "integration/v1/integrations.proto",
    "analytics/v1/analytics.proto",
    "webhooks/v1/webhooks.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files: Vec<String> = FILES.iter().map(|f| format!("proto/{f}")).collect();
    let mut compiler = protox::Compiler::new(["proto"])?;
    // Source info carries the proto comments: the gateway's OpenAPI document
    // describes the API with them.
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&files)?;
    // Encoded by protox itself: decoding into prost_types first would drop
    // the custom options (google.api.http) the gateway reads.
    let encoded = compiler.encode_file_descriptor_set();
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("descriptor.bin"), &encoded)?;
    let descriptors = prost_types::FileDescriptorSet::decode(encoded.as_slice())?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
