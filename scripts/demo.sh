#!/usr/bin/env bash
# The demo pathway, as a site and a commons operator would run it, one real command at a time.
# Called by `make demo`; every path lives under $DEMO (default var/demo).
set -euo pipefail

RC=${RC:-.venv/bin/radcommons}
DEMO=${DEMO:-var/demo}
SITES=${SITES:-3}
PATIENTS=${PATIENTS:-8}
SEED=${SEED:-2026}
PROJECT=${PROJECT:-Open-A1}

export RADCOMMONS_DATABASE_URL=${RADCOMMONS_DATABASE_URL:-sqlite:///$DEMO/commons/radcommons.db}
export RADCOMMONS_OBJECT_STORE_URL=${RADCOMMONS_OBJECT_STORE_URL:-$DEMO/commons/objects}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -rf "$DEMO"
mkdir -p "$DEMO"

step "1. Synthetic hospital exports: $SITES sites x $PATIENTS patients (seed $SEED)"
"$RC" synth "$DEMO/exports" --sites "$SITES" --patients "$PATIENTS" --seed "$SEED" --small --defects

step "2. The commons index"
"$RC" db upgrade

for export in "$DEMO"/exports/*/; do
  site=$(basename "$export")
  state="$DEMO/site-state/$site"
  mkdir -p "$state"
  step "3. Site $site: de-identify at the site (the report stays in $state)"
  "$RC" keygen "$state/deid.key"
  "$RC" deid "$export" "$DEMO/deidentified/$site" --site "$site" --key-file "$state/deid.key" \
    --state-dir "$state" --report "$state/deid-report.json" || true
  step "4. Site $site: ingest into project $PROJECT through the verification gate"
  "$RC" ingest "$DEMO/deidentified/$site" --project "$PROJECT" --site "$site" \
    --dataset "${site}_demo" --report "$state/ingest-report.json"
done

step "5. What the commons holds"
"$RC" db counts
echo
echo "Index: $RADCOMMONS_DATABASE_URL"
echo "Objects: $RADCOMMONS_OBJECT_STORE_URL"
