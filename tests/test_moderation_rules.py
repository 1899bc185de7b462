"""The rules of moderation, fed to the pure decision module (``actorim.domain.moderation``):
who may act on whom, what each action leaves, when sanctions end, and the audit entry's
shape; no server."""

from __future__ import annotations

import doctest

import pytest

import actorim.domain.moderation
import actorim.store.moderationbook
from actorim.domain.moderation import (
    ACTIONS,
    APPLICATION,
    FOREVER_MS,
    AuditEntry,
    Refusal,
    Standing,
    applied,
    check_action,
    check_role,
)
from actorim.protocol.wire import WireFrame
from actorim.runtime.moderation import (
    ModerationNotice,
    _AuditIds,
    moderation_frame,
    notice_of,
)


def test_the_doctests_hold() -> None:
    assert doctest.testmod(actorim.domain.moderation).failed == 0
    assert doctest.testmod(actorim.store.moderationbook).failed == 0


@pytest.mark.parametrize(
    ("actor", "target", "refusal"),
    [
        ("member", "member", Refusal.NOT_MODERATOR),
        ("member", "owner", Refusal.NOT_MODERATOR),
        ("moderator", "member", None),
        ("moderator", "moderator", Refusal.OUTRANKED),
        ("moderator", "owner", Refusal.OUTRANKED),
        ("owner", "member", None),
        ("owner", "moderator", None),
        ("owner", "owner", Refusal.OUTRANKED),
        (APPLICATION, "owner", None),
    ],
)
def test_only_a_higher_role_of_moderator_or_above_acts(
    actor: str, target: str, refusal: Refusal | None
) -> None:
    for action in ACTIONS:
        assert check_action(actor, target, action) is refusal


def test_an_unknown_action_or_role_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="kick, ban"):
        check_action("owner", "member", "smite")
    with pytest.raises(ValueError, match="member, moderator, owner"):
        check_role("king")


def test_sanctions_end_at_their_expiry_or_never_and_lifting_clears_only_their_own() -> None:
    muted = applied(Standing("moderator"), "mute", now_ms=1_000, duration_ms=500)
    assert (muted.role, muted.muted(1_499), muted.muted(1_500)) == ("moderator", True, False)
    banned = applied(muted, "ban", now_ms=1_000, duration_ms=None)
    assert banned.banned_until == FOREVER_MS and banned.banned(10**15)
    assert applied(banned, "unban", now_ms=2_000, duration_ms=None) == muted
    assert applied(muted, "unmute", now_ms=2_000, duration_ms=None) == Standing("moderator")
    for lasting_nothing in ("kick", "delete"):
        assert applied(banned, lasting_nothing, now_ms=2_000, duration_ms=None) == banned
    assert Standing().plain(0) and not banned.plain(0)
    assert Standing(muted_until=5).plain(5)  # an ended mute is plain again


def test_an_entry_reads_back_from_its_json_and_says_null_for_no_expiry() -> None:
    ban = AuditEntry("a1", "lobby", 7, "al", "ban", "bo", "why", FOREVER_MS)
    assert ban.as_json()["until"] is None
    assert AuditEntry.from_json(ban.as_json()) == ban
    kick = AuditEntry("a2", "lobby", 8, "al", "kick", "bo")
    assert "until" not in kick.as_json() and AuditEntry.from_json(kick.as_json()) == kick
    delete = AuditEntry("a3", "lobby", 9, "al", "delete", "bo", mid="m1")
    assert AuditEntry.from_json(delete.as_json()) == delete


def test_a_connection_takes_notice_only_of_events_about_its_own_user() -> None:
    mute = AuditEntry("a1", "lobby", 7, "al", "mute", "bo", "", FOREVER_MS)
    frame = moderation_frame(mute)
    assert notice_of("bo", frame) == ModerationNotice("lobby", "mute", FOREVER_MS)
    assert notice_of("al", frame) is None
    deleted = moderation_frame(AuditEntry("a2", "lobby", 7, "al", "delete", "bo", mid="m"))
    assert notice_of("bo", deleted) is None  # nothing for the connection to change
    assert notice_of("bo", WireFrame({"t": "member", "room": "lobby", "user": "bo"})) is None


def test_audit_ids_made_within_one_millisecond_still_sort_in_the_order_made() -> None:
    ids = _AuditIds()
    made = [ids.next(5_000) for _ in range(50)] + [ids.next(4_000)]
    assert made == sorted(made) and len(set(made)) == len(made)
