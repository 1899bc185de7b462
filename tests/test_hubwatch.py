"""Anything that blocks the gevent hub is noticed: logged with the offending stack, and counted."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import gevent
import pytest
from gevent import monkey

from actorim import hubwatch
from actorim.logs import HumanFormatter


def block_the_hub_for(seconds: float) -> None:
    monkey.get_original("time", "sleep")(seconds)  # a blocking call no greenlet can interrupt


@pytest.fixture
def watched() -> Iterator[None]:
    """The hub watched with a short threshold for one test, and not for the tests after it."""
    hubwatch.watch_hub(0.05)
    yield
    hubwatch.unwatch_hub()


@pytest.mark.slow  # waits out a real deadline
def test_a_greenlet_that_blocks_the_hub_is_logged_with_its_stack_and_counted(
    watched: None, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    before = hubwatch.blocked_count()
    caplog.set_level(logging.WARNING, logger="actorim.hub")
    gevent.spawn(block_the_hub_for, 0.4).join()
    with gevent.Timeout(5, AssertionError("the blocked hub was never reported")):
        while hubwatch.blocked_count() == before:
            gevent.sleep(0.02)
    report = next(r for r in caplog.records if r.name == "actorim.hub")
    assert "blocked" in report.getMessage()
    # The stack, on lines of its own: the message stays one line.
    assert "block_the_hub_for" in (report.stack_info or "")
    readable = HumanFormatter().format(report).splitlines()
    assert "blocked" in readable[0]
    assert any("block_the_hub_for" in line and line.startswith("  ") for line in readable[1:])
    # Reported once, in the log: gevent does not print its own copy of every stack on stderr.
    assert "appears to be blocked" not in capfd.readouterr().err


def test_unwatching_stops_the_monitor_thread_until_the_hub_is_watched_again() -> None:
    hubwatch.watch_hub(0.05)
    assert gevent.get_hub().periodic_monitoring_thread is not None
    hubwatch.unwatch_hub()
    assert gevent.get_hub().periodic_monitoring_thread is None
    hubwatch.watch_hub(0.05)
    try:
        assert gevent.get_hub().periodic_monitoring_thread is not None
    finally:
        hubwatch.unwatch_hub()
