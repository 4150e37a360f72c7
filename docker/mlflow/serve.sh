#!/bin/sh
# Start `mlflow server` with the PostgreSQL store; the password comes from the Compose secret and reaches mlflow
# through MLFLOW_BACKEND_STORE_URI in this process's environment, so it is in no command line.
set -eu
secret=${DB_PASSWORD_FILE:-/run/secrets/db_password}
if [ ! -s "$secret" ]; then
  echo "serve.sh: no database password at $secret; create docker/secrets/db_password (see docker-compose.yml)" >&2
  exit 1
fi
password=$(python -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.stdin.read().strip(), safe=""))' < "$secret")
MLFLOW_BACKEND_STORE_URI="postgresql://mlflow:${password}@${DB_HOST:-postgres}:5432/mlflow"
export MLFLOW_BACKEND_STORE_URI
exec mlflow server "$@"
