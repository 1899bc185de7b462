#!/bin/sh
# An older commit of actorim ("before") beside this checkout ("after") and node-ws, alternating
# in one run of the harness's `compare` driver, so that both are measured on the same machine at
# the same time (a shared machine's speed drifts by more than most changes are worth).
#   tests/benchmarks/compare.sh BASE [run.py flags, e.g. --plan fanout:1000:rate=20 --reps 3]
# BASE is any commit; it is checked out into a temporary worktree and run with this checkout's
# venv (PYTHONPATH picks the code). Default plan: the quiet room, the saturated room and 400k
# deliveries/s offered. Builds the harness on first use, as peers.sh does.
set -e
[ $# -ge 1 ] || { echo "usage: $0 BASE [run.py flags]" >&2; exit 2; }
base="$1"; shift
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BENCH="${BENCH_DIR:-$HERE/harness}"
CACHE="${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/actorim-bench}"
PEERS="${PEERS_DIR:-$CACHE/peers}"
[ -d "$PEERS/node-ws/node_modules/ws" ] || "$BENCH/peers/setup_peers.sh"
[ -x "$CACHE/loadgen" ] || "$BENCH/build.sh"
[ -x "$REPO/.venv/bin/python" ] || make -C "$REPO" .venv/.installed
WORK="$(mktemp -d "${TMPDIR:-/tmp}/actorim-compare.XXXXXX")"
trap 'git -C "$REPO" worktree remove --force "$WORK/before" >/dev/null 2>&1; rm -rf "$WORK"' EXIT
git -C "$REPO" worktree add -q --detach "$WORK/before" "$base"
export ACTORIM_SECRET="peers-benchmark-secret-0123456789abcdef"
"$REPO/.venv/bin/python" -c "
import jwt, sys, time
e = int(time.time()) + 86400
print('\n'.join(jwt.encode({'sub': f'u{i}', 'exp': e}, sys.argv[1], algorithm='HS256') for i in range(11000)))
" "$ACTORIM_SECRET" > "$WORK/tokens"
server() {  # the command line of one actorim server: its code and its data directory
  echo "$1=env PYTHONPATH=$2 ACTORIM_SECRET=$ACTORIM_SECRET ACTORIM_DATA_DIR=$WORK/data-$1 $REPO/.venv/bin/python -m actorim --port {port} --log-level WARNING"
}
lg="-dialect actorim -token-file $WORK/tokens -idle-join"
# From the temporary folder: `python -m` puts the working directory first on sys.path.
cd "$WORK"
"$BENCH/run.sh" compare before after node-ws \
  --server "$(server before "$WORK/before")" --server "$(server after "$REPO")" \
  --lg-args "before=$lg" --lg-args "after=$lg" \
  --plan fanout:1000:rate=20 fanout:1000:sat fanout:1000:rate=400 "$@"
