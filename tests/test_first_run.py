"""What a new user meets on the first `make run`: the log points at the chat page, a busy port
is one line and an exit status, and the README says how to pick another port."""

from __future__ import annotations

import doctest
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest

import actorim.cli
from tests.support import http_get, read_port_file

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 30.0


def _serve(tmp_path: Path, port: int, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "actorim", "serve", "--dev", "--store", "memory"]
    return subprocess.Popen(
        [*command, "--port", str(port), *args],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


@pytest.mark.process
def test_a_busy_port_is_one_line_without_a_traceback_and_a_failed_exit(
    tmp_path: Path, busy_port: int
) -> None:
    process = _serve(tmp_path, busy_port)
    _out, err = process.communicate(timeout=START_TIMEOUT_S)
    assert process.returncode == actorim.cli.EXIT_CANNOT_LISTEN != 0, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(
        f"actorim: cannot listen on 127.0.0.1:{busy_port}: Address already in use ("
    ), err
    assert "PORT=" in last


@pytest.mark.process
def test_the_last_start_up_line_is_the_chat_page_address(tmp_path: Path) -> None:
    process = _serve(tmp_path, 0, "--port-file", str(tmp_path / "port"))
    try:
        assert process.stderr is not None
        lines: list[str] = []
        with gevent.Timeout(START_TIMEOUT_S, AssertionError(f"no chat page line in {lines}")):
            while not lines or "chat page" not in lines[-1]:
                line = process.stderr.readline()
                assert line, f"actorim serve ended: {lines}"
                lines.append(line)
        port = read_port_file(tmp_path / "port", process)
        url = f"http://127.0.0.1:{port}/"
        assert f"chat page: {url} " in lines[-1]
        assert "/dev/token" not in lines[-1]
        status, headers, _body = http_get(url)
        assert (status, headers["content-type"]) == (200, "text/html; charset=utf-8")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=START_TIMEOUT_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def test_the_readme_says_how_to_run_on_another_port_and_make_run_honours_it() -> None:
    assert "PORT=8081 make run" in (ROOT / "README.md").read_text()
    run = (ROOT / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "${PORT:-8080}" in run.replace("$$", "$")


def test_the_command_line_helpers_do_what_their_examples_say() -> None:
    assert doctest.testmod(actorim.cli).failed == 0
