"""The ``actorim`` command: ``serve`` runs a node, ``token`` prints a signed token, ``api-key``
makes a server API key, ``bench`` load-tests a server, ``chat`` is a terminal chat,
``backfill-authored`` fills a Redis cluster's index of where each user wrote (once, after an
upgrade).

gevent's monkey-patching must come before anything imports ``socket`` or ``threading``, so it
happens here, first; embedders patch in their own entry point.
"""

from __future__ import annotations

from gevent import monkey

if not monkey.is_module_patched("socket"):
    monkey.patch_all()

import argparse
import errno
import logging
import os
import signal
import sys
from collections.abc import Sequence

import gevent
from gevent.event import Event

from actorim.config import add_flags, config_from
from actorim.workers import EXIT_CANNOT_LISTEN

__all__ = ["EXIT_CANNOT_LISTEN", "main"]

logger = logging.getLogger("actorim")

# Exit status when the node's top supervisor gives up (EX_SOFTWARE): the process manager
# restarts the process, as an OTP release's heart would.
EXIT_SUPERVISOR_FAILED = 70


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, "serve")
    if argv[:2] == ["bench", "storm"]:
        # A scenario of its own with flags of its own; ``bench``'s first argument is a URL.
        argv[:2] = ["bench-storm"]
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except ValueError as exc:
        parser.exit(2, f"actorim: {exc}\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actorim", description="actorim: an instant-messaging server of supervised actors"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run a node",
        description="Run an actorim node. Every setting is a flag or an environment variable.",
    )
    add_flags(serve)
    serve.set_defaults(run=_serve)
    token = commands.add_parser("token", help="print a signed token for a user")
    token.add_argument("user")
    token.add_argument("--rooms", help="comma-separated rooms or prefix:* patterns")
    token.add_argument("--ttl", type=int, default=3600, help="seconds the token is valid")
    token.add_argument("--secret", help="signing secret [env ACTORIM_SECRET]")
    token.set_defaults(run=_token)
    api_key = commands.add_parser(
        "api-key",
        help="make a server API key",
        description="Print a new random server API key (give it to your application) and the "
        "line to add to api_keys (ACTORIM_API_KEYS): its hash, so the server never keeps "
        "the key itself.",
    )
    api_key.set_defaults(run=_api_key)
    backfill = commands.add_parser(
        "backfill-authored",
        help="once after upgrading a Redis cluster: index where each user wrote",
        description="Fill each user's set of the conversations where they have messages (what "
        "erasing a user's messages everywhere reads) from the messages stored before the "
        "nodes kept it. Idempotent; the nodes may serve meanwhile (docs/deploy.md).",
    )
    backfill.add_argument("--redis-url", help="the nodes' redis_url [env ACTORIM_REDIS_URL]")
    backfill.add_argument(
        "--redis-namespace", help="the nodes' redis_namespace [env ACTORIM_REDIS_NAMESPACE]"
    )
    backfill.set_defaults(run=_backfill_authored)
    chat = commands.add_parser(
        "chat",
        help="chat in the terminal",
        description="A line-based chat client: /join ROOM, /leave [ROOM], /dm USER TEXT, "
        "/who [ROOM|USER], /quit; other lines go to the current room.",
    )
    chat.add_argument("url", help="the server: http://host:port or ws://host:port/ws")
    chat.add_argument("--user", help="user name; the token comes from /dev/token (development)")
    chat.add_argument("--token", help="a token for the server (instead of --user)")
    chat.add_argument("--json", action="store_true", help="speak JSON instead of MessagePack")
    chat.set_defaults(run=_chat)
    from actorim.tools.loadtest.options import add_flags as add_bench_flags

    bench = commands.add_parser(
        "bench",
        help="load-test a server",
        description="Load-test an actorim server: clients in several processes join rooms and "
        "send; reports deliveries/s, latency, errors and lost messages (docs/loadtest.md).",
    )
    add_bench_flags(bench)
    bench.set_defaults(run=_bench)
    from actorim.tools.loadtest.stormoptions import add_storm_flags

    storm = commands.add_parser(
        "bench-storm",
        prog="actorim bench storm",
        help="reconnect storm: drain a node under N clients (also: actorim bench storm)",
        description="Start nodes, connect N clients to node A, drain it while messages flow, "
        "and report how long until every client recovered, the servers' CPU, and lost and "
        "duplicated messages (docs/loadtest.md, Reconnect storm).",
    )
    add_storm_flags(storm)
    storm.set_defaults(run=_bench_storm)
    return parser


def _token(args: argparse.Namespace) -> int:
    from actorim.domain.auth import TokenAuthority

    secret = args.secret or os.environ.get("ACTORIM_SECRET", "")
    if not secret:
        raise ValueError("a secret is needed: --secret or ACTORIM_SECRET")
    rooms = [r.strip() for r in args.rooms.split(",") if r.strip()] if args.rooms else None
    print(TokenAuthority(secret).mint(args.user, rooms=rooms, ttl_s=args.ttl))
    return 0


def _api_key(args: argparse.Namespace) -> int:
    from actorim.domain.apikeys import new_api_key

    key, line = new_api_key()
    print(f"key: {key}")
    print(f"api_keys line: {line}")
    return 0


def _backfill_authored(args: argparse.Namespace) -> int:
    from actorim.config import Config
    from actorim.redis.store import RedisStore

    url = args.redis_url or os.environ.get("ACTORIM_REDIS_URL", "")
    if not url:
        raise ValueError("the Redis to fill is needed: --redis-url or ACTORIM_REDIS_URL")
    namespace = args.redis_namespace or os.environ.get(
        "ACTORIM_REDIS_NAMESPACE", Config.redis_namespace
    )
    store = RedisStore.from_url(url, namespace=namespace)
    try:
        written = store.backfill_authored()
    finally:
        store.close()
    print(f"{written} (user, conversation) entries written")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from actorim.tools.loadtest import run_command

    return run_command(args, os.environ, stdout=sys.stdout, stderr=sys.stderr)


def _bench_storm(args: argparse.Namespace) -> int:
    from actorim.tools.loadtest.storm import storm_command

    return storm_command(args, stdout=sys.stdout, stderr=sys.stderr)


def _chat(args: argparse.Namespace) -> int:
    from actorim.tools.chat import run

    return run(args.url, user=args.user, token=args.token, json_frames=args.json)


# Collections of the youngest generation every 100,000 net allocations instead of 700: a node
# allocates a few objects per frame, and each collection of the older generations walks every
# live object (tens per connection), which showed as 20-40 ms stalls in the p99 latency of a
# busy room. The older generations are collected 50 and 1,000 times less often accordingly.
GC_THRESHOLDS = (100_000, 50, 1_000)


def tune_garbage_collector() -> None:
    """Fewer, cheaper cycle collections for a long-running node: the thresholds above, and the
    objects made at start-up (modules, classes, the tree) moved out of every future collection.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def page_url(host: str, port: int) -> str:
    """The chat page's address for a browser on this machine (a wildcard host is not one).

    >>> page_url("0.0.0.0", 8080)
    'http://127.0.0.1:8080/'
    >>> page_url("::1", 8081)
    'http://[::1]:8081/'
    """
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _cannot_listen(host: str, port: int, error: OSError) -> str:
    """One line saying why the port could not be bound, and what to do.

    >>> busy = OSError(errno.EADDRINUSE, "Address already in use")
    >>> _cannot_listen("127.0.0.1", 8080, busy).partition(" (")[0]
    'cannot listen on 127.0.0.1:8080: Address already in use'
    """
    # gevent's strerror carries the address again: the C library's text for the number is enough.
    reason = os.strerror(error.errno) if error.errno else str(error)
    if error.errno == errno.EADDRINUSE:
        hint = "another server has the port: stop it, or pick another with --port or PORT="
    elif error.errno == errno.EACCES:
        hint = "ports below 1024 need privileges: pick another with --port or PORT="
    else:
        hint = "check --host and --port"
    return f"cannot listen on {host}:{port}: {reason} ({hint})"


def write_port_file(path: str, port: int) -> None:
    """Write ``port`` and a newline to ``path`` in one step (a temporary file renamed over it),
    so that a reader polling for the file never sees it half written.

    >>> import tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "port")
    >>> write_port_file(target, 8081)
    >>> open(target).read()
    '8081\\n'
    """
    partial = f"{path}.{os.getpid()}.tmp"
    with open(partial, "w") as file:
        file.write(f"{port}\n")
    os.replace(partial, path)


def _serve(args: argparse.Namespace) -> int:
    config = config_from(args, os.environ)
    if config.workers > 1 and not config.redis_url:
        raise ValueError(
            f"--workers {config.workers} runs {config.workers} nodes, which must share "
            "state through Redis: set REDIS_URL, or run one worker"
        )
    from actorim.hubwatch import watch_hub
    from actorim.logs import setup_logging
    from actorim.node import Node
    from actorim.secret import dev_secret_path, token_secret

    # Refused (or, in development mode, generated and kept) before any worker starts, so that
    # every worker signs with the same secret and a missing one is one line, not N restarts.
    token_secret(config)
    setup_logging(config.log_level, json_lines=config.log_json)
    if config.workers > 1:
        from actorim.workers import run_workers

        return run_workers(config)
    if config.dev:
        signed = (
            "tokens are signed with ACTORIM_SECRET"
            if config.secret
            else f"tokens are signed with the generated secret kept in {dev_secret_path(config)}"
        )
        logger.warning(
            "DEVELOPMENT MODE: %s and anyone can get one at /dev/token?user=NAME. "
            "Never expose this server.",
            signed,
        )
    os.makedirs(config.data_dir, exist_ok=True)
    watch_hub(config.block_threshold)
    node = Node(config, exit_code_on_failure=EXIT_SUPERVISOR_FAILED).start()
    tune_garbage_collector()
    try:
        host, port = node.listen()
    except OSError as exc:
        node.stop(drain=False)
        print(f"actorim: {_cannot_listen(config.host, config.port, exc)}", file=sys.stderr)
        return EXIT_CANNOT_LISTEN
    if config.port_file:
        write_port_file(config.port_file, port)
    if config.dev:
        logger.warning("chat page: %s (development mode: any name signs in)", page_url(host, port))
    stopped = Event()
    exit_code = 0

    def shut_down(signum: int) -> None:
        # The process ends whatever the stop does: a stop that fails (a supervisor that does
        # not end within its time) is logged and the exit status says so, rather than leave
        # a process that answers nothing and never exits.
        nonlocal exit_code
        logger.info("signal %d: draining", signum)
        try:
            node.stop(drain=True)
        except Exception:
            logger.exception("the node did not stop cleanly")
            exit_code = EXIT_SUPERVISOR_FAILED
        finally:
            stopped.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, lambda s=signum: gevent.spawn(shut_down, s))
    stopped.wait()
    logger.info("stopped")
    return exit_code
