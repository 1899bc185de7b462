#!/bin/sh
# actorim beside the peer servers of the benchmark harness (tests/benchmarks/harness), in one run
# of its `compare` driver.
#   tests/benchmarks/peers.sh [table|curve] [extra run.py flags]
# table: the issue's three columns (idle:10000 with -idle-join, fanout:1000 at 20 msg/s, and
#        fanout:1000 saturated). curve: p99 latency against load (fanout:1000 at rising rates),
#        for the plot (tests/benchmarks/plot.py RESULTS.jsonl > docs/latency.svg).
# --also-normal (before the mode) adds actorim-normal: the same server with ACTORIM_STORE_SYNC=NORMAL
# (commits synced at checkpoints, not each one: safe against a killed process, not a power cut).
# The first run builds the load generator and the peer servers into ~/.cache/actorim-bench
# (BENCH_CACHE moves it): Debian's Go packages (apt-get, as root), npm's ws and PyPI's gevent.
set -e
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BENCH="${BENCH_DIR:-$HERE/harness}"
CACHE="${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/actorim-bench}"
PEERS="${PEERS_DIR:-$CACHE/peers}"
[ -x "$PEERS/seed-go" ] && [ -d "$PEERS/node-ws/node_modules/ws" ] && [ -x "$PEERS/venv/bin/python" ] \
  || "$BENCH/peers/setup_peers.sh"
[ -x "$CACHE/loadgen" ] || "$BENCH/build.sh"
[ -x "$REPO/.venv/bin/python" ] || make -C "$REPO" .venv/.installed
WORK="${TMPDIR:-/tmp}/actorim-peers"
mkdir -p "$WORK"
export ACTORIM_SECRET="peers-benchmark-secret-0123456789abcdef"
# Tokens for users u0..u10999, minted once (a command per user would be far too slow).
[ -s "$WORK/tokens" ] || "$REPO/.venv/bin/python" -c "
import jwt, sys, time
e = int(time.time()) + 86400
print('\n'.join(jwt.encode({'sub': f'u{i}', 'exp': e}, sys.argv[1], algorithm='HS256') for i in range(11000)))
" "$ACTORIM_SECRET" > "$WORK/tokens"
also=""
if [ "${1:-}" = --also-normal ]; then also=actorim-normal; shift; fi
mode="${1:-table}"; [ $# -gt 0 ] && shift
case "$mode" in
  table) plan="idle:10000 fanout:1000:rate=20 fanout:1000:sat" ;;
  curve) plan="fanout:1000:rate=20 fanout:1000:rate=100 fanout:1000:rate=200 fanout:1000:rate=400" ;;
  *) echo "usage: $0 [table|curve]" >&2; exit 2 ;;
esac
rm -rf "$WORK/data" "$WORK/data-normal"
# shellcheck disable=SC2086
serve="$REPO/.venv/bin/python -m actorim --port {port} --log-level WARNING"
lg="-dialect actorim -token-file $WORK/tokens -idle-join"
if [ -n "$also" ]; then
  set -- --server "actorim-normal=env ACTORIM_SECRET=$ACTORIM_SECRET ACTORIM_DATA_DIR=$WORK/data-normal ACTORIM_STORE_SYNC=NORMAL $serve" \
    --lg-args "actorim-normal=$lg" "$@"
fi
exec "$BENCH/run.sh" compare py-gevent-ws seed-go node-ws py-socketio actorim $also \
  --server "actorim=env ACTORIM_SECRET=$ACTORIM_SECRET ACTORIM_DATA_DIR=$WORK/data $serve" \
  --lg-args "actorim=$lg" \
  --plan $plan "$@"
