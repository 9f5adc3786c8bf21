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
# Tests run many requests at once on a small machine: give each cache operation 250 ms rather
# than production's 50, so a busy CPU is not taken for a failing cache (tests that want the
# cache to fail stop it, or point it at a port that never answers).
export CACHE_TIMEOUT_MS=${CACHE_TIMEOUT_MS:-250}
# Property tests (arbitrary bodies, cursors and stream images never panic the parsers): 256
# cases each here; PROPTEST_CASES=100000 scripts/test.sh searches longer.
export PROPTEST_CASES=${PROPTEST_CASES:-256}
# Each step is announced with the seconds since the start, so a slow run shows where it went.
step() { echo "== [${SECONDS}s] $*"; }

step "cargo fmt"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
step "cfn-lint, sam validate --lint"
.venv/bin/cfn-lint template.yaml
# Offline: SAM only needs a region and some credentials to read.
AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local SAM_CLI_TELEMETRY=0 \
  .venv/bin/sam validate --lint
step "tests"
mkdir -p .local/test
cargo test --workspace 2>&1 | tee .local/test/cargo-test.log
step "contract fuzzing (schemathesis against the local API)"
scripts/fuzz-api.sh 2>&1 | tee .local/test/schemathesis.log | tail -25
# The Lambda build: every function with cargo-lambda in release, in one cargo invocation (the
# dependencies are built once for all of them). CI checks it for x86_64, which needs no extra
# Rust target, and without link-time optimisation (29 LTO passes would take most of CI's time
# on 2 cores; LTO changes no compile or link error); the deploy build stays arm64 with LTO
# (`sam build`, see README), which needs rustup's aarch64 target.
step "Lambda build: cargo lambda build --release --x86-64 (every function; no LTO in CI)"
CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
  PATH="$PWD/.venv/bin:$PATH" cargo lambda build --release --x86-64 \
  $(for f in functions/*/; do printf -- '--package %s ' "$(basename "$f")"; done)

# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' \
  .local/test/cargo-test.log
step "done"
