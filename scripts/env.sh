# Environment shared by the local API and the tests: every AWS SDK call goes to moto on
# 127.0.0.1 with dummy credentials. Source it after setting MOTO_PORT and REDIS_PORT.
export AWS_ENDPOINT_URL="http://127.0.0.1:${MOTO_PORT}"
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
unset AWS_PROFILE AWS_SESSION_TOKEN
export REDIS_URL="redis://127.0.0.1:${REDIS_PORT}"
# The cache (Redis/Valkey protocol); unset it to run without one.
export CACHE_URL=${CACHE_URL:-$REDIS_URL}
export TABLE_NAME=${TABLE_NAME:-numina-conversations}
export ATTACHMENTS_BUCKET=${ATTACHMENTS_BUCKET:-numina-attachments}
# moto serves S3 at one host: path-style URLs (AWS uses virtual-hosted ones).
export S3_FORCE_PATH_STYLE=true
# Local only: the deployed stack generates its own secret in Secrets Manager.
export CURSOR_SECRET=${CURSOR_SECRET:-local-cursor-signing-secret-0123456789abcdef}
# Appends by slot, without a transaction (docs/operations.md, "Slot keys"): what the template
# turns on once every function reads slots. The tests' second pass runs the appends' tests
# with it off (scripts/test.sh), as every release deployed before the switch runs.
export SLOT_KEYS=${SLOT_KEYS:-true}
