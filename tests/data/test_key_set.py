"""KeySet: exact set answers whether integer keys ascend, overlap or are not integers."""

from __future__ import annotations

import random

import pytest

from results_flow.data.key_set import KeySet


@pytest.mark.parametrize("order", ["ascending", "shuffled", "descending"])
def test_answers_like_a_set_whatever_the_order_of_chunks(order: str) -> None:
    values = list(range(0, 3_000, 3))
    if order == "shuffled":
        random.Random(5).shuffle(values)
    elif order == "descending":
        values.reverse()
    keys, plain = KeySet(), set()
    for start in range(0, len(values), 100):
        chunk = values[start : start + 100]
        assert keys.isdisjoint(chunk) == plain.isdisjoint(chunk)
        keys.update(chunk)
        plain.update(chunk)
    probes = [-3, 0, 1, 2, 3, 1_500, 1_501, 2_997, 2_998, 10**30, "3", 3.0, True]
    assert [p in keys for p in probes] == [p in plain for p in probes]
    assert len(keys) == len(plain)
    assert not keys.isdisjoint([5, 6, 2_997]) and keys.isdisjoint([3_000, 3_001])


def test_ascending_integer_keys_stay_in_runs_and_other_keys_in_a_set() -> None:
    keys = KeySet()
    keys.update(range(1, 1_001))
    keys.update(range(1_001, 2_001))
    assert keys.isdisjoint(list(range(2_001, 3_001)))
    assert keys._runs and not keys._set  # 8 bytes a key, no set
    assert not keys.isdisjoint([1_500, 4_000])  # an overlap: checked exactly
    mixed = KeySet()
    mixed.update(["a", "b"])
    mixed.update([(1, "x")])
    assert "a" in mixed and (1, "x") in mixed and "c" not in mixed
    assert mixed.isdisjoint(["c"]) and not mixed.isdisjoint(["b"])
    big = KeySet()
    big.update([2**70, 1])  # beyond 64 bits: kept in the set
    assert 2**70 in big and 1 in big and big.isdisjoint([2])
