#!/usr/bin/env bash
# Runs the whole test suite: formatting and lints, then every unit and
# end-to-end test against the real PostgreSQL, RabbitMQ and MariaDB (started
# here when they are not running).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source deploy/backing-services.sh

ensure_stack_prerequisites
ensure_mariadb
ensure_redis_binary
ensure_promtool
ensure_openssl
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
mkdir -p "$target_dir"
ensure_test_python "$target_dir"
ensure_kubectl "$target_dir"
ensure_checkov "$target_dir"
ensure_schemathesis "$target_dir"
ensure_client_generator "$target_dir"
ensure_swagger_ui "$target_dir"
ensure_chromium
ensure_embedding_model "$target_dir/models"

say "cargo fmt --check"
cargo fmt --all --check
say "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
say "cargo test"
cargo test --workspace --locked
