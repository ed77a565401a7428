#!/usr/bin/env bash
# A PostgreSQL server on 127.0.0.1 for distributed Optuna studies (and their test); prints its URL.
#
#   bash scripts/postgres.sh                                   # idempotent
#   export MULTIMODAL_TEST_POSTGRES=$(bash scripts/postgres.sh)
#
# As root on Debian/Ubuntu it installs the `postgresql` package when it is missing, starts the
# newest cluster (listening on 127.0.0.1 only), and creates a login role and a database. Elsewhere
# (macOS, no root) it only creates the role and database on a server that already runs, as the
# current user. Environment: MULTIMODAL_PG_PORT (5432), MULTIMODAL_PG_USER (multimodal),
# MULTIMODAL_PG_PASSWORD (multimodal), MULTIMODAL_PG_DB (multimodal_test).
set -euo pipefail
PORT=${MULTIMODAL_PG_PORT:-5432}
ROLE=${MULTIMODAL_PG_USER:-multimodal}
PASSWORD=${MULTIMODAL_PG_PASSWORD:-multimodal}
DB=${MULTIMODAL_PG_DB:-multimodal_test}
log() { printf '[postgres] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

if [ "$(id -u)" = 0 ]; then
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    command -v apt-get >/dev/null || die "PostgreSQL is missing and apt-get is not available: install PostgreSQL >= 12"
    log "installing PostgreSQL (apt-get install postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
  fi
  VERSION=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main"' | grep -q .; then
    log "creating cluster $VERSION/main"
    pg_createcluster "$VERSION" main --port "$PORT" >&2
  fi
  CONF=/etc/postgresql/$VERSION/main
  [ -d "$CONF/conf.d" ] || die "cluster configuration $CONF/conf.d not found"
  # conf.d is read after postgresql.conf, so these win; a change needs a restart
  WANT=$(printf "listen_addresses = '127.0.0.1'\nport = %s\n" "$PORT")
  if [ "$(cat "$CONF/conf.d/multimodal.conf" 2>/dev/null)" != "$WANT" ]; then
    printf '%s\n' "$WANT" > "$CONF/conf.d/multimodal.conf"
    pg_ctlcluster "$VERSION" main stop >/dev/null 2>&1 || true
  fi
  if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $4}' | grep -q online; then
    log "starting cluster $VERSION/main on 127.0.0.1:$PORT"
    pg_ctlcluster "$VERSION" main start >&2
  fi
  psql_admin() { runuser -u postgres -- psql -p "$PORT" -v ON_ERROR_STOP=1 -qtA "$@"; }
else
  command -v psql >/dev/null || die "not root and no psql: install and start PostgreSQL, then re-run"
  psql_admin() { psql -h 127.0.0.1 -p "$PORT" -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
fi

for _ in $(seq 1 30); do  # the server may take a moment to accept connections
  psql_admin -c "SELECT 1" >/dev/null 2>&1 && break
  sleep 1
done
psql_admin -c "SELECT 1" >/dev/null || die "the server on port $PORT does not accept connections"
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
  log "creating role $ROLE"
  psql_admin -c "CREATE ROLE \"$ROLE\" LOGIN PASSWORD '$PASSWORD'"
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
  log "creating database $DB"
  psql_admin -c "CREATE DATABASE \"$DB\" OWNER \"$ROLE\""
fi
echo "postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"
