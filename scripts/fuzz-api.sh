#!/usr/bin/env bash
# Contract fuzzing: schemathesis generates requests from openapi.yaml and sends them to the
# local API (numina-local, on a table and bucket of its own) with a valid token. It fails on
# any 5xx, and on any response whose status, content type or body openapi.yaml does not
# describe. FUZZ_EXAMPLES cases per operation in its fuzzing phase (100 by default: 4,000 over
# the 40 operations, with the coverage phase's boundary cases and the stateful phase's
# sequences beside them, within the test command's 15 minutes; 150 took it to 916-935 s.
# More locally, e.g. FUZZ_EXAMPLES=1000 scripts/fuzz-api.sh). Expects moto and redis running
# and scripts/env.sh sourced (scripts/test.sh does both).
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLES=${FUZZ_EXAMPLES:-100}
PORT=${FUZZ_PORT:-3150}
mkdir -p .local/test
export TABLE_NAME="fuzz-$(date +%s)-$$" ATTACHMENTS_BUCKET="fuzz-$(date +%s)-$$"
# The fuzzer is one user sending thousands of requests a minute: it explores what lies behind
# the per-user limits, which tests/tests/limits.rs proves (429 stays in the contract).
export LIMIT_COMPLETIONS_PER_MINUTE=1000000 LIMIT_SEARCHES_PER_MINUTE=1000000 \
  LIMIT_EXPORTS_PER_MINUTE=1000000 LIMIT_BATCHES_PER_MINUTE=1000000 \
  LIMIT_MIGRATIONS_PER_MINUTE=1000000 LIMIT_DAILY_MODEL_TOKENS=1000000000

# The test command built it already (FUZZ_PREBUILT=1): no cargo here, which would wait on
# the package cache lock the Lambda build in the background holds.
if [ -z "${FUZZ_PREBUILT:-}" ]; then
  cargo build --quiet -p local --bin numina-local
fi
step() { echo "== fuzz [${SECONDS}s] $*"; }
step "starting the local API"
target/debug/numina-local serve --port "$PORT" --stream-port $((PORT + 1)) \
  > .local/test/fuzz-api.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$SERVER" 2>/dev/null || { cat .local/test/fuzz-api.log; exit 1; }
  sleep 0.2
done
TOKEN=$(target/debug/numina-local token --user fuzz-user)
step "schemathesis"

# One worker: with two, schemathesis's threads parse Python sources at the same time
# (hypothesis describing its filters), which CPython 3.11 can fail with "SystemError: AST
# constructor recursion depth mismatch" (CPython gh-106905): a crash of the tool, not a finding.
.venv/bin/schemathesis run openapi.yaml \
  --url "http://127.0.0.1:$PORT" \
  --header "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$EXAMPLES" \
  --workers 1 \
  --seed "${FUZZ_SEED:-20261125}" \
  --generation-database none \
  --report junit --report-junit-path .local/test/schemathesis.xml \
  --no-color
