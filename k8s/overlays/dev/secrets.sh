#!/usr/bin/env bash
# Creates the Secrets the dev overlay's components read, with fresh keys:
# each component gets only its own PLATFORM_CALL_KEYS entries.
#   k8s/overlays/dev/secrets.sh [namespace]   (default chatbot-dev)
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
source "$root/deploy/backing-services.sh"
ns=${1:-chatbot-dev}
password=$(head -c 18 /dev/urandom | base64 -w0 | tr -d '/+=')
database="postgres://postgres:$password@postgres:5432/chatbot_platform"
amqp="amqp://guest:guest@rabbitmq:5672/%2f"
keys=$(generate_call_keys)
kubectl -n "$ns" create secret generic dev-backing-services --from-literal=postgres-password="$password"
for component in gateway chatbot-service integration-service analytics-service webhook-dispatcher; do
  extra=()
  case $component in
    gateway) extra=(--from-literal=GATEWAY_ADMIN_TOKEN="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')") ;;
    chatbot-service) extra=(--from-literal=CHATBOT_SECRET_KEYS="k1:$(head -c 32 /dev/urandom | base64 -w0)") ;;
    integration-service) extra=(--from-literal=INTEGRATION_SECRET_KEYS="k1:$(head -c 32 /dev/urandom | base64 -w0)") ;;
  esac
  kubectl -n "$ns" create secret generic "$component-secrets" \
    --from-literal=DATABASE_URL="$database" --from-literal=AMQP_URL="$amqp" \
    --from-literal=PLATFORM_CALL_KEYS="$(call_keys_for "$keys" "$(party_of "$component")")" "${extra[@]}"
done
