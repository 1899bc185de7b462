"""How `make test` splits the suite into two pytest processes (tests/shard.py)."""

from __future__ import annotations

from tests.shard import ALONE, DEFAULT_WEIGHT_S, names_tests, outcome, split, suite_files


def test_files_go_longest_first_into_the_lightest_shard_and_unknown_ones_count_the_default() -> (
    None
):
    weights = {"a": 10.0, "b": 6.0, "c": 5.0, "d": 1.0}
    shards = split(["a", "b", "c", "d", "new"], weights, 2)
    # a 10 | b 6, c 5 (11) | the new file, 3 s by default, beside a (13) | d (12)
    assert DEFAULT_WEIGHT_S == 3.0
    assert [shard.files for shard in shards] == [["a", "new"], ["b", "c", "d"]]
    assert [shard.weight for shard in shards] == [13.0, 12.0]


def test_every_test_file_lands_in_exactly_one_shard() -> None:
    files = suite_files()
    assert "tests/test_shard.py" in files
    shards = split(files, {}, 2)
    dealt = [name for shard in shards for name in shard.files]
    assert sorted(dealt) == files


def test_a_shard_that_selected_nothing_passes_unless_none_selected_anything() -> None:
    assert outcome([0, 0]) == 0
    assert outcome([5, 0]) == 0
    assert outcome([5, 5]) == 5
    assert outcome([0, 1]) == 1
    assert outcome([2, 1]) == 2


def test_arguments_naming_files_or_tests_run_one_pytest_and_options_run_the_shards() -> None:
    assert names_tests(["tests/test_api.py"])
    assert names_tests(["-x", "test_api.py::test_x"])
    assert not names_tests(["-x", "-k", "presence and not cluster", "-m", "not slow"])


def test_the_files_run_alone_exist() -> None:
    assert set(suite_files()) >= ALONE
