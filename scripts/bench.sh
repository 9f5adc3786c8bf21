#!/usr/bin/env bash
# Runs every benchmark against the local servers (started on the test ports); each writes its
# results under docs/benchmarks/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export MOTO_PORT=${TEST_MOTO_PORT:-4576} REDIS_PORT=${TEST_REDIS_PORT:-6390}
scripts/services.sh start test
trap 'scripts/services.sh stop test' EXIT
source scripts/env.sh
cargo bench -p shared --bench context_selection
cargo bench -p numina-migrate --bench migration_throughput
cargo bench -p tests --bench cache_list
cargo bench -p tests --bench search_index
