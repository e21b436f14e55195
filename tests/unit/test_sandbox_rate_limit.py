"""The sandbox's rate limit (the 429 section of the benchmark): a bucket of one second's worth."""

from __future__ import annotations

import time

import pytest

from publisher.sandbox.faults import Faults


def test_requests_beyond_the_rate_are_refused_until_the_bucket_refills() -> None:
    faults = Faults.from_json({"rate_limit_per_second": 20.0})
    assert sum(not faults.over_rate() for _ in range(100)) == 20
    time.sleep(0.25)
    assert 3 <= sum(not faults.over_rate() for _ in range(100)) <= 7


def test_no_rate_limit_by_default_and_a_negative_one_is_refused() -> None:
    assert not any(Faults().over_rate() for _ in range(1000))
    with pytest.raises(ValueError, match="rate_limit_per_second"):
        Faults.from_json({"rate_limit_per_second": -1.0})
