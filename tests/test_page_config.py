"""``/page/config``: how the chat page learns the way people sign in here, and the settings it
comes from (``login_url``, ``token_url``), refused when the page could not use them."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from actorim.config import Config
from tests.support import RunningNode, http_get


def test_the_page_config_says_dev_mode_and_no_sign_in_addresses_by_default(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node()
    status, headers, body = http_get(node.http + "/page/config")
    assert status == 200
    assert headers["cache-control"] == "no-store"
    assert json.loads(body) == {"dev": True, "login_url": None, "token_url": None}


def test_the_page_config_names_the_applications_sign_in_outside_development_mode(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node(
        dev=False,
        secret="x" * 40,
        login_url="https://app.example.com/login",
        token_url="/auth/chat-token",
    )
    _, _, body = http_get(node.http + "/page/config")
    assert json.loads(body) == {
        "dev": False,
        "login_url": "https://app.example.com/login",
        "token_url": "/auth/chat-token",
    }


@pytest.mark.parametrize("url", ["/auth/token", "/t"])
def test_a_token_url_on_the_pages_origin_is_accepted(url: str) -> None:
    assert Config(token_url=url).token_url == url


@pytest.mark.parametrize(
    "url", ["https://app.example.com/token", "//app.example.com/token", "auth/token"]
)
def test_a_token_url_off_the_pages_origin_is_refused_naming_the_setting(url: str) -> None:
    # The page's Content-Security-Policy lets it fetch its own origin only.
    with pytest.raises(ValueError, match=r"token_url.*a path on the chat page's origin"):
        Config(token_url=url)


@pytest.mark.parametrize("url", ["https://app.example.com/login", "http://10.0.0.1/in", "/login"])
def test_a_login_url_may_be_an_address_or_a_path(url: str) -> None:
    assert Config(login_url=url).login_url == url


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "app.example.com/login", "//evil/x", "ftp://x/y"]
)
def test_a_login_url_that_is_not_http_or_a_path_is_refused_naming_the_setting(url: str) -> None:
    with pytest.raises(ValueError, match="login_url"):
        Config(login_url=url)
