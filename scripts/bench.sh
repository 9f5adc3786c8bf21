#!/usr/bin/env bash
# Runs every benchmark against the local servers (started on the test ports); each writes its
# results under docs/benchmarks/, and bench/report.py writes docs/benchmarks.md from them.
# The peers (LangChain's DynamoDBChatMessageHistory) go into their own virtualenv,
# .venv-bench, from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ ! -x .venv-bench/bin/python ] || ! .venv-bench/bin/python -c "import langchain_community, boto3" 2>/dev/null; then
  echo "bench: installing langchain-community and boto3 into .venv-bench"
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install --quiet --disable-pip-version-check "langchain-community>=0.3,<0.5" "boto3>=1.34"
fi
export MOTO_PORT=${TEST_MOTO_PORT:-4576} REDIS_PORT=${TEST_REDIS_PORT:-6390}
scripts/services.sh start test
trap 'scripts/services.sh stop test' EXIT
source scripts/env.sh
# Append cost, ours and the peer's, one after the other against the same server.
cargo bench -p tests --bench append_cost
.venv-bench/bin/python -W ignore::DeprecationWarning bench/peer/append_cost_langchain.py
cargo bench -p shared --bench context_selection
cargo bench -p numina-migrate --bench migration_throughput
cargo bench -p tests --bench cache_list
cargo bench -p tests --bench search_index
python3 bench/report.py
echo "bench: docs/benchmarks.md written"
