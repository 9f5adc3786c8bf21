#!/usr/bin/env bash
# The benchmarks' one command: runs every benchmark against the local servers (started on the
# test ports), each writing its results under docs/benchmarks/, then bench/report.py writes
# docs/benchmarks.md from them. About an hour on 2 cores, most of it release builds.
# The peers (LangChain's DynamoDBChatMessageHistory) go into their own virtualenv,
# .venv-bench, from PyPI. Knobs: PEER_BUDGET_SECONDS (the peer's one-at-a-time appends, default
# 300), COLD_START_RUNS (default 5), THROUGHPUT_SECONDS (per scenario, default 10), BENCH_OTHERS=0
# (skips the migration, cache-list and search benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ ! -x .venv-bench/bin/python ] || ! .venv-bench/bin/python -c "import langchain_community, boto3" 2>/dev/null; then
  echo "bench: installing langchain-community and boto3 into .venv-bench"
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install --quiet --disable-pip-version-check "langchain-community>=0.3,<0.5" "boto3>=1.34"
fi
# Servers of its own (not the test command's ports), fresh for every run.
export MOTO_PORT=${BENCH_MOTO_PORT:-4586} REDIS_PORT=${BENCH_REDIS_PORT:-6400}
scripts/services.sh start bench
trap 'scripts/services.sh stop bench' EXIT
source scripts/env.sh
# Each benchmark writes its results under docs/benchmarks/; the report is made from them.
step() { echo "== bench [${SECONDS}s] $*"; }
step "1. append cost: Numina, then LangChain's DynamoDBChatMessageHistory, on the same server"
cargo bench -p tests --bench append_cost
.venv-bench/bin/python -W ignore::DeprecationWarning bench/peer/append_cost_langchain.py
step "1b. message cost: all-in write and read units per message, metered, mixed workload"
cargo bench -p tests --bench message_cost
step "2. cold start: every function's release binary and a hello-world, through a local Runtime API"
cargo bench -p tests --bench cold_start
step "3. round trips and bytes per request, by endpoint, cache cold and warm"
cargo bench -p tests --bench round_trips
step "3b. export memory: 200 messages of 2 MiB"
cargo bench -p tests --bench export_memory
step "4. handler CPU (criterion)"
rm -rf target/criterion
cargo bench -p shared --bench hot_paths
python3 bench/collect_criterion.py
step "5. throughput (wrk against the local gateway)"
bench/throughput.sh
if [ "${BENCH_OTHERS:-1}" = 1 ]; then
  step "other results: migration, cache, search"
  cargo bench -p numina-migrate --bench migration_throughput
  cargo bench -p tests --bench cache_list
  cargo bench -p tests --bench search_index
else
  step "other results: not run (BENCH_OTHERS=0); the report links their last results"
fi
python3 bench/report.py
step "docs/benchmarks.md written"
