"""Notices anything that blocks the gevent hub, with the offending stack, using gevent's own
monitor thread: a CPU-heavy handler or a blocking call stalls every connection at once."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import gevent
from gevent import events

__all__ = ["blocked_count", "unwatch_hub", "watch_hub"]

logger = logging.getLogger("actorim.hub")

_blocked = 0
_installed = False


def blocked_count() -> int:
    """How many times the hub was found blocked since the watch started."""
    return _blocked


def _on_event(event: Any) -> None:
    global _blocked
    if isinstance(event, events.EventLoopBlocked):
        _blocked += 1
        # The blocked greenlet's stack goes in the record's stack_info, which the log formats
        # print on lines of their own (indented): the message itself stays one line, as every
        # message must (actorim.logs escapes line breaks in it).
        record = logger.makeRecord(
            logger.name,
            logging.WARNING,
            __file__,
            0,
            "the hub was blocked for more than %.3fs by %r",
            (event.blocking_time, event.greenlet),
            None,
            sinfo="\n".join(event.info),
        )
        logger.handle(record)


def watch_hub(threshold_s: float) -> None:
    """Start gevent's monitor thread, reporting blocks longer than ``threshold_s``."""
    global _installed
    gevent.config.max_blocking_time = threshold_s
    gevent.config.monitor_thread = True  # off by default in gevent: nothing is watched without it
    # gevent would also print each report, every thread's stack, straight to standard error:
    # _on_event logs the same report once, in the log's format.
    gevent.config.print_blocking_reports = False
    if not _installed:
        _installed = True
        events.subscribers.append(_on_event)
    with warnings.catch_warnings():
        # gevent also offers to watch memory, which needs psutil; only blocking is watched here.
        warnings.filterwarnings("ignore", message="Unable to monitor memory usage")
        gevent.get_hub().start_periodic_monitoring_thread()


def unwatch_hub() -> None:
    """Stop the monitor thread of this thread's hub, if it runs (``watch_hub`` starts it again).

    For code that watches for a while inside a longer-lived process, such as a test.
    """
    gevent.config.monitor_thread = False
    hub = gevent.get_hub()
    monitor = hub.periodic_monitoring_thread
    if monitor is not None:
        monitor.kill()
        hub.periodic_monitoring_thread = None
