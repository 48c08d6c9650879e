#!/usr/bin/env bash
# The whole test suite, on a fresh machine or in CI: makes sure the services the tests talk to
# are up (PostgreSQL and MariaDB on 127.0.0.1, etcd on a loopback port it starts itself), then
# runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

# --- PostgreSQL ---------------------------------------------------------------------------
pg_ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null || psql -h 127.0.0.1 -U postgres -Atqc 'select 1' >/dev/null 2>&1; }
if ! pg_ready; then
  log "starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
fi
pg_ready || { echo "PostgreSQL is not reachable on 127.0.0.1:5432 (user postgres, trust)"; exit 1; }

# --- MariaDB ------------------------------------------------------------------------------
my_ready() { mysqladmin -h 127.0.0.1 -u root ping >/dev/null 2>&1 || mariadb -h 127.0.0.1 -u root -e 'select 1' >/dev/null 2>&1; }
if ! my_ready; then
  log "starting MariaDB"
  if command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ]; then
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  fi
  for _ in $(seq 1 30); do my_ready && break; sleep 1; done
fi
my_ready || { echo "MariaDB is not reachable on 127.0.0.1:3306 (root, no password)"; exit 1; }

# --- etcd, for the etcd tests (the build itself needs nothing but the Rust toolchain) ---------
if ! { command -v etcd >/dev/null || [ -x /usr/bin/etcd ]; }; then
  log "installing etcd-server"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi

# --- etcd: our own server on free loopback ports, stopped at exit ---------------------------
# A port nobody listens on (bash's /dev/tcp: a refused connection means free).
free_port() {
  local p
  while :; do
    p=$(( 20000 + RANDOM % 40000 ))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
if [ -z "${BFM_TEST_ETCD_ENDPOINTS:-}" ]; then
  etcd_bin="$(command -v etcd || echo /usr/bin/etcd)"
  etcd_dir="$(mktemp -d)"
  client_port="$(free_port)"; peer_port="$(free_port)"
  log "starting etcd on 127.0.0.1:${client_port}"
  "$etcd_bin" --name bfm-test --data-dir "$etcd_dir/data" \
    --listen-client-urls "http://127.0.0.1:${client_port}" --advertise-client-urls "http://127.0.0.1:${client_port}" \
    --listen-peer-urls "http://127.0.0.1:${peer_port}" --initial-advertise-peer-urls "http://127.0.0.1:${peer_port}" \
    --initial-cluster "bfm-test=http://127.0.0.1:${peer_port}" >"$etcd_dir/etcd.log" 2>&1 &
  etcd_pid=$!
  trap 'kill "$etcd_pid" 2>/dev/null || true; wait "$etcd_pid" 2>/dev/null || true; rm -rf "$etcd_dir"' EXIT
  export BFM_TEST_ETCD_ENDPOINTS="127.0.0.1:${client_port}"
  etcd_ready() { curl -fsS "http://${BFM_TEST_ETCD_ENDPOINTS}/health" 2>/dev/null | grep -q '"health":"true"'; }
  for _ in $(seq 1 50); do etcd_ready && break; sleep 0.2; done
  etcd_ready || { echo "etcd did not start:"; cat "$etcd_dir/etcd.log"; exit 1; }
fi

# --- The tests ----------------------------------------------------------------------------
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
if cargo nextest --version >/dev/null 2>&1; then
  log "cargo nextest run --workspace"
  cargo nextest run --workspace --no-fail-fast "$@"
else
  log "cargo test --workspace"
  cargo test --workspace --no-fail-fast "$@"
fi
