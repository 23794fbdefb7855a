#!/usr/bin/env bash
# What recording every request costs the gateway: two release gateways on
# the same upstreams, one with GATEWAY_USAGE_RECORDING=on and one off, are
# loaded in turn with the same authenticated GET (wrk, through
# ../shared/bench/cpu_per_req.py), each pinned to core 0 with wrk on core 1.
# Prints the load average first, then each run's CPU per request, then the
# medians and their difference: the recording's CPU per request.
#
#   bash deploy/bench/usage_recording.sh   (ROUNDS=3 SECONDS_PER_RUN=10 CONNS=16
#                                           TARGET=/api/v1/webhooks/endpoints)
#
# TARGET=/healthz loads the gateway alone (no upstream, no database), where
# its CPU per request is smallest and the recording's share largest.
#
# Each gateway answers /readyz on its admin port, 1000 above its own.
# Needs wrk (apt-get install wrk), PostgreSQL and RabbitMQ as for the stack.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
source deploy/backing-services.sh
ensure_stack_prerequisites
command -v wrk >/dev/null || die "wrk is missing: sudo apt-get install -y wrk"
cpu_per_req=${CPU_PER_REQ:-$root/../shared/bench/cpu_per_req.py}
[[ -f $cpu_per_req ]] || die "cpu_per_req.py not found at $cpu_per_req; set CPU_PER_REQ"
rounds=${ROUNDS:-3} seconds=${SECONDS_PER_RUN:-10} conns=${CONNS:-16} target=${TARGET:-/api/v1/webhooks/endpoints}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
say "building (upstreams in debug, the gateway in release)"
cargo build -q --bins -p chatbot-service -p integration-service -p analytics-service -p webhook-dispatcher
cargo build -q --release -p gateway
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')

database=bench_recording_$$
psql -h "$PG_HOST" -U postgres -d postgres -qc "CREATE DATABASE $database" >/dev/null
export DATABASE_URL="postgres://postgres@$PG_HOST:$PG_PORT/$database"
# One fixed exchange: reruns reuse its consumers' queues instead of leaving
# new ones behind in RabbitMQ.
export AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f" EVENTS_EXCHANGE="bench.usage-recording.events"
export CHATBOT_GRPC_ADDR=127.0.0.1:51151 INTEGRATION_GRPC_ADDR=127.0.0.1:51152
export ANALYTICS_GRPC_ADDR=127.0.0.1:51153 WEBHOOKS_GRPC_ADDR=127.0.0.1:51154
export GATEWAY_UPSTREAM_CHATBOT=http://$CHATBOT_GRPC_ADDR GATEWAY_UPSTREAM_INTEGRATION=http://$INTEGRATION_GRPC_ADDR
export GATEWAY_UPSTREAM_ANALYTICS=http://$ANALYTICS_GRPC_ADDR GATEWAY_UPSTREAM_WEBHOOKS=http://$WEBHOOKS_GRPC_ADDR
export GATEWAY_ADMIN_TOKEN=bench-admin-token RUST_LOG=warn
# Two gateways side by side, and nothing in the way of a running stack.
export CHATBOT_ADMIN_ADDR=off INTEGRATION_ADMIN_ADDR=off
export ANALYTICS_ADMIN_ADDR=off WEBHOOKS_ADMIN_ADDR=off
export GATEWAY_RATE_LIMIT_PLANS=default:1000000000:1000000000 GATEWAY_RATE_LIMIT_PER_IP=1000000000:1000000000
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  psql -h "$PG_HOST" -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null || true
}
trap cleanup EXIT
# Every component is handed the whole list here; a cluster gives each only
# its own entries.
export PLATFORM_CALL_KEYS=$(generate_call_keys)
for service in chatbot-service integration-service analytics-service webhook-dispatcher; do
  "$target_dir/debug/$service" >/dev/null 2>&1 &
  pids+=($!)
done
declare -A gateway_pid
for mode in on off; do
  port=$([[ $mode == on ]] && echo 18081 || echo 18082)
  GATEWAY_ADDR=127.0.0.1:$port GATEWAY_ADMIN_ADDR=127.0.0.1:$((port + 1000)) GATEWAY_USAGE_RECORDING=$mode \
    taskset -c 0 "$target_dir/release/gateway" >/dev/null 2>&1 &
  pids+=($!)
  gateway_pid[$mode]=$!
done
for port in 18081 18082; do
  deadline=$((SECONDS + 60))
  until curl -fsS "http://127.0.0.1:$((port + 1000))/readyz" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "the gateway on $port was not ready within 60 s"
    sleep 0.5
  done
done
created=$(curl -fsS -X POST http://127.0.0.1:18081/admin/v1/workspaces -H "Authorization: Bearer $GATEWAY_ADMIN_TOKEN" \
  -H 'Content-Type: application/json' -d '{"name": "bench"}')
key=$(printf '%s' "$created" | grep -o '"key":"[^"]*"' | cut -d'"' -f4)

declare -A results
differences=""
for round in $(seq "$rounds"); do
  for mode in on off; do
    port=$([[ $mode == on ]] && echo 18081 || echo 18082)
    line=$(python3 "$cpu_per_req" --pids "${gateway_pid[$mode]}" --duration "$seconds" --conns "$conns" \
      --header "Authorization: Bearer $key" "http://127.0.0.1:$port$target")
    echo "recording=$mode round=$round $line"
    value=$(printf '%s' "$line" | grep -o '"cpu_us_per_req": [0-9.]*' | cut -d' ' -f2)
    results[$mode]+="$value "
    [[ $mode == on ]] && with=$value || differences+="$(awk "BEGIN {print $with - $value}") "
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
on=$(printf '%s' "${results[on]}" | median)
off=$(printf '%s' "${results[off]}" | median)
echo "gateway CPU per request on $target, median of $rounds: recording on ${on} µs, off ${off} µs;" \
  "recording costs $(printf '%s' "$differences" | median) µs (median of each round's difference: $differences)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
