//! The examples of the README and docs/ run: every fenced block marked
//! `example` (```` ```sh example ````, `python example`, `js example`) is
//! extracted, the blocks of one file and language joined in order into one
//! script, and each script run against the stack in a workspace of its
//! own. An example that no longer works fails the build.

use std::{path::Path, process::Command};

use e2e::TestStack;

/// The documents whose examples run.
const DOCUMENTS: &[&str] = &["README.md", "docs/examples.md"];

/// (language, code) of each block marked `example`, in order.
fn examples(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in markdown.lines() {
        if let Some((language, mut code)) = open.take() {
            if line.trim_end() == "```" {
                blocks.push((language, code));
            } else {
                code.push_str(line);
                code.push('\n');
                open = Some((language, code));
            }
        } else if let Some(info) = line.strip_prefix("```")
            && let Some((language, "example")) = info.trim().split_once(' ')
        {
            open = Some((language.to_owned(), String::new()));
        }
    }
    blocks
}

/// How a script in `language` runs, given its file.
fn runner(language: &str, file: &Path) -> Command {
    let mut command = match language {
        "sh" => {
            let mut bash = Command::new("bash");
            bash.args(["-euo", "pipefail"]);
            bash
        }
        "python" => Command::new(
            std::env::var("E2E_PYTHON")
                .expect("E2E_PYTHON is unset: run the suite with deploy/test.sh, which installs requests"),
        ),
        "js" => Command::new("node"),
        other => panic!("no runner for {other} examples"),
    };
    command.arg(file);
    command
}

fn extension(language: &str) -> &'static str {
    match language {
        "sh" => "sh",
        "python" => "py",
        _ => "mjs",
    }
}

/// A port nothing listens on just now, for an example's webhook receiver.
fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    probe.local_addr().expect("an address").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_of_the_readme_and_docs_runs() {
    e2e::require_embedding_model();
    let stack = TestStack::start().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut ran = Vec::new();
    for document in DOCUMENTS {
        let markdown = std::fs::read_to_string(root.join(document)).expect("the document reads");
        let blocks = examples(&markdown);
        assert!(!blocks.is_empty(), "{document} has examples");
        for language in ["sh", "python", "js"] {
            let script: String = blocks
                .iter()
                .filter(|(l, _)| l == language)
                .map(|(_, code)| code.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            if script.is_empty() {
                continue;
            }
            let workspace = stack.new_workspace(&format!("{document} {language}")).await;
            let key = workspace.key().expect("a workspace client holds its key").to_owned();
            let file = std::env::temp_dir().join(format!(
                "e2e-example-{:016x}.{}",
                rand::random::<u64>(),
                extension(language)
            ));
            std::fs::write(&file, &script).unwrap();
            let mut command = runner(language, &file);
            command
                .env("API", &stack.base_url)
                .env("KEY", &key)
                .env("HOOK_PORT", free_port().to_string())
                .current_dir(std::env::temp_dir());
            let output = tokio::task::spawn_blocking(move || command.output())
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("running the {language} examples of {document}: {e}"));
            let _ = std::fs::remove_file(&file);
            assert!(
                output.status.success(),
                "the {language} examples of {document} fail:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            println!(
                "{document} {language}:\n{}",
                String::from_utf8_lossy(&output.stdout).trim_end()
            );
            ran.push(format!("{document} {language}"));
        }
    }
    assert_eq!(
        ran.len(),
        4,
        "README sh, and docs/examples.md in three languages: {ran:?}"
    );
    stack.stop().await;
}
