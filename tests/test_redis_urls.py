"""``redis_url`` names the topology: one server, a Redis Cluster or Sentinel, TLS and a password
in each; a URL that names none is refused at start-up with the setting, never the password."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from redis.cluster import ClusterPipeline
from redis.exceptions import AskError, MovedError, TryAgainError

from actorim.redis.link import ClusterLink
from actorim.redis.topology import parse_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost:6379/0", ("single", False, (), "", 0)),
        ("rediss://:pw@redis.example:6380/1", ("single", True, (), "", 0)),
        (
            "redis+cluster://10.0.0.1:7000,10.0.0.2:7001",
            ("cluster", False, (("10.0.0.1", 7000), ("10.0.0.2", 7001)), "", 0),
        ),
        (
            "rediss+cluster://:pw@[::1]:7000,h2",
            ("cluster", True, (("::1", 7000), ("h2", 6379)), "", 0),
        ),
        (
            "redis+sentinel://s1:26379,s2/mymaster/3",
            ("sentinel", False, (("s1", 26379), ("s2", 26379)), "mymaster", 3),
        ),
        (
            "rediss+sentinel://app:pw@s1/mymaster?sentinel_password=x&ssl_ca_certs=/ca.pem",
            ("sentinel", True, (("s1", 26379),), "mymaster", 0),
        ),
    ],
)
def test_each_scheme_names_its_topology(url, expected) -> None:
    """``expected``: kind, TLS, hosts, master name, database."""
    topology = parse_url(url)
    assert (topology.kind, topology.tls, topology.hosts, topology.master, topology.db) == expected


def test_a_password_and_user_are_read_from_the_url_and_kept_out_of_its_repr() -> None:
    topology = parse_url("rediss+cluster://app:s%40cret@h1:7000?ssl_cert_reqs=required")
    assert (topology.username, topology.password) == ("app", "s@cret")
    assert topology.options == {"ssl_cert_reqs": "required"}
    assert "s@cret" not in repr(topology)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://h:1", "unknown scheme 'http'"),
        ("localhost:6379", "is not a URL"),
        ("redis+sentinel://s1:26379", "names no master"),
        ("redis+cluster://h1:7000/2", "only database 0"),
        ("redis+cluster://h1:70000", "bad port '70000'"),
        ("redis+cluster://:secretpw@,h2", "empty host"),
        ("redis+sentinel://s1/m/x", "not a number"),
        ("redis+cluster://h1?tls=1", "unknown options tls"),
    ],
)
def test_a_url_that_names_no_topology_is_refused_with_the_setting_and_what_to_write(
    url, says
) -> None:
    with pytest.raises(ValueError) as refused:
        parse_url(url)
    message = str(refused.value)
    assert says in message
    assert "redis_url (--redis-url / REDIS_URL)" in message
    assert "redis+cluster://host:port,host:port" in message
    assert "secretpw" not in message


def test_a_node_refuses_a_bad_url_when_it_is_built() -> None:
    with pytest.raises(ValueError, match="names no master"):
        ClusterLink("redis+sentinel://127.0.0.1:1", "n1")


def test_a_cluster_pipeline_sends_again_only_what_no_node_ran() -> None:
    """MOVED, ASK and TRYAGAIN are answers of a node that did not run the command; after a lost
    connection or a timeout the command may have run, so it is not sent again."""
    assert set(ClusterPipeline.ERRORS_ALLOW_RETRY) == {MovedError, AskError, TryAgainError}


def test_the_urls_of_the_deploy_docs_name_the_topologies_they_describe() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "deploy.md").read_text()
    urls = re.findall(r"^REDIS_URL=(\S+)$", text, re.M)
    parsed = [parse_url(url) for url in urls]
    assert [(t.kind, t.tls, t.password) for t in parsed] == [
        ("cluster", True, "PASSWORD"),
        ("sentinel", True, "PASSWORD"),
    ]
    assert all(t.options == {"ssl_ca_certs": "/etc/ssl/redis-ca.pem"} for t in parsed)


def test_a_node_whose_redis_cluster_does_not_answer_at_start_says_so() -> None:
    # Nothing listens on port 1 of the loopback: refused at once.
    with pytest.raises(
        ValueError, match=re.escape("no node of the Redis Cluster at 127.0.0.1:1")
    ) as no:
        ClusterLink("redis+cluster://:secretpw@127.0.0.1:1", "n1")
    assert "secretpw" not in str(no.value)
