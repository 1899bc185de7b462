"""The test tiers hold by construction: a test that starts a process unmarked fails, naming the
marker it needs; the markers select what `make test-fast` leaves out."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import UnmarkedProcessError, refusing_processes


def test_a_test_not_marked_process_cannot_start_one() -> None:
    with pytest.raises(UnmarkedProcessError, match=r"mark it @pytest\.mark\.process"):
        subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_the_refusal_names_the_test_and_the_command() -> None:
    with refusing_processes("tests/x.py::test_y"), pytest.raises(UnmarkedProcessError) as refused:
        subprocess.Popen(["true"])
    assert "tests/x.py::test_y starts a process (['true'])" in str(refused.value)


@pytest.mark.process
def test_a_test_marked_process_may_start_one() -> None:
    assert subprocess.run([sys.executable, "-c", "pass"], check=True).returncode == 0


def test_a_user_of_the_redis_fixtures_is_marked_process(
    redis_client: object, request: pytest.FixtureRequest
) -> None:
    assert request.node.get_closest_marker("process") is not None
