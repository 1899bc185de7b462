"""The token secret: a short one is refused outside development mode; a generated one is kept."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actorim.config import Config
from actorim.secret import DEV_SECRET_FILE, token_secret
from tests.support import Client, ServerProcess, http_get, read_port_file

SECRET = "secret-test-secret-0123456789abcdef0123456789"
# How long `actorim serve` may take to refuse its settings or to come up (a process start).
PROCESS_TIMEOUT_S = 30.0


def _environment(**settings: str) -> dict[str, str]:
    """The caller's environment without any ACTORIM_* setting, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTORIM_") and k != "PORT"}
    return {**env, **settings}


def _serve(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "actorim", "serve", "--port", "0", *args]
    env = _environment(ACTORIM_DATA_DIR=str(tmp_path / "data"), **settings)
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S, check=False
    )


@pytest.mark.process
@pytest.mark.parametrize(
    ("args", "settings"),
    [
        pytest.param(("--secret", "hunter2"), {}, id="flag"),
        pytest.param((), {"ACTORIM_SECRET": "hunter2"}, id="environment"),
        pytest.param(("--secret", "é" * 15), {}, id="30 bytes of 15 characters"),
        pytest.param(
            ("--workers", "2", "--secret", "hunter2"),
            {"REDIS_URL": "redis://127.0.0.1:1/0"},
            id="workers",
        ),
    ],
)
def test_serve_refuses_a_short_secret_outside_development_mode_in_one_line(
    tmp_path: Path, args: tuple[str, ...], settings: dict[str, str]
) -> None:
    result = _serve(tmp_path, *args, **settings)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "secret" in lines[0] and "32 bytes" in lines[0]
    assert "hunter2" not in result.stderr and "é" not in result.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.process
def test_serve_refuses_to_start_without_a_secret_outside_development_mode(tmp_path: Path) -> None:
    result = _serve(tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "actorim: ACTORIM_SECRET (--secret) is required outside development mode (--dev)"
    ]


def test_a_short_secret_is_a_bad_setting_outside_development_mode_only() -> None:
    with pytest.raises(ValueError, match=r"setting secret .* 7 bytes.* 32 bytes or more"):
        Config(secret="hunter2")
    assert Config(secret="hunter2", dev=True).secret == "hunter2"
    assert Config(secret="x" * 32).secret == "x" * 32


def test_development_mode_generates_the_secret_once_and_keeps_it_for_its_owner(
    tmp_path: Path,
) -> None:
    config = Config(dev=True, data_dir=str(tmp_path / "new" / "dir"))
    first = token_secret(config)
    path = tmp_path / "new" / "dir" / DEV_SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token_secret(config) == first
    assert len(first) >= 32
    assert [p.name for p in path.parent.iterdir()] == [DEV_SECRET_FILE]


def test_a_kept_secret_readable_by_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / DEV_SECRET_FILE
    path.write_text("kept-secret\n")
    path.chmod(0o644)
    assert token_secret(Config(dev=True, data_dir=str(tmp_path))) == "kept-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_configured_secret_is_used_and_nothing_is_generated(tmp_path: Path) -> None:
    assert token_secret(Config(dev=True, secret="given", data_dir=str(tmp_path))) == "given"
    assert not (tmp_path / DEV_SECRET_FILE).exists()


@pytest.mark.process
def test_a_development_token_minted_before_a_restart_still_works_after_it(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", secret="", args=("--dev",))
    try:
        server.start()
        status, _headers, body = http_get(f"http://127.0.0.1:{server.port}/dev/token?user=alice")
        assert status == 200
        token = body.decode().split('"token": "')[1].split('"')[0]
        server.kill()
        server.start()
        client = Client(server.url)
        try:
            assert client.connect(token)["user"] == "alice"
        finally:
            client.close()
    finally:
        server.stop()
    path = tmp_path / "data" / DEV_SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.process
@pytest.mark.parametrize(
    ("secret", "says"),
    [
        pytest.param(SECRET, "signed with ACTORIM_SECRET", id="secret given"),
        pytest.param("", f"generated secret kept in {{data}}/{DEV_SECRET_FILE}", id="generated"),
    ],
)
def test_the_development_mode_warning_says_where_the_secret_comes_from(
    tmp_path: Path, secret: str, says: str
) -> None:
    data = tmp_path / "data"
    port_file = tmp_path / "port"
    serve = [sys.executable, "-m", "actorim", "serve", "--dev"]
    proc = subprocess.Popen(
        [*serve, "--port", "0", "--port-file", str(port_file)],
        env=_environment(
            ACTORIM_SECRET=secret, ACTORIM_DATA_DIR=str(data), ACTORIM_DRAIN_SECONDS="0.1"
        ),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = read_port_file(port_file, proc)
        deadline = time.monotonic() + PROCESS_TIMEOUT_S
        while True:
            try:
                if http_get(f"http://127.0.0.1:{port}/readyz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)  # polling the readiness endpoint: a process start has no event
        proc.send_signal(signal.SIGTERM)
        _out, log = proc.communicate(timeout=PROCESS_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "DEVELOPMENT MODE" in log
    assert says.format(data=data) in log
    if secret:
        assert "generated" not in log
        assert not (data / DEV_SECRET_FILE).exists()
