#!/usr/bin/env bash
# One command from a fresh clone to the API on http://127.0.0.1:3000: installs what is
# missing, starts moto and redis, creates the table from template.yaml, serves the API.
set -euo pipefail
cd "$(dirname "$0")/.."
export MOTO_PORT=${MOTO_PORT:-4566} REDIS_PORT=${REDIS_PORT:-6380} PORT=${PORT:-3000}

scripts/setup.sh
scripts/services.sh start dev
trap 'scripts/services.sh stop dev' EXIT
# shellcheck source=scripts/env.sh
source scripts/env.sh

# The local gateway, and the migration CLI the README's Migration section runs.
cargo build --quiet -p local --bin numina-local -p numina-migrate --bin numina-migrate
echo "Mint a token with: target/debug/numina-local token --user alice"
target/debug/numina-local serve --port "$PORT"
