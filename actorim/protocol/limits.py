"""The protocol's documented maximums, shared by the server's defaults and the clients.

A client cannot read a server's settings, so it sizes its own read limit from the maximums
docs/protocol.md documents for a server with default limits: the largest frame the server
sends is a ``history`` page, cut at ``HISTORY_PAGE_MAX_BYTES`` of encoded messages (see
``actorim.runtime.pages``), inside a reply envelope of a few dozen bytes. Every other server frame
(a ``msg`` event, a join reply listing at most 200 members) is far smaller.

>>> SERVER_FRAME_MAX_BYTES - HISTORY_PAGE_MAX_BYTES == MESSAGE_MAX_BYTES
True
"""

from __future__ import annotations

__all__ = ["HISTORY_PAGE_MAX_BYTES", "MESSAGE_MAX_BYTES", "SERVER_FRAME_MAX_BYTES"]

_KIB = 1024
_MIB = 1024 * _KIB

MESSAGE_MAX_BYTES = 64 * _KIB
"""The largest WebSocket message a client may send (the ``max_frame_size`` default), so also
about the largest ``msg`` event: a stored body comes from one such message."""

HISTORY_PAGE_MAX_BYTES = 1 * _MIB
"""The most encoded messages one ``history`` reply holds (the ``history_max_bytes`` default):
a quarter of the default 4 MiB outbox, so a page always fits beside live traffic."""

SERVER_FRAME_MAX_BYTES = HISTORY_PAGE_MAX_BYTES + MESSAGE_MAX_BYTES
"""The largest message a server with default limits sends: a full ``history`` page plus the
reply's envelope. The envelope is a few dozen bytes; a whole message's size of headroom covers
it with room to spare."""
