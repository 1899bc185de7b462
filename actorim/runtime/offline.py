"""Delivering a user's offline direct messages at ``connect``, a page at a time.

The shell around :class:`~actorim.domain.backlog.BacklogPager`: it reads each page from the store
(``pending_for`` after the last mid sent), offers the page's frames to the link's outbox, and
asks for the next page when the link reports that the outbox was written out to the socket.
It lives on the link, not in the connection's actor, so a connection actor that crashes and
restarts mid-backlog carries on where it was. Everything here runs on the hub without blocking:
each page's answer comes back to the connection's current actor (``ConnectionReplies``) and is
handled in its turn; drains arrive in the link's flush or the connection's actor.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import TYPE_CHECKING

from actorim.domain.backlog import BacklogPager, PagerState
from actorim.domain.messages import mid_ms
from actorim.logs import context as log_context
from actorim.protocol.events import message_frame
from actorim.protocol.frames import CloseCode
from actorim.runtime.context import NodeContext, Unavailable
from actorim.runtime.messages import PendingFor
from actorim.runtime.replies import ConnectionReplies
from supervisors import MailboxFull

if TYPE_CHECKING:
    from actorim.domain.messages import StoredMessage
    from actorim.protocol.wire import WireFrame
    from actorim.runtime.link import Link

__all__ = ["OfflineDelivery"]

logger = logging.getLogger("actorim.connection")

# Clocks of the nodes of a cluster may differ by this much: a message whose mid (the sending
# node's clock) is younger than the connection less this skew may have a live copy on its way.
LATE_COPY_SKEW_MS = 10_000

# A page takes at most half of each outbox bound (frames, bytes), so that room messages,
# replies and live direct messages arriving while the client reads a page still fit beside it.
_OUTBOX_SHARE = 2


class OfflineDelivery:
    """One connection's paging of its user's offline backlog; see the module docstring."""

    __slots__ = ("_ctx", "_link", "_replies", "pager")

    def __init__(self, ctx: NodeContext, link: Link) -> None:
        config = ctx.config
        outbox = link.outbox
        self._ctx = ctx
        self._link = link
        self._replies = ConnectionReplies(link)
        share = _OUTBOX_SHARE
        self.pager: BacklogPager[WireFrame] = BacklogPager(
            page_messages=max(1, min(config.backlog_page_messages, outbox.max_frames // share)),
            page_bytes=max(1, min(config.backlog_page_bytes, outbox.max_bytes // share)),
            max_held=outbox.max_frames,
            max_held_bytes=outbox.max_bytes,
            late_copies=(
                partial(_sent_since, int(time.time() * 1000) - LATE_COPY_SKEW_MS)
                if ctx.broker.live_copies_lag
                else None
            ),
        )

    def start(self) -> None:
        """Read the first page."""
        self._read()

    def hold(self, mid: str, frame: WireFrame) -> bool:
        """A live direct message for this link: True when it waits behind the backlog (or was
        sent by a page already); False when it goes out now."""
        link = self._link
        taken = self.pager.hold(mid, frame, size=len(frame.bytes_for(link.encoding)))
        if self.pager.overflowed:
            link.request_close(
                CloseCode.TRY_AGAIN_LATER,
                "slow consumer: too many direct messages waiting behind the offline backlog",
            )
        elif self.pager.state is PagerState.DONE and not self.pager.awaiting_copies:
            link.offline = None
        return taken

    def drained(self) -> None:
        """The link wrote out everything its outbox held: read the next page if one is due."""
        if self.pager.drained():
            self._read()

    def _read(self) -> None:
        after, limit = self.pager.next_read()
        user = self._link.user
        assert user is not None  # paged only after connect
        try:
            self._ctx.refs.tell_store(PendingFor(user, after, limit, self._replies, self._page))
        except (Unavailable, MailboxFull) as exc:
            self._page(None, exc)

    def _page(self, result: list[StoredMessage] | None, error: BaseException | None) -> None:
        link = self._link
        pager = self.pager
        if link.offline is not self:
            return  # the connection closed meanwhile
        if error is not None or result is None:
            logger.warning(
                "offline delivery stopped: %s; the rest waits for the next connect",
                error,
                extra=log_context(conn=link.conn_id, user=link.user),
            )
            pager.failed()
        else:
            frames = {m.mid: message_frame(m) for m in result}
            encoding = link.encoding
            sizes = [(mid, len(frame.bytes_for(encoding))) for mid, frame in frames.items()]
            sending = pager.page_read(sizes)
            for mid in sending:
                link.send_frame(frames[mid])
            if not sending and pager.state is PagerState.SENDING:
                self.drained()  # the page only repeated messages sent already: nothing to wait for
                return
        if pager.state is PagerState.DONE:
            for frame in pager.release():
                link.send_frame(frame)
            if not pager.awaiting_copies:
                link.offline = None


def _sent_since(since_ms: int, mid: str) -> bool:
    """Whether the message ``mid`` was sent at or after ``since_ms`` (by its sender's clock)."""
    return mid_ms(mid) >= since_ms
