#!/usr/bin/env bash
# One function's Lambda artifact for `sam build` (see the Makefile): builds every function
# for Lambda in one cargo-lambda invocation (a no-op when they are up to date) and copies the
# bootstrap of the function named by <Stem> (ListConversations: list-conversations) into
# SAM's artifacts directory.
#
#   scripts/lambda-artifact.sh <Stem> <artifacts-dir> [arm64|x86-64]
#   scripts/lambda-artifact.sh --binary <Stem>     (only print the function's name)
set -euo pipefail

binary_of() {
  sed -E 's/([a-z0-9])([A-Z])/\1-\2/g' <<<"$1" | tr '[:upper:]' '[:lower:]'
}
if [ "${1:-}" = --binary ]; then
  binary_of "$2"
  exit 0
fi

stem=$1
artifacts=$(realpath -m "$2")
arch=${3:-arm64}
case "$arch" in
  arm64 | x86-64) ;;
  *)
    echo "lambda-artifact: architecture must be arm64 or x86-64, not $arch" >&2
    exit 2
    ;;
esac
binary=$(binary_of "$stem")

cd "$(dirname "$0")/.."
if [ ! -d "functions/$binary" ]; then
  echo "lambda-artifact: no function functions/$binary for $stem" >&2
  exit 2
fi
# cargo-lambda lives in .venv when scripts/setup.sh installed it.
[ -x .venv/bin/cargo-lambda ] && PATH="$PWD/.venv/bin:$PATH"
packages=()
for dir in functions/*/; do
  packages+=(-p "$(basename "$dir")")
done
lambda_dir="${CARGO_TARGET_DIR:-target}/lambda"
cargo lambda build --release "--$arch" --lambda-dir "$lambda_dir" "${packages[@]}"
mkdir -p "$artifacts"
cp "$lambda_dir/$binary/bootstrap" "$artifacts/bootstrap"
