"""``RoomBook``: lasting membership, room metadata and direct-conversation partners in memory.

The memory store's half of the membership part of the Store contract (``Store.join_room`` and
the methods after it), kept apart from the messages so that each stays one job. Sorted lists
of names make every page a bisection: O(log n + limit), and a join or leave O(n) for the list
it changes (a user's rooms are bounded by ``max_rooms``).

>>> book = RoomBook()
>>> book.join_room("al", "lobby", max_rooms=1), book.join_room("al", "team", max_rooms=1)
('joined', 'full')
>>> book.update_room("al", "lobby", title="Lobby"), book.update_room("bo", "lobby", topic="x")
(RoomInfo(room='lobby', title='Lobby', topic='', public=True, members=1), None)
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Callable, Sequence
from dataclasses import replace

from actorim.domain.rooms import JoinOutcome, RoomInfo, matches

__all__ = ["RoomBook", "page_after"]


def page_after(names: Sequence[str], after: str | None, limit: int) -> tuple[list[str], bool]:
    """The ``limit`` names of sorted ``names`` after ``after``, and whether more follow."""
    start = 0 if after is None else bisect_right(names, after)
    return list(names[start : start + limit]), start + limit < len(names)


class RoomBook:
    """See the module docstring."""

    def __init__(self) -> None:
        self._rooms_of: dict[str, list[str]] = {}
        self._members: dict[str, list[str]] = {}
        self._info: dict[str, RoomInfo] = {}
        self._names: list[str] = []  # every room that ever had a member, sorted
        self._partners: dict[str, list[str]] = {}

    def join_room(self, user: str, room: str, *, max_rooms: int) -> JoinOutcome:
        rooms = self._rooms_of.setdefault(user, [])
        index = bisect_right(rooms, room)
        if index and rooms[index - 1] == room:
            return "member"
        if len(rooms) >= max_rooms:
            if not rooms:
                del self._rooms_of[user]
            return "full"
        rooms.insert(index, room)
        insort(self._members.setdefault(room, []), user)
        if room not in self._info:
            self._info[room] = RoomInfo(room)
            insort(self._names, room)
        return "joined"

    def leave_room(self, user: str, room: str) -> bool:
        rooms = self._rooms_of.get(user, [])
        if room not in rooms:
            return False
        rooms.remove(room)
        if not rooms:
            del self._rooms_of[user]
        self._members[room].remove(user)
        return True

    def rooms_of(self, user: str) -> list[str]:
        return list(self._rooms_of.get(user, ()))

    def members_of(self, room: str, *, after: str | None, limit: int) -> tuple[list[str], bool]:
        return page_after(self._members.get(room, ()), after, limit)

    def _info_of(self, room: str) -> RoomInfo | None:
        info = self._info.get(room)
        if info is None:
            return None
        return replace(info, members=len(self._members.get(room, ())))

    def room_info(self, rooms: Sequence[str]) -> dict[str, RoomInfo]:
        found = {room: self._info_of(room) for room in rooms}
        return {room: info for room, info in found.items() if info is not None}

    def update_room(
        self, user: str, room: str, *, title: str | None, topic: str | None
    ) -> RoomInfo | None:
        if user not in self._members.get(room, ()):
            return None
        info = self._info[room]
        self._info[room] = replace(
            info,
            title=info.title if title is None else title,
            topic=info.topic if topic is None else topic,
        )
        return self._info_of(room)

    def set_public(self, room: str, public: bool) -> None:
        if room not in self._info:
            self._info[room] = RoomInfo(room)
            insort(self._names, room)
        self._info[room] = replace(self._info[room], public=public)

    def create_room(self, room: str, *, title: str, topic: str, public: bool) -> RoomInfo | None:
        if room in self._info:
            return None
        self._info[room] = RoomInfo(room, title, topic, public)
        insort(self._names, room)
        return self._info_of(room)

    def set_room(
        self, room: str, *, title: str | None, topic: str | None, public: bool | None
    ) -> RoomInfo | None:
        info = self._info.get(room)
        if info is None:
            return None
        self._info[room] = replace(
            info,
            title=info.title if title is None else title,
            topic=info.topic if topic is None else topic,
            public=info.public if public is None else public,
        )
        return self._info_of(room)

    def delete_room(self, room: str) -> list[str] | None:
        if room not in self._info:
            return None
        members = self._members.pop(room, [])
        for user in members:
            rooms = self._rooms_of[user]
            rooms.remove(room)
            if not rooms:
                del self._rooms_of[user]
        del self._info[room]
        self._names.remove(room)
        return members

    def directory(
        self,
        *,
        query: str | None,
        after: str | None,
        limit: int,
        allowed: Callable[[str], bool],
    ) -> tuple[list[RoomInfo], bool]:
        names = self._names
        start = 0 if after is None else bisect_right(names, after)
        page: list[RoomInfo] = []
        for room in names[start:]:
            info = self._info_of(room)
            assert info is not None
            if info.public and allowed(room) and matches(info, query):
                if len(page) == limit:
                    return page, True
                page.append(info)
        return page, False

    def dm_partners(self, user: str) -> list[str]:
        return list(self._partners.get(user, ()))

    def met(self, sender: str, to: str) -> None:
        """A direct message between ``sender`` and ``to`` was stored."""
        for one, other in ((sender, to), (to, sender)):
            partners = self._partners.setdefault(one, [])
            index = bisect_right(partners, other)
            if not (index and partners[index - 1] == other):
                partners.insert(index, other)

    def clear(self) -> None:
        for table in (self._rooms_of, self._members, self._info, self._partners):
            table.clear()
        self._names.clear()
