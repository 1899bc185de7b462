"""Other libraries' internals still have the shape we rely on.

Every private name of Pykka is used in supervisors/_pykka_compat.py only, and every private name
of gevent's sockets and pywsgi in actorim/web/_gevent_compat.py only. Each lists what it relies
on with a check; here each check is one test, so an upgrade that changes one of them fails with
a message naming the library, its version and what changed, instead of breaking actors or
connections in ways that are hard to trace. The last tests prove the checks would notice.
"""

from __future__ import annotations

from typing import Any

import pytest
from pykka import ActorRef, ActorRegistry
from pykka.messages import _ActorStop

from actorim.web import _gevent_compat
from supervisors import _pykka_compat


@pytest.mark.parametrize("item", _pykka_compat.SHAPE_CHECKS, ids=lambda item: item.name)
def test_pykka_internal_still_has_the_shape_relied_on(item: _pykka_compat.ShapeCheck) -> None:
    problem = item.check()
    assert problem is None, (
        f"pykka {_pykka_compat.installed_version()} (read from {_pykka_compat.PYKKA_VERSION_READ}) "
        f"changed {item.name}, used for {item.used_for}: {problem}"
    )


@pytest.mark.parametrize("item", _gevent_compat.SHAPE_CHECKS, ids=lambda item: item.name)
def test_gevent_internal_still_has_the_shape_relied_on(item: _gevent_compat.ShapeCheck) -> None:
    problem = item.check()
    assert problem is None, (
        f"{_gevent_compat.versions()} (read from {_gevent_compat.VERSIONS_READ}) changed "
        f"{item.name}, used for {item.used_for}: {problem}"
    )


def test_shape_problems_name_the_version_and_what_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _pykka_compat.shape_problems() == []
    assert _gevent_compat.shape_problems() == []

    make_ref = ActorRef.__init__

    def ref_without_weakref(ref: ActorRef[Any], actor: Any) -> None:
        make_ref(ref, actor)
        del ref._actor_weakref

    monkeypatch.setattr(ActorRef, "__init__", ref_without_weakref)
    monkeypatch.delattr(ActorRegistry, "_actor_refs")

    problems = _pykka_compat.shape_problems()

    assert len(problems) >= 2
    installed = _pykka_compat.installed_version()
    assert all(
        p.startswith(f"pykka {installed} (internals read from 4.5) changed ") for p in problems
    )
    assert any("ActorRegistry._actor_refs is gone" in p for p in problems)
    assert any("ActorRef._actor_weakref" in p for p in problems)


def test_a_changed_stop_message_is_noticed(monkeypatch: pytest.MonkeyPatch) -> None:
    class NewStop(tuple[Any, ...]):
        pass

    monkeypatch.setattr("pykka.messages._ActorStop", NewStop)

    (problem,) = _pykka_compat.shape_problems()

    assert "changed messages._ActorStop" in problem
    assert "not an _ActorStop() each" in problem
    assert _ActorStop is _pykka_compat.ActorStop


def test_a_changed_gevent_internal_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from gevent.pywsgi import WSGIHandler
    from geventwebsocket.handler import WebSocketHandler

    monkeypatch.delattr(WSGIHandler, "_sendall")
    monkeypatch.setattr(WebSocketHandler, "handle", lambda self: None, raising=False)

    problems = _gevent_compat.shape_problems()

    assert len(problems) == 2
    assert all(p.startswith(f"{_gevent_compat.versions()} (internals read from ") for p in problems)
    assert "WSGIHandler._sendall is gone" in problems[0]
    assert "now also defines ['handle']" in problems[1]
