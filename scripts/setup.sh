#!/usr/bin/env bash
# Installs what the local API and the tests need, if missing: moto's server, cfn-lint,
# cargo-lambda (with zig), schemathesis and the AWS SAM CLI in a project virtualenv (.venv),
# Debian's redis-server, and cargo-nextest (the test runner) if the machine lacks it.
# Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PY_PACKAGES=("moto[server]>=5.1,<6" "cfn-lint>=1.30,<2" "cargo-lambda>=1.8,<2" "schemathesis>=4.3,<5"
  "aws-sam-cli>=1.140,<2")

if [ ! -x "$VENV/bin/moto_server" ] || [ ! -x "$VENV/bin/cfn-lint" ] || [ ! -x "$VENV/bin/cargo-lambda" ] \
  || [ ! -x "$VENV/bin/schemathesis" ] || [ ! -x "$VENV/bin/sam" ]; then
  echo "setup: installing moto[server], cfn-lint, cargo-lambda, schemathesis and aws-sam-cli into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
fi

if ! command -v redis-server >/dev/null 2>&1; then
  echo "setup: installing redis-server from Debian"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

for tool in cargo rustfmt cargo-clippy; do
  command -v "$tool" >/dev/null 2>&1 || { echo "setup: $tool is missing (install Rust with rustup, with rustfmt and clippy)" >&2; exit 1; }
done

if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest 0.9 from crates.io"
  cargo install --locked --quiet cargo-nextest@0.9
fi
