#!/usr/bin/env bash
# Start newswatch locally: embedded PostgreSQL (unless NEWSWATCH_DATABASE_URL is set), schema, and
# `airflow standalone` on http://localhost:8080 with our dags/ and plugins/. Called by `make run`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DATA=${NEWSWATCH_DATA_DIR:-$ROOT/.data}
export NEWSWATCH_DATA_DIR=$DATA
mkdir -p "$DATA/airflow"

if [ -z "${NEWSWATCH_DATABASE_URL:-}" ]; then
  echo "Starting the embedded PostgreSQL in $DATA/postgres ..."
  NEWSWATCH_DATABASE_URL=$(newswatch db start)
  export NEWSWATCH_DATABASE_URL
  # Airflow's own metadata lives in a second database of the same server.
  SOCKET_DIR="$DATA/postgres"
  python - "$SOCKET_DIR" <<'PY'
import sys, pgserver
server = pgserver.get_server(sys.argv[1], cleanup_mode=None)
if "1 row" not in server.psql("SELECT 1 FROM pg_database WHERE datname = 'airflow'"):
    server.psql("CREATE DATABASE airflow")
PY
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://postgres@/airflow?host=$SOCKET_DIR"
else
  newswatch migrate
fi

newswatch check-config || { echo "Fix the configuration above, then run make run again."; exit 1; }

export AIRFLOW_HOME=$DATA/airflow
export AIRFLOW__CORE__DAGS_FOLDER=$ROOT/dags
export AIRFLOW__CORE__PLUGINS_FOLDER=$ROOT/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin}
export NEWSWATCH_CONFIG=${NEWSWATCH_CONFIG:-$ROOT/config/newswatch.yaml}
PORT=${AIRFLOW__API__PORT:-8080}
export AIRFLOW__API__BASE_URL=${AIRFLOW__API__BASE_URL:-http://localhost:$PORT}

# Airflow's schema now, so that the pool of the mapped tasks gets the configured size before anything runs
# (the scheduler would create it too, as it starts).
airflow db migrate >/dev/null
newswatch pool

echo "Starting Airflow on http://localhost:$PORT (Ctrl-C or make stop stops it) ..."
# In a process group of its own, recorded: `make stop` stops this group and nothing else.
setsid airflow standalone &
AIRFLOW_PID=$!
echo "$AIRFLOW_PID" > "$DATA/airflow.pgid"
trap 'kill -TERM -- -$AIRFLOW_PID 2>/dev/null; wait $AIRFLOW_PID 2>/dev/null; rm -f "$DATA/airflow.pgid"' INT TERM EXIT

for _ in $(seq 1 120); do
  if curl -fsS "http://localhost:$PORT/api/v2/version" >/dev/null 2>&1; then break; fi
  sleep 2
done
PASSWORDS=$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated
cat <<MSG

==============================================================================
 newswatch is up:   http://localhost:$PORT   (newswatch page: Browse > newswatch)
 login:             $(python -c "import json,sys; d=json.load(open(sys.argv[1])); print('  '.join(f'{u} / {p}' for u,p in d.items()))" "$PASSWORDS" 2>/dev/null || echo "see $PASSWORDS")
 alerts so far:     $DATA/alerts.jsonl   (and: newswatch alerts)
 one cycle now:     make poll
==============================================================================

MSG
wait $AIRFLOW_PID
