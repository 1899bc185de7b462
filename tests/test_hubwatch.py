"""Anything that blocks the gevent hub is noticed: logged with the offending stack, and counted."""

from __future__ import annotations

import logging

import gevent
import pytest
from gevent import monkey

from actorim import hubwatch


def block_the_hub_for(seconds: float) -> None:
    monkey.get_original("time", "sleep")(seconds)  # a blocking call no greenlet can interrupt


def test_a_greenlet_that_blocks_the_hub_is_logged_with_its_stack_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hubwatch.watch_hub(0.05)
    before = hubwatch.blocked_count()
    caplog.set_level(logging.WARNING, logger="actorim.hub")
    gevent.spawn(block_the_hub_for, 0.4).join()
    with gevent.Timeout(5, AssertionError("the blocked hub was never reported")):
        while hubwatch.blocked_count() == before:
            gevent.sleep(0.02)
    report = next(r for r in caplog.records if r.name == "actorim.hub")
    assert "blocked" in report.getMessage()
    assert "block_the_hub_for" in report.getMessage()
