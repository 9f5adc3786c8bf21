#!/usr/bin/env bash
# Starts or stops the local servers on 127.0.0.1: moto (DynamoDB, S3, Step Functions) and
# redis. Ports come from MOTO_PORT and REDIS_PORT; state (pids, logs) lives in .local/<name>.
#   scripts/services.sh start NAME    scripts/services.sh stop NAME
set -euo pipefail
cd "$(dirname "$0")/.."

action=${1:?start or stop}
name=${2:-dev}
dir=.local/$name
MOTO_PORT=${MOTO_PORT:?}
REDIS_PORT=${REDIS_PORT:?}

wait_for_port() {
  python3 - "$1" "$2" <<'PY'
import socket, sys, time
port, what = int(sys.argv[1]), sys.argv[2]
deadline = time.time() + 60
while time.time() < deadline:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(f"{what} did not start on port {port}")
PY
}

case "$action" in
  start)
    "$0" stop "$name" >/dev/null 2>&1 || true
    mkdir -p "$dir"
    # Our launcher of moto serialises requests: see scripts/moto_server.py for why.
    nohup .venv/bin/python scripts/moto_server.py "$MOTO_PORT" >"$dir/moto.log" 2>&1 &
    echo $! >"$dir/moto.pid"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
      --daemonize yes --pidfile "$PWD/$dir/redis.pid" --logfile "$PWD/$dir/redis.log"
    wait_for_port "$MOTO_PORT" moto
    wait_for_port "$REDIS_PORT" redis
    echo "services: moto on 127.0.0.1:$MOTO_PORT, redis on 127.0.0.1:$REDIS_PORT"
    ;;
  stop)
    for pidfile in "$dir"/moto.pid "$dir"/redis.pid; do
      [ -f "$pidfile" ] || continue
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
    done
    ;;
  *) echo "usage: $0 start|stop NAME" >&2; exit 2 ;;
esac
