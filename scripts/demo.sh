#!/usr/bin/env bash
# The demo pathway, as sites and a commons operator would run it, one real command at a time.
# Called by `make demo`; everything lives under $DEMO (default var/demo). Ends with the commons
# running in the background and its URL printed.
set -euo pipefail

RC=${RC:-.venv/bin/radcommons}
DEMO=${DEMO:-var/demo}
SITES=${SITES:-3}
PATIENTS=${PATIENTS:-8}
SEED=${SEED:-2026}
PROJECT=${PROJECT:-Open-A1}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
URL="http://$HOST:$PORT"

export RADCOMMONS_DATABASE_URL=${RADCOMMONS_DATABASE_URL:-sqlite:///$DEMO/commons/radcommons.db}
export RADCOMMONS_OBJECT_STORE_URL=${RADCOMMONS_OBJECT_STORE_URL:-$DEMO/commons/objects}
export RADCOMMONS_SERVER_STATE_DIR=${RADCOMMONS_SERVER_STATE_DIR:-$DEMO/commons/server}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# A commons left running by an earlier demo is stopped first.
if [ -f "$DEMO/commons/server.pid" ]; then
  kill "$(cat "$DEMO/commons/server.pid")" 2>/dev/null || true
  sleep 1
fi
if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
  echo "error: something already listens on $HOST:$PORT; stop it or run: make demo PORT=8001" >&2
  exit 2
fi
rm -rf "$DEMO"
mkdir -p "$DEMO/commons" "$DEMO/secrets"

step "1. Synthetic hospital exports: $SITES sites x $PATIENTS patients (seed $SEED), with the usual defects"
"$RC" synth "$DEMO/exports" --sites "$SITES" --patients "$PATIENTS" --seed "$SEED" --small --defects

step "2. The commons: index, an admin, and the server at $URL"
"$RC" db upgrade
"$RC" admin user add demo-admin --role admin
"$RC" admin token create demo-admin --label demo > "$DEMO/secrets/admin.token"
chmod 600 "$DEMO/secrets/admin.token"
"$RC" admin user add demo-researcher --role researcher
"$RC" admin token create demo-researcher --label demo > "$DEMO/secrets/researcher.token"
chmod 600 "$DEMO/secrets/researcher.token"
nohup "$RC" serve --host "$HOST" --port "$PORT" > "$DEMO/commons/server.log" 2>&1 &
echo $! > "$DEMO/commons/server.pid"
for _ in $(seq 1 60); do
  curl -fsS "$URL/api/v1/health" > /dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "$URL/api/v1/health" > /dev/null || { echo "the server did not start; see $DEMO/commons/server.log" >&2; exit 1; }

for export in "$DEMO"/exports/*/; do
  site=$(basename "$export")
  state="$DEMO/site-state/$site"
  mkdir -p -m 700 "$state"  # private: the key, the token, the registry and reports
  step "3. Site $site: a contributor account, a de-identification key, and the contribution"
  "$RC" admin user add "$site-uploader" --role contributor --project "$PROJECT" --site "$site"
  "$RC" admin token create "$site-uploader" --label demo > "$state/commons.token"
  chmod 600 "$state/commons.token"
  "$RC" keygen "$state/deid.key"
  # --allow-partial: the synthetic export carries a bad clinical row on purpose; the receipt shows it.
  "$RC" contribute "$export" --clinical "$export/clinical" --site "$site" --project "$PROJECT" \
    --server "$URL" --token-file "$state/commons.token" --key-file "$state/deid.key" \
    --state-dir "$state" --dataset "${site}_demo" --allow-partial
done

step "4. What the commons holds"
"$RC" db counts
cat <<MSG

The commons is running at $URL  (API docs: $URL/docs)
Admin token:      $(cat "$DEMO/secrets/admin.token")   (also in $DEMO/secrets/admin.token)
Researcher token: $(cat "$DEMO/secrets/researcher.token")   (also in $DEMO/secrets/researcher.token)
Log in to the explorer with either; the README walks through a cohort, the viewer and an export.
Site reports, receipts and pseudonym registries (private to each site): $DEMO/site-state/
Stop the server: kill \$(cat $DEMO/commons/server.pid)
MSG
