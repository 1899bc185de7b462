"""``actorim bench``: its pure parts fed directly, then whole runs against a real node."""

from __future__ import annotations

import argparse
import doctest
import importlib
import io
import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest

from actorim import cli
from actorim.protocol.frames import FrameReader, Message
from actorim.tools.loadtest import (
    BenchOptions,
    Outcome,
    Tally,
    Threshold,
    is_loopback,
    options_from,
)
from actorim.tools.loadtest.options import add_flags
from actorim.tools.loadtest.plan import NS, Layout, Schedule, Window, ramp_start_ns
from actorim.tools.loadtest.progress import Counters, Progress
from actorim.tools.loadtest.report import render_table, to_json
from actorim.tools.loadtest.stats import Histogram, expected_deliveries, lost_deliveries, summarize
from actorim.tools.loadtest.throttle import FIRST_GAP_S, MAX_GAP_S, Throttle
from actorim.tools.loadtest.wire import BODY_HEADER_BYTES, WorkerSpec, make_body, read_body
from actorim.tools.loadtest.wsclient import (
    HandshakeError,
    ServerFrames,
    WebSocketProtocolError,
    accept_key,
    check_handshake_response,
    masked_frame,
)
from tests.support import RunningNode

SECRET = "load-test-secret-0123456789abcdef0123456789"

# --- plan: who sends what, when ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "process", "clients", "senders"),
    [
        (Layout(clients=10, processes=3, rooms=2, senders=4), 0, [0, 3, 6, 9], [0, 3]),
        (Layout(clients=10, processes=3, rooms=2, senders=4), 2, [2, 5, 8], [2]),
        (Layout(clients=5, processes=5, rooms=1, senders=5), 4, [4], [4]),
        (Layout(clients=4, processes=1, rooms=1, senders=0), 0, [0, 1, 2, 3], []),
    ],
)
def test_clients_and_senders_are_strided_over_processes(
    layout: Layout, process: int, clients: list[int], senders: list[int]
) -> None:
    assert list(layout.clients_of(process)) == clients
    assert list(layout.senders_of(process)) == senders
    assert all(layout.process_of(c) == process for c in clients)


def test_every_client_is_in_exactly_one_process_and_one_room() -> None:
    layout = Layout(clients=23, processes=4, rooms=5, senders=7)
    owned = sorted(c for p in range(4) for c in layout.clients_of(p))
    assert owned == list(range(23))
    assert sum(layout.members(r) for r in range(5)) == 23
    assert [layout.members(r) for r in range(5)] == [5, 5, 5, 4, 4]


@pytest.mark.parametrize(
    ("clients", "rooms", "senders", "fan_out"),
    [(20, 2, 20, 9.0), (10, 1, 3, 9.0), (3, 2, 3, (1 + 0 + 1) / 3), (4, 4, 4, 0.0), (4, 1, 0, 0.0)],
)
def test_fan_out_is_the_other_members_of_the_senders_rooms(
    clients: int, rooms: int, senders: int, fan_out: float
) -> None:
    assert Layout(clients, 1, rooms, senders).fan_out() == pytest.approx(fan_out)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"clients": 0, "processes": 1, "rooms": 1, "senders": 0},
        {"clients": 2, "processes": 3, "rooms": 1, "senders": 1},
        {"clients": 2, "processes": 1, "rooms": 3, "senders": 1},
        {"clients": 2, "processes": 1, "rooms": 1, "senders": 3},
    ],
)
def test_impossible_layouts_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        Layout(**kwargs)


@pytest.mark.parametrize(
    ("rate", "n", "offset_s"),
    [(100.0, 0, 0.0), (100.0, 1, 0.01), (100.0, 250, 2.5), (8.0, 3, 0.375)],
)
def test_sends_at_a_rate_are_evenly_spaced(rate: float, n: int, offset_s: float) -> None:
    assert Schedule(rate, ramp_s=0).offset_ns(n) == round(offset_s * NS)


def test_a_ramp_grows_the_rate_linearly_then_holds_it() -> None:
    schedule = Schedule(rate=100.0, ramp_s=2.0)
    # Due by t during the ramp: rate * t^2 / (2 * ramp); after it: rate * (t - ramp / 2).
    assert schedule.due_before(1 * NS) == 25
    assert schedule.due_before(2 * NS) == 100
    assert schedule.due_before(3 * NS) == 200
    gaps = [schedule.offset_ns(n + 1) - schedule.offset_ns(n) for n in range(1, 300)]
    assert all(a >= b for a, b in itertools.pairwise(gaps))
    assert gaps[-1] == pytest.approx(NS / 100, abs=1)


@pytest.mark.parametrize("ramp_s", [0.0, 0.5, 3.0])
def test_due_before_counts_exactly_the_messages_due_before_an_offset(ramp_s: float) -> None:
    schedule = Schedule(rate=37.0, ramp_s=ramp_s)
    for offset_ns in (0, 1, NS // 3, NS, 2 * NS + 7, 5 * NS):
        count = schedule.due_before(offset_ns)
        assert count == 0 or schedule.offset_ns(count - 1) < offset_ns
        assert schedule.offset_ns(count) >= offset_ns


def test_max_senders_start_evenly_over_the_ramp() -> None:
    assert [ramp_start_ns(2.0, s, 4) for s in range(4)] == [0, NS // 2, NS, 3 * NS // 2]
    assert ramp_start_ns(0.0, 3, 4) == 0


@pytest.mark.parametrize(
    ("offset_s", "measured"),
    [(0.0, False), (0.999, False), (1.0, True), (2.5, True), (2.999, True), (3.0, False)],
)
def test_only_sends_due_after_the_warmup_and_before_the_end_are_measured(
    offset_s: float, measured: bool
) -> None:
    window = Window.of_seconds(warmup_s=1.0, duration_s=2.0)
    assert window.measured(round(offset_s * NS)) is measured
    assert window.end_ns == 3 * NS


# --- stats: histogram, lost messages, metrics ---------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "low", "high"),
    [
        ([5], 0.5, 5, 5),
        (list(range(1, 101)), 0.5, 50, 50),
        (list(range(1, 101)), 0.99, 99, 99),
        (list(range(1, 1001)), 0.9, 900, 900 * 65 / 64),
        ([1_000] * 99 + [250_000], 0.99, 1_000, 1_000 * 65 / 64),
        ([1_000] * 99 + [250_000], 1.0, 250_000, 250_000),
        ([10**12], 0.5, 10**12, 10**12),
    ],
)
def test_quantiles_are_never_below_the_true_value_and_within_one_sixtyfourth(
    values: list[int], q: float, low: float, high: float
) -> None:
    histogram = Histogram()
    for value in values:
        histogram.record(value)
    assert low <= histogram.quantile(q) <= high


def test_an_empty_histogram_has_no_quantile_nor_mean() -> None:
    assert Histogram().quantile(0.99) is None
    assert Histogram().mean() is None


def test_merged_histograms_equal_one_histogram_of_every_value() -> None:
    parts, whole = [Histogram(), Histogram()], Histogram()
    for i, value in enumerate(range(0, 500_000, 777)):
        parts[i % 2].record(value)
        whole.record(value)
    parts[0].merge(parts[1])
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        assert parts[0].quantile(q) == whole.quantile(q)
    assert (parts[0].count, parts[0].total, parts[0].max) == (whole.count, whole.total, whole.max)


def test_a_histogram_survives_the_trip_between_processes() -> None:
    histogram = Histogram()
    for value in (3, 300, 30_000, 3_000_000, -5):
        histogram.record(value)
    copy = Histogram.from_json(json.loads(json.dumps(histogram.to_json())))
    quantiles = (0.2, 0.5, 0.8, 1.0)
    assert [copy.quantile(q) for q in quantiles] == [histogram.quantile(q) for q in quantiles]
    assert copy.quantile(0.2) == 0 and copy.quantile(1.0) == 3_000_000
    assert copy.mean() == histogram.mean() == (3 + 300 + 30_000 + 3_000_000) / 5


@pytest.mark.parametrize(
    ("room_acked", "own_acked", "received", "expected", "lost"),
    [
        (100, 10, 90, 90, 0),  # every message of the room but its own
        (100, 0, 97, 100, 3),  # a receiver that sends nothing expects them all
        (100, 10, 91, 90, 0),  # an extra delivery (a failed send that went through) hides none
        (0, 0, 0, 0, 0),
    ],
)
def test_lost_deliveries_are_acknowledged_messages_a_member_never_got(
    room_acked: int, own_acked: int, received: int, expected: int, lost: int
) -> None:
    assert expected_deliveries(room_acked, own_acked) == expected
    assert lost_deliveries(expected, received) == lost


def test_tallies_merge_counters_errors_and_histograms() -> None:
    a = Tally(clients=2, operations=10, sent=5, acked=4, received=8, errors={"rate_limited": 1})
    b = Tally(clients=3, operations=10, sent=5, acked=5, received=9, errors={"rate_limited": 2})
    a.latency.record(1_000)
    b.latency.record(3_000)
    b.error("closed:1013")
    total = Tally.total([Tally.from_json(json.loads(json.dumps(t.to_json()))) for t in (a, b)])
    assert (total.clients, total.sent, total.acked, total.received) == (5, 10, 9, 17)
    assert total.errors == {"rate_limited": 3, "closed:1013": 1}
    assert total.latency.count == 2


def test_metrics_are_rates_over_the_measured_duration_and_ms_latencies() -> None:
    tally = Tally(operations=200, sent=100, acked=100, received=900, expected=900, lost=0)
    tally.error("overloaded", 2)
    for us in (1_000, 2_000, 4_000):
        tally.latency.record(us)
    metrics = summarize(tally, duration_s=2.0)
    assert metrics["deliveries_per_s"] == 450.0
    assert metrics["sends_per_s"] == 50.0
    assert metrics["error_rate"] == 0.01
    assert metrics["avg_ms"] == pytest.approx(7 / 3, abs=0.001)
    assert metrics["max_ms"] == 4.0
    assert metrics["ack_p99_ms"] is None
    assert metrics["worker_cpu"] is None
    assert summarize(tally, duration_s=2.0, worker_cpu=0.4567)["worker_cpu"] == 0.457


# --- thresholds -


@pytest.mark.parametrize(
    ("text", "metrics", "passed"),
    [
        ("error_rate<0.01", {"error_rate": 0.0}, True),
        ("error_rate<0.01", {"error_rate": 0.01}, False),
        ("p99_ms<200", {"p99_ms": 150.5}, True),
        ("avg_ms <= 50", {"avg_ms": 50.0}, True),
        ("deliveries_per_s>10000", {"deliveries_per_s": 9_999.9}, False),
        ("lost==0", {"lost": 0}, True),
        ("lost==0", {"lost": 3}, False),
        ("errors!=0", {"errors": 0}, False),
        ("sends_per_s>=1e3", {"sends_per_s": 1000.0}, True),
        ("p99_ms<200", {"p99_ms": None}, False),  # nothing delivered cannot pass
    ],
)
def test_thresholds_hold_or_fail_on_the_metrics(
    text: str, metrics: dict[str, Any], passed: bool
) -> None:
    assert Threshold.parse(text).check(metrics).passed is passed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p99<200", "unknown metric 'p99'"),
        ("p99_ms=200", "METRIC<OP>NUMBER"),
        ("p99_ms<fast", "'fast' is not a number"),
        ("p99_ms<inf", "finite"),
        ("", "METRIC<OP>NUMBER"),
    ],
)
def test_malformed_thresholds_are_refused_saying_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Threshold.parse(text)


def test_a_threshold_result_says_the_measured_value() -> None:
    result = Threshold.parse("p99_ms<200").check({"p99_ms": 250.0})
    assert result.describe() == "FAIL  p99_ms<200  (p99_ms = 250)"


# --- throttle: --max senders find the server's allowance ----------------------------------------


def test_a_refusal_opens_a_gap_that_accepted_sends_close_again() -> None:
    throttle = Throttle()
    assert throttle.next_send_at(5.0) == 5.0
    throttle.refused(sent_at=1.0, now=1.0)
    assert throttle.gap_s == FIRST_GAP_S
    throttle.refused(sent_at=1.5, now=1.5)
    assert throttle.gap_s == 2 * FIRST_GAP_S
    assert throttle.next_send_at(5.0) == 5.0 + 2 * FIRST_GAP_S
    for _ in range(1000):
        throttle.accepted()
    assert throttle.gap_s == 0.0


def test_refusals_of_sends_already_in_flight_count_once() -> None:
    throttle = Throttle()
    throttle.refused(sent_at=1.0, now=1.2)
    for _ in range(7):  # the rest of a window of eight, sent before the first refusal arrived
        throttle.refused(sent_at=1.0, now=1.25)
    assert throttle.gap_s == FIRST_GAP_S


def test_the_gap_never_grows_past_its_bound() -> None:
    throttle = Throttle()
    for t in range(100):
        throttle.refused(sent_at=float(t), now=float(t))
    assert throttle.gap_s == MAX_GAP_S


# --- wsclient: the client side of RFC 6455 --------------------------------------------------------


def test_accept_key_matches_rfc_6455_section_1_3() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_masked_frames_match_rfc_6455_section_5_7_and_the_server_reads_them() -> None:
    frame = masked_frame(0x1, b"Hello", mask=bytes.fromhex("37fa213d"))
    assert frame == bytes.fromhex("818537fa213d7f9f4d5158")
    payload = bytes(range(256)) * 300  # a 64-bit length
    events = FrameReader(max_size=1 << 20).feed(masked_frame(0x2, payload) + frame)
    assert events == [Message(payload, True), Message(b"Hello", False)]


@pytest.mark.parametrize(
    ("chunks", "frames"),
    [
        ([b"\x81\x05Hello"], [(1, b"Hello")]),
        ([b"\x01\x03Hel", b"\x80\x02lo"], [(1, b"Hello")]),  # RFC 6455 §5.7, fragmented
        ([b"\x01\x03Hel\x89\x00\x80\x02lo"], [(9, b""), (1, b"Hello")]),  # ping between parts
        ([b"\x82\x7e\x01\x00" + b"x" * 256], [(2, b"x" * 256)]),  # 16-bit length
        ([bytes([b]) for b in b"\x82\x03abc\x88\x02\x03\xe8"], [(2, b"abc"), (8, b"\x03\xe8")]),
        ([b"\x82\x7e\x01"], []),  # an incomplete header waits for more
    ],
)
def test_server_frames_come_out_whole_however_the_bytes_are_cut(
    chunks: list[bytes], frames: list[tuple[int, bytes]]
) -> None:
    reader = ServerFrames()
    assert [f for chunk in chunks for f in reader.feed(chunk)] == frames


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("818537fa213d7f9f4d5158"),  # masked: servers must not mask (§5.1)
        b"\x80\x02lo",  # a continuation with nothing to continue
        b"\x01\x01a\x01\x01b",  # a new message inside a fragmented one
        b"\x82\x7f" + (1 << 40).to_bytes(8, "big"),  # over the size limit, refused on the header
    ],
)
def test_framing_a_server_must_never_send_is_an_error(data: bytes) -> None:
    with pytest.raises(WebSocketProtocolError):
        ServerFrames().feed(data)


def test_the_handshake_must_answer_101_with_the_right_accept_key() -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    good = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    check_handshake_response(good + b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", key)
    with pytest.raises(HandshakeError, match="503"):
        check_handshake_response(b"HTTP/1.1 503 Service Unavailable\r\n", key)
    with pytest.raises(HandshakeError, match="Accept"):
        check_handshake_response(good + b"Sec-WebSocket-Accept: wrong", key)


# --- wire: message bodies and the runner's pipe -


def test_a_body_carries_its_due_time_and_run_and_has_the_asked_size() -> None:
    body = make_body(1_700_000_000_123_456_789, 7, size=100)
    assert len(body) == 100
    assert read_body(body, 7) == 1_700_000_000_123_456_789


@pytest.mark.parametrize(
    "body", [make_body(5, 8, size=BODY_HEADER_BYTES), "hello", b"short", None, {"x": 1}]
)
def test_messages_of_other_runs_or_other_clients_are_not_counted(body: Any) -> None:
    assert read_body(body, 7) is None


def test_a_worker_spec_survives_the_trip_to_the_worker() -> None:
    spec = WorkerSpec(
        process=1,
        url="ws://127.0.0.1:1/ws",
        layout=Layout(10, 2, 2, 5),
        rate=None,
        window=8,
        ramp_s=0.5,
        warmup_s=1.0,
        duration_s=2.0,
        size=64,
        run_id=99,
        token_source="file",
        secret="",
        tokens=("a", "b"),
        user_prefix="u",
        room_prefix="r",
        connect_rate=50.0,
    )
    assert WorkerSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


# --- options: flags checked before anything runs --------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("app.localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("0.0.0.0", False),
        ("example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_only_this_machine_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def _options(*flags: str, env: dict[str, str] | None = None) -> BenchOptions:
    parser = argparse.ArgumentParser()
    add_flags(parser)
    return options_from(parser.parse_args(list(flags)), env or {})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["ws://10.0.0.5:8080/ws", "--dev"], "--allow-remote"),
        (["http://127.0.0.1:8080/ws", "--dev"], "ws://HOST:PORT/ws"),
        (["ws://127.0.0.1:8080/ws"], "--secret"),
        (["ws://127.0.0.1:8080/ws", "--dev", "--secret", "s"], "not --secret and --dev"),
        (["ws://127.0.0.1:8080/ws", "--dev", "--clients", "0"], "--clients"),
        (["ws://127.0.0.1:8080/ws", "--dev", "--clients", "4", "--rooms", "5"], "--rooms"),
        (["ws://127.0.0.1:8080/ws", "--dev", "--senders", "many"], "--senders"),
        (["ws://127.0.0.1:8080/ws", "--dev", "--senders", "101"], "--senders"),
        (["ws://127.0.0.1:8080/ws", "--dev", "--rate", "0"], "--rate"),
        (["ws://127.0.0.1:8080/ws", "--dev", "--duration", "86400"], "--duration"),
        (["ws://127.0.0.1:8080/ws", "--dev", "--size", "4"], "--size"),
        (["ws://127.0.0.1:8080/ws", "--dev", "--user-prefix", "a b"], "--user-prefix"),
        (["ws://127.0.0.1:8080/ws", "--dev", "--threshold", "p42_ms<1"], "unknown metric"),
        (["ws://127.0.0.1:8080/ws", "--token-file", "/nonexistent/tokens"], "cannot read"),
    ],
)
def test_bad_flags_are_refused_naming_the_flag(flags: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _options(*flags)


def test_a_remote_server_is_accepted_with_allow_remote() -> None:
    options = _options("wss://chat.example.com/ws", "--dev", "--allow-remote")
    assert options.url == "wss://chat.example.com/ws"


@pytest.mark.parametrize(
    ("flags", "senders"),
    [(["--senders", "all"], 200), (["--senders", "10%"], 20), (["--senders", "7"], 7), ([], 200)],
)
def test_senders_are_a_count_a_percentage_or_all(flags: list[str], senders: int) -> None:
    options = _options("ws://127.0.0.1:1/ws", "--dev", "--clients", "200", *flags)
    assert options.layout.senders == senders


def test_defaults_keep_two_members_per_room_and_no_more_processes_than_clients() -> None:
    options = _options("ws://127.0.0.1:1/ws", "--dev", "--clients", "6", "--processes", "16")
    assert (options.layout.rooms, options.layout.processes) == (3, 6)
    assert options.rate == 100.0
    assert options.warnings() == []


def test_tokens_come_from_the_secret_in_the_environment_unless_another_source_is_named(
    tmp_path: Any,
) -> None:
    env = {"ACTORIM_SECRET": SECRET}
    assert _options("ws://127.0.0.1:1/ws", env=env).secret == SECRET
    assert _options("ws://127.0.0.1:1/ws", "--dev", env=env).token_source == "dev"
    token_file = tmp_path / "tokens"
    token_file.write_text("t0\nt1\n\nt2\n")
    options = _options("ws://127.0.0.1:1/ws", "--token-file", str(token_file), "--clients", "3")
    assert options.tokens == ("t0", "t1", "t2")
    with pytest.raises(ValueError, match="holds 3 tokens for 4 clients"):
        _options("ws://127.0.0.1:1/ws", "--token-file", str(token_file), "--clients", "4")


def test_settings_that_will_disappoint_are_warned_about() -> None:
    options = _options(
        "ws://127.0.0.1:1/ws", "--dev", "--clients", "4", "--rooms", "4", "--senders", "2",
        "--rate", "500", "--ramp", "5", "--warmup", "1",
    )  # fmt: skip
    warnings = " / ".join(options.warnings())
    assert "250 messages/s" in warnings
    assert "single member" in warnings
    assert "--ramp is longer than --warmup" in warnings


# --- progress and report -


def test_without_a_terminal_progress_is_a_line_per_phase_and_every_few_seconds() -> None:
    stream = io.StringIO()
    progress = Progress(stream, tty=False, clients=4)
    progress.update(Counters(connected=1), phase="connecting", fraction=0.25, now=0.0)
    progress.update(Counters(connected=4), phase="connecting", fraction=1.0, now=1.0)
    progress.update(Counters(connected=4), phase="running", fraction=0.1, now=1.1)
    progress.update(Counters(connected=4, received=50), phase="running", fraction=0.5, now=2.0)
    progress.update(Counters(connected=4, received=90), phase="running", fraction=0.9, now=6.2)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert "connecting 1/4 connected" in lines[0]
    assert "running" in lines[1] and "running" in lines[2]
    assert "90 delivered" in lines[2]
    assert "\r" not in stream.getvalue()


def test_on_a_terminal_progress_redraws_one_line_and_ends_it() -> None:
    stream = io.StringIO()
    progress = Progress(stream, tty=True, clients=4)
    for i in range(5):
        progress.update(Counters(sent=i), phase="running", fraction=i / 5, now=i * 0.2)
    progress.close()
    text = stream.getvalue()
    assert text.count("\r") == 5 and text.endswith("\n") and text.count("\n") == 1


def _outcome(thresholds: tuple[str, ...], *, worker_cpu: float = 0.25) -> Outcome:
    options = _options("ws://127.0.0.1:1/ws", "--dev", "--clients", "20", "--rooms", "2")
    tally = Tally(clients=20, connected=20, operations=240, sent=200, acked=200)
    tally.received = tally.expected = 1800
    tally.latency.record(2_000)
    tally.error("rate_limited", 3)
    metrics = summarize(tally, options.duration_s, worker_cpu=worker_cpu)
    checks = tuple(Threshold.parse(t).check(metrics) for t in thresholds)
    return Outcome(options, tally, metrics, checks)


def test_the_json_result_names_metrics_as_thresholds_do() -> None:
    data = json.loads(json.dumps(to_json(_outcome(("lost==0", "p99_ms<1")))))
    assert data["metrics"]["deliveries"] == 1800
    assert data["metrics"]["lost"] == 0
    assert data["errors"] == {"rate_limited": 3}
    assert data["thresholds"] == [
        {"threshold": "lost==0", "value": 0, "passed": True},
        {"threshold": "p99_ms<1", "value": 2.0, "passed": False},
    ]
    assert data["passed"] is False
    assert data["settings"]["clients"] == 20


def test_the_table_shows_deliveries_latency_errors_and_thresholds() -> None:
    table = render_table(_outcome(("lost==0",)))
    assert "1,800 of 1,800 expected (180.0/s), 0 lost" in table
    assert "p99 2.00" in table
    assert "rate_limited 3 (error rate 1.25%)" in table
    assert "PASS  lost==0  (lost = 0)" in table
    assert "busiest worker process used 25% of a CPU" in table
    assert "bottleneck" not in table


def test_the_table_says_when_the_tool_itself_may_be_the_bottleneck() -> None:
    table = render_table(_outcome((), worker_cpu=0.93))
    assert "used 93% of a CPU: the tool may be the bottleneck, add --processes" in table


# --- whole runs against a real node -

StartNode = Callable[..., RunningNode]


def _bench(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(["bench", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.process
def test_a_run_delivers_every_message_to_every_other_member_and_reports_json(
    start_node: StartNode, capsys: pytest.CaptureFixture[str]
) -> None:
    node = start_node()
    status, out, err = _bench(
        capsys, node.url, "--dev", "--clients", "20", "--processes", "2", "--rooms", "2",
        "--duration", "2", "--warmup", "0.5", "--rate", "100", "--json",
        "--threshold", "lost==0", "--threshold", "error_rate<0.01", "--threshold", "p99_ms<2000",
    )  # fmt: skip
    assert status == 0, err
    result = json.loads(out)
    metrics = result["metrics"]
    assert metrics["connected"] == 20
    assert metrics["acked"] == metrics["sent"] == 200  # 100/s for the 2 measured seconds
    assert metrics["deliveries"] == metrics["expected"] == 200 * 9  # 9 others per room of 10
    assert metrics["lost"] == 0 and metrics["errors"] == 0
    assert metrics["deliveries_per_s"] == 900.0
    assert 0 <= metrics["p50_ms"] <= metrics["p99_ms"] <= metrics["max_ms"]
    assert 0 < metrics["worker_cpu"] < 1
    assert [t["passed"] for t in result["thresholds"]] == [True, True, True]
    assert "running" in err  # progress went to stderr, the result alone to stdout


@pytest.mark.process
def test_a_failed_threshold_exits_1_and_says_which(
    start_node: StartNode, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    node = start_node(dev=False, secret=SECRET)
    monkeypatch.setenv("ACTORIM_SECRET", SECRET)
    status, out, err = _bench(
        capsys, node.url, "--clients", "4", "--processes", "1", "--rooms", "1",
        "--duration", "0.5", "--warmup", "0", "--rate", "40",
        "--threshold", "lost==0", "--threshold", "deliveries_per_s>1e9",
    )  # fmt: skip
    assert status == 1
    assert "PASS  lost==0" in out
    assert "FAIL  deliveries_per_s>1e+09  (deliveries_per_s = 120)" in out
    assert "1 threshold(s) failed: deliveries_per_s>1e+09" in err


@pytest.mark.process
def test_max_senders_slow_down_to_the_servers_allowance_instead_of_being_cut_off(
    start_node: StartNode, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    node = start_node(rate=50.0, burst=10.0, rate_abuse_rejections=40)
    token_file = tmp_path / "tokens"
    token_file.write_text("".join(node.token(f"max{i}") + "\n" for i in range(4)))
    status, out, err = _bench(
        capsys, node.url, "--token-file", str(token_file), "--clients", "4", "--processes", "1",
        "--rooms", "1", "--max", "--window", "8", "--duration", "1.5", "--warmup", "0.3",
        "--json",
    )  # fmt: skip
    assert status == 0, err
    metrics = json.loads(out)["metrics"]
    assert metrics["throttled"] > 0  # the server refused some sends...
    assert metrics["errors"] == 0  # ...but never closed a connection for abuse
    assert 4 * 50 * 0.5 <= metrics["sends_per_s"] <= 4 * 50 * 1.5
    assert metrics["lost"] == 0 and metrics["deliveries"] == metrics["acked"] * 3


@pytest.mark.process
def test_a_server_that_refuses_every_client_aborts_the_run_with_status_3(
    start_node: StartNode, capsys: pytest.CaptureFixture[str]
) -> None:
    node = start_node(dev=False, secret=SECRET)
    status, out, err = _bench(
        capsys, node.url, "--secret", "not-" + SECRET, "--clients", "2", "--processes", "1"
    )
    assert status == 3
    assert out == ""
    assert "no client could connect and join; errors: unauthenticated 2" in err


def test_a_remote_url_is_refused_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "ws://203.0.113.7:8080/ws", "--dev"])
    assert exit_info.value.code == 2
    assert "--allow-remote" in capsys.readouterr().err


@pytest.mark.parametrize(
    "module", ["plan", "stats", "thresholds", "throttle", "wsclient", "wire", "progress"]
)
def test_the_examples_in_the_docstrings_hold(module: str) -> None:
    assert doctest.testmod(importlib.import_module(f"actorim.tools.loadtest.{module}")).failed == 0
