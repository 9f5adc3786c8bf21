#!/usr/bin/env bash
# One command from a fresh clone to every check: installs what is missing, starts moto and
# redis on their own ports, then formatting, template lint, one build of every target, linted
# (every function's binary among them), all tests and, beside them, contract fuzzing of the
# local API, and a release Lambda build and cold-start smoke of a few representative functions.
set -euo pipefail
cd "$(dirname "$0")/.."
export MOTO_PORT=${TEST_MOTO_PORT:-4576} REDIS_PORT=${TEST_REDIS_PORT:-6390}
# The contract fuzzing runs beside the tests, on servers of its own: moto answers one request
# at a time, so the two phases on one moto would take as long as one after the other.
FUZZ_MOTO_PORT=${TEST_FUZZ_MOTO_PORT:-4577} FUZZ_REDIS_PORT=${TEST_FUZZ_REDIS_PORT:-6391}
# Each step is announced with the seconds since the start, so a slow run shows where it went.
step() { echo "== [${SECONDS}s] $*"; }
# What runs in the background, each in a session and so a process group of its own (`setsid`
# without `-w`, which would fork: the job's pid is then its group's), stopped with its
# compilers whatever ends the run; then the local servers.
BACKGROUND=()
stop_background() {
  local group
  for group in "${BACKGROUND[@]}"; do kill -TERM -- "-$group" 2>/dev/null || true; done
  scripts/services.sh stop test
  MOTO_PORT=$FUZZ_MOTO_PORT REDIS_PORT=$FUZZ_REDIS_PORT scripts/services.sh stop fuzz
}
trap stop_background EXIT
# Waits for a background job and forgets it (its id may be reused after).
finish() {
  local job=$1 status=0
  wait "$job" || status=$?
  local kept=()
  for group in "${BACKGROUND[@]}"; do [ "$group" = "$job" ] || kept+=("$group"); done
  BACKGROUND=("${kept[@]}")
  return "$status"
}

# One build of every target, in the dev profile for this machine: every test, every
# function's binary (so each function compiles and links as an executable; the release
# build with cargo-lambda, as deployed, is the smoke below and `sam build`), the local
# gateway, the CLI and the benchmarks. Clippy lints the workspace's crates as this build
# compiles them: its driver is their compiler (what `cargo clippy` does, with `cargo check`),
# so the dependencies are compiled once, not once more for a check. A lint fails the build,
# as `cargo clippy -- -D warnings` does. It needs only the Rust toolchain, so it starts first
# and compiles while the set-up installs the rest (mostly downloads). The tests below run
# from this build with the same compiler, so nothing is compiled again.
command -v cargo-clippy >/dev/null 2>&1 || { echo "test: clippy is missing (rustup component add clippy)" >&2; exit 1; }
export RUSTC_WORKSPACE_WRAPPER
RUSTC_WORKSPACE_WRAPPER=$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
mkdir -p .local/test
step "build and clippy started: every target of the workspace (tests, every function, tools, benchmarks)"
setsid cargo build --workspace --all-targets --quiet --message-format=json-render-diagnostics \
  > .local/test/build-artifacts.jsonl 2> .local/test/build.log &
BUILD=$!
BACKGROUND+=("$BUILD")

# What setup installs with cargo (cargo-nextest, when missing) is not the workspace's: no lints.
env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS scripts/setup.sh
scripts/services.sh start test
MOTO_PORT=$FUZZ_MOTO_PORT REDIS_PORT=$FUZZ_REDIS_PORT scripts/services.sh start fuzz
# shellcheck source=scripts/env.sh
source scripts/env.sh
# Tests run many requests at once on a small machine: give each cache operation 250 ms rather
# than production's 50, so a busy CPU is not taken for a failing cache (tests that want the
# cache to fail stop it, or point it at a port that never answers).
export CACHE_TIMEOUT_MS=${CACHE_TIMEOUT_MS:-250}
# Property tests (arbitrary bodies, cursors and stream images never panic the parsers): 256
# cases each here; PROPTEST_CASES=100000 scripts/test.sh searches longer.
export PROPTEST_CASES=${PROPTEST_CASES:-256}

step "cargo fmt"
cargo fmt --all -- --check
# The Lambda build: two functions that stand for the others (an HTTP read through the cache,
# the table and the cursor keys; a stream consumer), built as deployed, with cargo-lambda in
# release for x86_64 (which needs no extra Rust target; arm64 stays the deploy default, see
# README), then started cold through a local Lambda Runtime API below: each must start and
# answer its event from events/. Sizes and start times are printed (the targets live in the
# cold-start benchmark, not here); every function's own build is checked by the build above.
# It compiles whenever a core is idle (the build's serial stretches, the tests and the
# fuzzing waiting on the local servers), at the lowest priority so it never slows them; its
# release profile has a build directory of its own, and rustc as its compiler (no lints).
SMOKE_FUNCTIONS=${SMOKE_FUNCTIONS:-list-conversations,invalidate-cached-reads}
step "Lambda build started: cargo lambda build --release --x86-64 ($SMOKE_FUNCTIONS, hello-world)"
# A session of its own is a scheduling group of its own (Linux autogroups): a nice value
# counts only inside its group, so the group itself is given the lowest priority (from inside
# the new session: from out here the write could land before the session exists), or it would
# take half the CPU from the build the tests wait for.
PATH="$PWD/.venv/bin:$PATH" setsid sh -c '{ echo 19 > /proc/self/autogroup; } 2>/dev/null; exec "$@"' sh \
  nice -n 19 env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS \
  cargo lambda build --release --x86-64 --quiet \
  -p hello-world $(printf -- '-p %s ' ${SMOKE_FUNCTIONS//,/ }) > .local/test/lambda-build.log 2>&1 &
LAMBDA_BUILD=$!
BACKGROUND+=("$LAMBDA_BUILD")

step "cfn-lint, sam validate --lint"
.venv/bin/cfn-lint template.yaml
# Offline: SAM only needs a region and some credentials to read.
AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local SAM_CLI_TELEMETRY=0 \
  .venv/bin/sam validate --lint

step "build and clippy: waiting for it to finish"
finish "$BUILD" || { cat .local/test/build.log; exit 1; }
cat .local/test/build.log
# The cold-start benchmark as this build made it, for the smoke below: `cargo test --bench`
# would compile it again, as a test, with one package's features (minutes, not seconds).
COLD_START_BENCH=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "cold_start" and m.get("executable"):
        print(m["executable"])
' .local/test/build-artifacts.jsonl)

# From here the Lambda build shares the cores equally with the tests and the fuzzing: its last
# steps (each binary's link-time optimization) are long and serial, and left to idle cores
# alone they ended two minutes after everything else. (A group's nice may go back up to 0
# without privilege; only when the build is still running, so the id is still its own.)
if kill -0 "$LAMBDA_BUILD" 2>/dev/null; then
  { echo 0 > "/proc/$LAMBDA_BUILD/autogroup"; } 2>/dev/null || true
fi

step "contract fuzzing started (schemathesis against the local API, on its own servers)"
(
  export MOTO_PORT=$FUZZ_MOTO_PORT REDIS_PORT=$FUZZ_REDIS_PORT
  unset CACHE_URL
  # shellcheck source=scripts/env.sh
  source scripts/env.sh
  FUZZ_PREBUILT=1 exec setsid scripts/fuzz-api.sh > .local/test/schemathesis.log 2>&1
) &
FUZZ=$!
BACKGROUND+=("$FUZZ")
step "tests (cargo nextest: every test in its own process)"
cargo nextest run --workspace 2>&1 | tee .local/test/nextest.log
# The same tests of appends with slot keys off (scripts/env.sh turns them on): appends in a
# transaction, what every function runs until the template's SlotKeys switch is turned on
# (and edits, which fork branches by slot whatever the switch says). Chosen from the whole
# workspace's tests, as built above: asking for one package (`-p tests`) would unify the
# dependencies' features for it alone and compile 58 crates again (140 s on this machine).
step "tests of appends in a transaction (SLOT_KEYS=false)"
SLOT_KEYS=false cargo nextest run --workspace \
  -E 'binary_id(tests::end_to_end) & (test(/^(appends|faults|batch|migration|stream_poller|summaries)::/) | (test(/^branches::/) - test(/500_messages/)))' \
  2>&1 | tee .local/test/nextest-transactions.log
step "contract fuzzing: waiting for it to finish"
fuzzed=0
finish "$FUZZ" || fuzzed=$?
tail -25 .local/test/schemathesis.log
grep "^== fuzz" .local/test/schemathesis.log || true
[ "$fuzzed" -eq 0 ] || exit "$fuzzed"

step "Lambda build: waiting for it to finish"
finish "$LAMBDA_BUILD" || { cat .local/test/lambda-build.log; exit 1; }
step "cold-start smoke of those builds"
COLD_START_FUNCTIONS=$SMOKE_FUNCTIONS COLD_START_BINARIES="$PWD/target/lambda" COLD_START_RUNS=1 \
  COLD_START_RESULTS="$PWD/.local/test/cold-start-smoke.json" COLD_START_REQUIRE_ANSWERS=1 \
  "$COLD_START_BENCH"

step "done: $(grep -E '^ +Summary' .local/test/nextest.log | sed 's/^ *//')"
