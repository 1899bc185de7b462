"""A private redis-server for the tests, with the persistence settings the Redis store needs.

Never the machine's own Redis: each server listens on a free loopback port and keeps its files in
a directory of the test's own. It runs with ``appendonly yes``, ``appendfsync always`` and no RDB
snapshots, the settings the Redis store's durability promise assumes.

Fixtures (load them with ``pytest_plugins = ["tests.redis_server"]`` in a test module, or import
them into a conftest):

- ``redis_client``: a client of one server shared by the session, wiped (FLUSHALL) before each
  test. Fast; for tests that never stop Redis.
- ``redis_server``: a factory, ``redis_server(directory=None, port=None) -> RedisServer``, for
  tests that stop Redis and start it again; whatever it started is stopped after the test.

Without redis-server installed these fixtures skip the test, except in CI (``CI=true``), where a
missing Redis is a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "DURABLE_SETTINGS",
    "RedisServer",
    "TlsFiles",
    "find_redis_server",
    "make_tls",
    "redis_client",
    "redis_server",
    "redis_session",
]

# What we recommend for the Redis store: every write synced to the append-only file before Redis
# answers; RDB snapshots off (they add nothing to the AOF's guarantee, only fork pauses).
DURABLE_SETTINGS = ("--appendonly", "yes", "--appendfsync", "always", "--save", "")

# How long a server may take to answer PING after it was started (it replays its AOF first).
START_TIMEOUT = 15.0
# How long it may take to exit after SIGTERM (it syncs its files) before it is killed.
STOP_TIMEOUT = 10.0
# Pause between two PINGs while waiting for a server to come up.
_POLL_INTERVAL = 0.005
# Tries at a fresh free port when another process took the one picked.
_PORT_TRIES = 5


def find_redis_server() -> str:
    """The redis-server program; skips the test without one (fails it when CI is "true")."""
    path = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )
    if path is None:
        reason = (
            "redis-server is not installed, so the Redis store cannot be tested here;"
            " install it (apt-get install redis-server) to run these tests"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    """A self-signed certificate for 127.0.0.1 and its key (``make_tls``)."""

    cert: Path
    key: Path

    def args(self, port: int) -> list[str]:
        """A server's listening arguments: TLS only, on ``port``."""
        return [
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(self.cert),
            "--tls-key-file",
            str(self.key),
            "--tls-ca-cert-file",
            str(self.cert),
            "--tls-auth-clients",
            "no",
            "--tls-replication",
            "yes",
            "--tls-cluster",
            "yes",
        ]


def make_tls(directory: Path) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1, made with openssl (fails the test without)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "cert.pem", directory / "key.pem")
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl makes the TLS tests' certificate: apt-get install openssl")
    subject = ("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")
    output = ("-keyout", str(files.key), "-out", str(files.cert))
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", *subject, *output],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return files


class RedisServer:
    """One redis-server process on 127.0.0.1, with its files in ``directory``.

    Keeps its port and directory across ``stop``/``kill`` and ``start``, so a restarted server
    replays the same append-only file on the same address.
    """

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        binary: str,
        args: tuple[str, ...] = (),
        config: Path | None = None,
        password: str | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self.directory = directory
        self.binary = binary
        # More settings (cluster mode, a replica's master), after the durable ones.
        self.args = args
        # A config file first on the command line: a Sentinel's (``args=("--sentinel",)``),
        # which it rewrites, and which takes no durable settings.
        self.config = config
        # With a password the server requires it (requirepass), of its replicas too
        # (masterauth), and the clients made here give it.
        self.password = password
        # With TLS files the server listens with TLS only (its replication and cluster bus
        # too), and the clients made here trust its certificate.
        self.tls = tls
        self._fixed_port = port is not None
        self.port = port if port is not None else _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def client(self, **options: Any) -> redis.Redis:
        """A client of this server; ``retries=False`` for one that fails at once when it is down."""
        if not options.pop("retries", True):
            options["retry"] = Retry(NoBackoff(), 0)
        options.setdefault("password", self.password)
        if self.tls is not None:
            options.setdefault("ssl", True)
            options.setdefault("ssl_ca_certs", str(self.tls.cert))
        options.setdefault("socket_timeout", 5.0)
        options.setdefault("socket_connect_timeout", 2.0)
        return redis.Redis(host="127.0.0.1", port=self.port, **options)

    def start(self) -> None:
        """Start the server and return once it answers PING."""
        if self.running:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        for attempt in range(_PORT_TRIES):
            first = [] if self.config is None else [str(self.config)]
            durable = DURABLE_SETTINGS if self.config is None else ()
            if self.password is not None:
                durable = (*durable, "--requirepass", self.password, "--masterauth", self.password)
            listen = ["--port", str(self.port)] if self.tls is None else self.tls.args(self.port)
            self._process = subprocess.Popen(
                [
                    self.binary,
                    *first,
                    *listen,
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.directory),
                    "--logfile",
                    str(self.log),
                    "--daemonize",
                    "no",
                    *durable,
                    *self.args,
                ],
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready():
                return
            if self._fixed_port or attempt == _PORT_TRIES - 1:
                break
            self.port = _free_port()  # another process took the port between pick and bind
        raise RuntimeError(
            f"redis-server did not start on port {self.port}; its log ends with:\n"
            + self._log_tail()
        )

    def _wait_ready(self) -> bool:
        assert self._process is not None
        client = self.client(socket_timeout=1.0, socket_connect_timeout=1.0, retries=False)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except (redis.ConnectionError, redis.TimeoutError):
                    pass  # not listening yet, or still loading its AOF (BusyLoadingError)
                time.sleep(_POLL_INTERVAL)
        finally:
            client.close()
        self.kill()
        return False

    def stop(self) -> None:
        """Stop the server as an operator would (SIGTERM: it syncs its files and exits)."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the server with SIGKILL: no chance to write anything more."""
        self._end(signal.SIGKILL)

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def redis_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private server for the whole session."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), binary=find_redis_server())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_session: RedisServer) -> Iterator[redis.Redis]:
    """A client of the session's server, wiped before the test."""
    client = redis_session.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start private servers (stopped after the test): ``redis_server(directory=, port=)``."""
    started: list[RedisServer] = []
    binary = find_redis_server()

    def start(*, directory: Path | None = None, port: int | None = None) -> RedisServer:
        server = RedisServer(
            directory or tmp_path / f"redis-{len(started)}", port=port, binary=binary
        )
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
