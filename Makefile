# `sam build` (template.yaml: every function's Metadata.BuildMethod is makefile, built in
# source: samconfig.toml) runs `make build-<LogicalId>` once per function with ARTIFACTS_DIR
# set. Each call runs one cargo-lambda build of every function: the first compiles the
# dependencies once and links the binaries side by side; the later calls find them up to
# date. Then it copies its function's bootstrap. LAMBDA_ARCH is arm64 (the template's
# Architectures) or x86-64: SAM does not pass the architecture on, so a template built for
# x86_64 needs LAMBDA_ARCH=x86-64 too.
LAMBDA_ARCH ?= arm64
ROOT := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))

build-%Function:
	$(ROOT)scripts/lambda-artifact.sh "$*" "$(ARTIFACTS_DIR)" "$(LAMBDA_ARCH)"
