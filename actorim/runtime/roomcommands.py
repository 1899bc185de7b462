"""The commands of lasting membership that a connection answers from the store: the inbox
(``conversations``), a room's members with their presence (``members``), a room's title and
topic (``room.update``) and the directory of public rooms (``rooms``).

Each asks the store (``membership.ask_store``) and answers; ``room.update`` also tells every
member's devices through the room's channel (the ephemeral path: every device subscribed to
the room, on every node), and ``members`` asks the presence tracker who is online.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

from actorim.domain.markers import NO_COUNTS, Counts
from actorim.domain.moderation import Standing
from actorim.domain.rooms import Conversation, conversation_cursor, conversations_page
from actorim.protocol import commands as cmd
from actorim.protocol.errors import CommandError, ErrorCode
from actorim.protocol.events import conversation_entry, room_entry, room_frame
from actorim.runtime.membership import ask_store
from actorim.runtime.messages import Statuses
from actorim.runtime.moderation import banned_from
from actorim.store.base import Store, inbox, private_to

if TYPE_CHECKING:
    from actorim.domain.messages import StoredMessage
    from actorim.runtime.context import NodeContext
    from actorim.runtime.link import Link

__all__ = [
    "connect_reads",
    "conversations",
    "inbox_page",
    "members",
    "refuse_reader",
    "refuse_reader_of_root",
    "room_update",
    "rooms",
]


def _page_size(asked: int | None, setting: int) -> int:
    return setting if asked is None else min(asked, setting)


# What a connect reads from the store: every conversation, one page, more?, the page's counts.
_InboxRead = tuple[list[Conversation], list[Conversation], bool, dict[str, Counts]]


def inbox_page(
    ctx: NodeContext, link: Link, before: str | None, limit: int | None
) -> tuple[list[Conversation], list[dict[str, Any]], dict[str, Any]]:
    """Every conversation of the link's user (rooms its token allows), and one page of them
    as wire entries, each with the user's marker and counts, with the paging fields (``more``,
    ``cursor``). One request to the store: a connect waits for it once."""
    read = _inbox_read(ctx, link, before, limit)
    return _inbox_entries(ask_store(ctx, read, "read your conversations"))


def connect_reads(
    ctx: NodeContext, link: Link
) -> tuple[list[Conversation], list[dict[str, Any]], dict[str, Any], dict[str, int] | None]:
    """What a ``connect`` reads, in one request to the store: ``inbox_page``'s first page and
    the rooms where the user is muted (None when that read failed)."""
    read = _inbox_read(ctx, link, None, None)
    assert link.identity is not None
    user = link.identity.user

    def both(store: Store) -> tuple[_InboxRead, dict[str, int] | None]:
        inbox = read(store)
        try:
            mutes: dict[str, int] | None = store.mutes_of(user)
        except Exception:  # read again on its own by the connection, and answered there
            mutes = None
        return inbox, mutes

    inbox, mutes = ask_store(ctx, both, "read your conversations")
    return (*_inbox_entries(inbox), mutes)


def _inbox_read(
    ctx: NodeContext, link: Link, before: str | None, limit: int | None
) -> Callable[[Store], _InboxRead]:
    identity = link.identity
    assert identity is not None
    size = _page_size(limit, ctx.config.inbox_limit)
    cap = ctx.config.unread_count_max

    def read(store: Store) -> _InboxRead:
        everything = inbox(store, identity.user, identity.may_join)
        page, more = conversations_page(everything, before=before, limit=size)
        convs = [c.conv for c in page]
        counts = store.counts(identity.user, convs, cap=cap) if convs else {}
        return everything, page, more, counts

    return read


def _inbox_entries(
    read: _InboxRead,
) -> tuple[list[Conversation], list[dict[str, Any]], dict[str, Any]]:
    everything, page, more, counts = read
    paging: dict[str, Any] = {"more": more}
    if more and page:
        paging["cursor"] = conversation_cursor(page[-1])
    entries = [conversation_entry(c, counts.get(c.conv, NO_COUNTS)) for c in page]
    return everything, entries, paging


def conversations(ctx: NodeContext, link: Link, command: cmd.Conversations) -> None:
    _, entries, paging = inbox_page(ctx, link, command.before, command.limit)
    link.reply(command.t, command.id, {"conversations": entries, **paging})


def _allowed(link: Link, room: str) -> None:
    assert link.identity is not None
    if not link.identity.may_join(room):
        raise CommandError(ErrorCode.FORBIDDEN, f"your token does not allow room {room!r}")


def refuse_reader(user: str, room: str, store: Store) -> CommandError | None:
    """The CommandError that refuses ``user`` reading ``room`` (its history, its members, its
    threads), else None: ``forbidden`` when it is private and they are not its member,
    ``banned`` while they are banned from it (a ban keeps them from reading what they may no
    longer join). Run on the store's thread, in the same job as the read it guards. A room the
    connection is subscribed to needs no such check: a ban or a removal unsubscribes it."""
    if private_to(store, user, room):
        return CommandError(
            ErrorCode.FORBIDDEN, f"room {room!r} is private: only its members may read it"
        )
    standing = store.standings(room, [user]).get(user)
    if standing is not None and standing.banned(int(time.time() * 1000)):
        return banned_from(room, standing)
    return None


def refuse_reader_of_root(
    user: str, subscribed: AbstractSet[str], store: Store, root: StoredMessage | None
) -> CommandError | None:
    """``refuse_reader`` for a thread, whose room is its root's (None: not there, answered
    elsewhere); ``subscribed``: the rooms the connection was subscribed to when it asked."""
    if root is None or root.room is None or root.room in subscribed:
        return None
    return refuse_reader(user, root.room, store)


def members(ctx: NodeContext, link: Link, command: cmd.Members) -> None:
    _allowed(link, command.room)
    user = link.user
    assert user is not None
    size = _page_size(command.limit, ctx.config.member_list_limit)
    subscribed = command.room in link.rooms

    def read(store: Store) -> tuple[list[str], bool, dict[str, Standing]] | CommandError:
        refusal = None if subscribed else refuse_reader(user, command.room, store)
        return refusal or _members_with_roles(store, command.room, command.cursor, size)

    found = ask_store(ctx, read, f"read the members of {command.room!r}")
    if isinstance(found, CommandError):
        raise found
    users, more, standings = found

    def answer(statuses: dict[str, Any]) -> None:
        data: dict[str, Any] = {
            "members": [
                {"user": u, "status": statuses.get(u, "offline"), "role": standings[u].role}
                if u in standings and standings[u].role != "member"
                else {"user": u, "status": statuses.get(u, "offline")}
                for u in users
            ]
        }
        if more and users:
            data["cursor"] = users[-1]
        link.reply(command.t, command.id, data)

    ctx.refs.tell_presence(Statuses(tuple(users), answer))


def _members_with_roles(
    store: Store, room: str, after: str | None, size: int
) -> tuple[list[str], bool, dict[str, Standing]]:
    """A page of ``room``'s members and the standings kept of them (their roles)."""
    users, more = store.members_of(room, after=after, limit=size)
    return users, more, store.standings(room, users)


def room_update(ctx: NodeContext, link: Link, command: cmd.RoomUpdate) -> None:
    _allowed(link, command.room)
    user = link.user
    assert user is not None
    info = ask_store(
        ctx,
        lambda store: store.update_room(
            user, command.room, title=command.title, topic=command.topic
        ),
        f"update room {command.room!r}",
    )
    if info is None:
        raise CommandError(
            ErrorCode.FORBIDDEN, f"only members of room {command.room!r} may change it; join it"
        )
    frame = room_frame(info)
    link.reply(command.t, command.id, {k: v for k, v in frame.obj.items() if k != "t"})
    ctx.broker.publish_ephemeral(command.room, frame, link)


def rooms(ctx: NodeContext, link: Link, command: cmd.Rooms) -> None:
    identity = link.identity
    assert identity is not None
    size = _page_size(command.limit, ctx.config.directory_limit)
    page, more = ask_store(
        ctx,
        lambda store: store.directory(
            query=command.query, after=command.cursor, limit=size, allowed=identity.may_join
        ),
        "read the room directory",
    )
    data: dict[str, Any] = {"rooms": [room_entry(info) for info in page]}
    if more and page:
        data["cursor"] = page[-1].room
    link.reply(command.t, command.id, data)
