#!/bin/sh
# A storm of N clients (dial, upgrade, connect with a JWT, join one room, hold), profiled.
#   tests/benchmarks/storm.sh spy OUT.spy [N]   py-spy raw stacks of the server (--gil, 250/s)
#   tests/benchmarks/storm.sh heap OUT.txt [N]  tracemalloc difference once all N are connected
#   tests/benchmarks/storm.sh plain - [N]       just the load generator's JSON line
# Then: .venv/bin/python tests/benchmarks/storm.py stages|heap BEFORE AFTER [N]
# Needs the shared harness's load generator (../shared/bench/build.sh) and, for spy,
# `.venv/bin/pip install py-spy`. The server runs on CPU 0, the load generator on CPU 1, with
# the harness's idle flags; the data directory is new for each run (every join is a first one).
set -e
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="${REPO:-$(cd "$HERE/../.." && pwd)}"
PY="$HERE/../../.venv/bin/python"
LOADGEN="${BENCH_CACHE:-$HOME/.cache/actorim-bench}/loadgen"
mode="$1"; out="$2"; n="${3:-10000}"
work="$(mktemp -d "${TMPDIR:-/tmp}/actorim-storm.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export ACTORIM_SECRET="storm-benchmark-secret-0123456789abcdef"
"$PY" -c "
import jwt, sys, time
e = int(time.time()) + 86400
print('\n'.join(jwt.encode({'sub': f'u{i}', 'exp': e}, sys.argv[1], algorithm='HS256') for i in range($n)))
" "$ACTORIM_SECRET" > "$work/tokens"
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cd "$REPO"
if [ "$mode" = heap ]; then
  set -- "$HERE/storm.py" serve "$out" "$work/count"
  # tracemalloc slows the hub down: its monitor would report (and format) every pause.
  export ACTORIM_BLOCK_THRESHOLD="${ACTORIM_BLOCK_THRESHOLD:-30}"
else
  set -- -m actorim
fi
ACTORIM_DATA_DIR="$work/data" PYTHONPATH="$REPO" taskset -c 0 "$PY" "$@" --port "$port" \
  --log-level WARNING > "$work/server.log" 2>&1 &
server=$!
i=0
until "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()" 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 100 ] || { kill $server; exit 1; }; sleep 0.2
done
hold=5s; timeout=10s
case "$mode" in
  spy) "$(dirname "$PY")/py-spy" record -p $server -r 250 -f raw -o "$out" --nonblocking \
         --threads --gil 2>/dev/null & spy=$! ;;
  heap) sleep 1; kill -USR1 $server; sleep 3; hold=600s; timeout=120s
        base=$(ls /proc/$server/fd | wc -l) ;;
esac
taskset -c 1 "$LOADGEN" -url "ws://127.0.0.1:$port/ws" -scenario idle -n "$n" -dialect actorim \
  -token-file "$work/tokens" -idle-join -pid $server -quiet -hold $hold -settle 2s -src-ips 16 \
  -hs-timeout $timeout -max-time 15m &
loadgen=$!
if [ "$mode" = heap ]; then
  # Every client connected (the server holds one descriptor each), or no new one for 30 s (a
  # client refused under an overloaded machine is not retried for ever): the second snapshot,
  # divided by the connections the server holds.
  last=0; still=0
  while :; do
    fds=$(ls /proc/$server/fd | wc -l)
    [ $((fds - base)) -ge "$n" ] && break
    if [ "$fds" -eq "$last" ]; then still=$((still + 1)); [ $still -ge 30 ] && break; else still=0; fi
    last=$fds; sleep 1
  done
  sleep 5
  echo $(($(ls /proc/$server/fd | wc -l) - base)) > "$work/count"
  kill -USR2 $server
  until [ -s "$out" ]; do sleep 1; done
  kill $loadgen
else
  wait $loadgen
fi
[ -n "$spy" ] && { kill -INT $spy; wait $spy || true; }
kill -TERM $server; wait $server || true
