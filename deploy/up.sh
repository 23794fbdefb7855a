#!/usr/bin/env bash
# Brings the whole stack up locally: PostgreSQL and RabbitMQ, a build, all
# five services, a demo workspace; then prints how to use it. Ctrl-C stops
# everything. Safe to run again without cleaning up.
#
# Settings (environment): GATEWAY_PORT (8080), DATABASE_NAME
# (chatbot_platform), GATEWAY_ADMIN_TOKEN (random per run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source deploy/backing-services.sh

ensure_stack_prerequisites

gateway_port=${GATEWAY_PORT:-8080}
database=${DATABASE_NAME:-chatbot_platform}
for port in "$gateway_port" 50051 50052 50053 50054 9100 9101 9102 9103 9104; do
  port_open 127.0.0.1 "$port" && die "port $port is already in use (is the stack already running?). Stop it, or set GATEWAY_PORT for the gateway."
done

say "building the services"
cargo build --workspace --bins
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="$target_dir/debug"
ensure_embedding_model "$target_dir/models"
ensure_swagger_ui "$target_dir"

if ! psql -h "$PG_HOST" -U postgres -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = '$database'" | grep -q 1; then
  say "creating database $database"
  psql -h "$PG_HOST" -U postgres -d postgres -qc "CREATE DATABASE \"$database\"" >/dev/null
fi

admin_token=${GATEWAY_ADMIN_TOKEN:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}
logs="$target_dir/local-stack"
mkdir -p "$logs"
export DATABASE_URL="postgres://postgres@$PG_HOST:$PG_PORT/$database"
export AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f"
export GATEWAY_ADDR="127.0.0.1:$gateway_port" GATEWAY_ADMIN_TOKEN="$admin_token"
export RUST_LOG=${RUST_LOG:-info}
# grpcurl can list and call the services locally; production leaves it off.
export GRPC_REFLECTION=${GRPC_REFLECTION:-on}
# Local receivers (the quickstart's) live on loopback, which production refuses.
export WEBHOOKS_ALLOWED_CIDRS=${WEBHOOKS_ALLOWED_CIDRS:-127.0.0.0/8}
# A workspace's own database may be on this machine too.
export INTEGRATION_ALLOWED_CIDRS=${INTEGRATION_ALLOWED_CIDRS:-127.0.0.0/8}
# Shopify stores send their webhooks to the gateway's public URL; set it to
# one Shopify can reach (a tunnel) to receive them here.
export INTEGRATION_PUBLIC_URL=${INTEGRATION_PUBLIC_URL:-http://127.0.0.1:$gateway_port}
# A model server on this machine (Ollama, llama.cpp) may serve llm bots.
export CHATBOT_LLM_ALLOWED_CIDRS=${CHATBOT_LLM_ALLOWED_CIDRS:-127.0.0.0/8}

pids=()
stop_all() {
  # A second Ctrl-C (or a TERM forwarded twice) must not cut the clean-up
  # short and leave the services running.
  trap '' INT TERM
  trap - EXIT
  # Output may go to a pipe that Ctrl-C already closed: stop the services
  # first, and never let a failed write abort the clean-up.
  trap '' PIPE
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    say "stopping the stack" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# Calls between components carry tokens signed with a key per (caller,
# callee), fresh for each run; each process holds only the keys naming it.
call_keys=$(generate_call_keys)
# Each service runs in a session of its own: Ctrl-C reaches only this
# script, which then stops the services with SIGTERM, as Kubernetes would.
for service in chatbot-service integration-service analytics-service webhook-dispatcher gateway; do
  PLATFORM_CALL_KEYS=$(call_keys_for "$call_keys" "$(party_of "$service")") \
    setsid "$bin/$service" >"$logs/$service.log" 2>&1 &
  pids+=($!)
done

say "waiting for the gateway to be ready"
deadline=$((SECONDS + 60))
until curl -fsS "http://127.0.0.1:9100/readyz" >/dev/null 2>&1; do
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      names=(chatbot-service integration-service analytics-service webhook-dispatcher gateway)
      tail -n 20 "$logs/${names[$i]}.log" >&2
      die "${names[$i]} exited during start-up (log: $logs/${names[$i]}.log)"
    fi
  done
  ((SECONDS < deadline)) || die "the stack was not ready within 60 s; logs are in $logs"
  sleep 0.5
done

created=$(curl -fsS -X POST "http://127.0.0.1:$gateway_port/admin/v1/workspaces" \
  -H "Authorization: Bearer $admin_token" -H 'Content-Type: application/json' \
  -d '{"name": "demo"}') || die "could not create the demo workspace"
api_key=$(printf '%s' "$created" | grep -o '"key":"[^"]*"' | cut -d'"' -f4)
workspace=$(printf '%s' "$created" | grep -o '"id":"ws_[^"]*"' | cut -d'"' -f4)

cat <<INFO

  The chatbot platform is up.

  Gateway         http://127.0.0.1:$gateway_port
  API reference   http://127.0.0.1:$gateway_port/docs (OpenAPI: /openapi.json; authorize with the API key below)
  Workspace       $workspace (demo)
  API key         $api_key
  Admin token     $admin_token
  Logs            $logs/
  Metrics         http://127.0.0.1:9100/metrics (gateway), and each service's on 127.0.0.1:9101 … 9104/metrics

  Try it:
    curl -s -X POST http://127.0.0.1:$gateway_port/api/v1/conversations \\
      -H 'Authorization: Bearer $api_key' -H 'Content-Type: application/json' \\
      -d '{"user_id": "customer-1", "channel": "web"}'

  Press Ctrl-C to stop everything.

INFO
status=0
wait -n "${pids[@]}" || status=$?
# Above 128, wait was cut short by a signal (Ctrl-C): a normal stop.
((status > 128)) && exit 130
die "a service stopped unexpectedly (exit $status); logs are in $logs"
