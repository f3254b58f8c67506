#!/usr/bin/env bash
# The API against its own document: schemathesis generates requests from
# /api/v1/openapi.json and sends them to the real binary on the example city, in a temp dir,
# with an admin token, on 127.0.0.1. It fails on a 5xx, a response outside its schema, or a
# status code the document does not list. Bounded: at most MAX_EXAMPLES requests per
# operation and MAX_TIME seconds in all (defaults 30 and 150); the daemon is stopped after.
#
#   daemon/tests/schemathesis.sh [path/to/escalade]     (default target/debug/escalade)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${1:-target/debug/escalade}"
max_examples="${MAX_EXAMPLES:-30}"
max_time="${MAX_TIME:-150}"
command -v schemathesis >/dev/null 2>&1 || pip install --quiet --disable-pip-version-check schemathesis

state="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$state"
}
trap cleanup EXIT

token="$(ESCALADE_STATE_DIR="$state" "$bin" token create --role admin --rules examples/city | tail -n 1)"
ESCALADE_STATE_DIR="$state" ESCALADE_LISTEN=127.0.0.1:0 RUST_LOG=warn,escalade=info \
  "$bin" run --rules examples/city 2>"$state/log" &
pid=$!
addr=""
for _ in $(seq 1 100); do
  addr="$(grep -o 'listen=[0-9.:]*' "$state/log" | head -n 1 | cut -d= -f2 || true)"
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$state/log"; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { echo "the daemon did not say where it listens"; cat "$state/log"; exit 1; }

status=0
# From the temp dir, where schemathesis keeps its cache.
# Strategies for the photo types a multipart part may declare (daemon/tests/schemathesis_hooks.py).
hooks_dir="$PWD/daemon/tests"
(cd "$state" && PYTHONPATH="$hooks_dir${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=schemathesis_hooks timeout $((max_time + 60)) schemathesis run "http://$addr/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance \
  --max-examples "$max_examples" --max-time "$max_time" --request-timeout 10 --workers 1 \
  --seed "${SEED:-1}" --generation-database none --no-color) || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- the daemon's log (last 40 lines)"
  tail -n 40 "$state/log"
fi
exit "$status"
