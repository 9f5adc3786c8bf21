#!/usr/bin/env bash
# One command from a fresh clone to every check: installs what is missing, starts moto and
# redis on their own ports, then formatting, lints, template lint, all tests, contract
# fuzzing of the local API, and a Lambda build of every function.
set -euo pipefail
cd "$(dirname "$0")/.."
export MOTO_PORT=${TEST_MOTO_PORT:-4576} REDIS_PORT=${TEST_REDIS_PORT:-6390}

scripts/setup.sh
scripts/services.sh start test
trap 'scripts/services.sh stop test' EXIT
# shellcheck source=scripts/env.sh
source scripts/env.sh

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cfn-lint"
.venv/bin/cfn-lint template.yaml
echo "== tests"
mkdir -p .local/test
cargo test --workspace 2>&1 | tee .local/test/cargo-test.log
echo "== contract fuzzing (schemathesis against the local API)"
scripts/fuzz-api.sh 2>&1 | tee .local/test/schemathesis.log | tail -25
echo "== Lambda build (x86_64; deploys build arm64)"
PATH="$PWD/.venv/bin:$PATH" cargo lambda build --release --x86-64 \
  $(for f in functions/*/; do printf -- '--package %s ' "$(basename "$f")"; done)

# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' \
  .local/test/cargo-test.log
