"""The Origin check as a table: which browser pages may open a WebSocket to the node."""

from __future__ import annotations

import pytest

from actorim.config import Config
from actorim.domain.origins import OriginPolicy, origin_of

HOST = "chat.example.com"
SITE = "https://chat.example.com"


@pytest.mark.parametrize(
    ("settings", "origin", "host", "accepted"),
    [
        # Not a browser: no Origin, nothing to check.
        (("", (), False), None, HOST, True),
        # Outside development mode, an origin equal to Host is not enough (DNS rebinding).
        (("", (), False), SITE, HOST, False),
        (("", (), False), "http://evil.example", "evil.example", False),
        # ... the public URL's origin is, whatever the Host (a proxy may rewrite it).
        ((SITE + "/chat/", (), False), SITE, "10.0.0.11:8080", True),
        (("https://CHAT.example.com:443", (), False), "https://chat.example.com", HOST, True),
        ((SITE, (), False), "http://chat.example.com", HOST, False),
        ((SITE, (), False), "https://chat.example.com:8443", HOST, False),
        ((SITE, (), False), "https://chat.example.com.evil.example", HOST, False),
        # ... and so are the allowed origins, compared without case or a trailing slash.
        (("", ("https://app.example/",), False), "https://APP.example", HOST, True),
        (("", ("https://app.example",), False), "https://other.example", HOST, False),
        (("", ("*",), False), "https://anywhere.example", HOST, True),
        # Development mode also accepts a page served by the host it asked.
        (("", (), True), "http://127.0.0.1:8080", "127.0.0.1:8080", True),
        (("", (), True), "http://localhost:8080", "127.0.0.1:8080", False),
        (("", (), True), "null", "127.0.0.1:8080", False),
    ],
)
def test_an_origin_is_accepted_only_when_the_settings_name_it(
    settings: tuple[str, tuple[str, ...], bool], origin: str | None, host: str, accepted: bool
) -> None:
    public_url, allowed, dev = settings
    policy = OriginPolicy.build(public_url=public_url, allowed=allowed, dev=dev)
    assert policy.allows(origin, host=host) is accepted


def test_a_node_told_of_no_origin_outside_development_mode_refuses_every_browser() -> None:
    assert OriginPolicy.build(public_url="", allowed=(), dev=False).refuses_every_browser
    assert not OriginPolicy.build(public_url="", allowed=(), dev=True).refuses_every_browser
    assert not OriginPolicy.build(public_url=SITE, allowed=(), dev=False).refuses_every_browser


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://chat.example.com", SITE),
        ("HTTPS://Chat.Example.COM:443/a/b?c#d", SITE),
        ("http://chat.example.com:80", "http://chat.example.com"),
        ("http://chat.example.com:8080/", "http://chat.example.com:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_the_public_url_is_reduced_to_the_origin_browsers_send(url: str, origin: str) -> None:
    assert origin_of(url) == origin


@pytest.mark.parametrize(
    "url", ["chat.example.com", "ftp://chat.example.com", "https://", "http://host:99999"]
)
def test_a_public_url_that_is_not_an_http_url_is_refused_naming_the_setting(url: str) -> None:
    with pytest.raises(ValueError, match="public_url"):
        Config(public_url=url)
