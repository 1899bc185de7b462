"""Who may change a stored message, and when: the one place the rules of edit and delete live.

A change (an edit, a delete or a reaction) is checked twice. Here, against the message as last
read, for the rules that depend on who asks and when: the author edits within the edit window, and
deletes at any time. Then by the store, atomically with the write and after it recognised a
resend by its ``cid``, for the state that can change under a check: the message was deleted
or pruned meanwhile (``actorim.store.base.change_refusal``). Both answer with a
:class:`Refusal`, named so that the protocol layer can turn it into an error code.

Moderators come later: a moderator's right to delete someone else's message is one more
clause in :func:`check_change`, with the roles passed in.

>>> from actorim.domain.messages import StoredMessage
>>> hi = StoredMessage("m1", "r:lobby", 1, 1_000, "ann", "text", b"hi", None, "lobby", None)
>>> check_change(hi, by="ann", kind="edit", now_ms=2_000, edit_window_ms=60_000) is None
True
>>> check_change(hi, by="bob", kind="delete", now_ms=2_000, edit_window_ms=60_000)
<Refusal.NOT_AUTHOR: 'not_author'>
>>> check_change(hi, by="ann", kind="edit", now_ms=99_000, edit_window_ms=60_000)
<Refusal.TOO_LATE: 'too_late'>
>>> check_change(hi, by="ann", kind="edit", now_ms=99_000, edit_window_ms=0) is None
True
>>> check_change(hi, by="bob", kind="react", now_ms=99_000, edit_window_ms=60_000) is None
True
"""

from __future__ import annotations

from enum import StrEnum

from actorim.domain.messages import CHANGE_KINDS, DELETE, EDIT, REACTION_KINDS, StoredMessage

__all__ = ["Refusal", "check_change"]


class Refusal(StrEnum):
    """Why a change was not made."""

    UNKNOWN = "unknown"
    """No such message (never sent, pruned by retention, or a change rather than a message)."""
    DELETED = "deleted"
    """The message was deleted: it cannot be edited or deleted again."""
    NOT_AUTHOR = "not_author"
    """Only the author of a message may change it."""
    TOO_LATE = "too_late"
    """The edit window of the message has passed."""


def check_change(
    target: StoredMessage | None,
    *,
    by: str,
    kind: str,
    now_ms: int,
    edit_window_ms: int,
) -> Refusal | None:
    """Why ``by`` may not make a change of ``kind`` to ``target`` now, or None when they may.

    ``edit_window_ms`` of 0 lets an author edit for as long as the message is kept. A delete
    has no window. Anyone who sees the message may react to it (the caller checks that).
    ``target`` None (the message is not in the store) is UNKNOWN. A deleted ``target``
    passes: the store refuses it as DELETED, unless the change is the resend of one it made
    (the same ``cid``), which it answers as the first time.
    """
    if kind not in CHANGE_KINDS:
        raise ValueError(f"kind must be one of {CHANGE_KINDS}, got {kind!r}")
    if target is None or target.target is not None:
        return Refusal.UNKNOWN
    if kind in REACTION_KINDS:
        return None
    if target.sender != by:
        return Refusal.NOT_AUTHOR
    if kind == EDIT and edit_window_ms > 0 and now_ms - target.ts > edit_window_ms:
        return Refusal.TOO_LATE
    assert kind in (EDIT, DELETE)
    return None
