"""Rate limits: parsing ``600/m`` and the fixed-window arithmetic (pure)."""
from __future__ import annotations

import pytest

from plumbing.ratelimit import Rate, parse_rate, verdict, window

RATES = [
    pytest.param("600/m", Rate(600, 60), id="per-minute"),
    pytest.param("10/s", Rate(10, 1), id="per-second"),
    pytest.param("1000/5m", Rate(1000, 300), id="per-five-minutes"),
    pytest.param(" 5 / hour ", Rate(5, 3600), id="words-and-spaces"),
    pytest.param("100/d", Rate(100, 86400), id="per-day"),
    pytest.param("", None, id="empty-is-unlimited"),
]


@pytest.mark.parametrize(("text", "rate"), RATES)
def test_parse_rate_reads_counts_and_units(text: str, rate: Rate | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["600", "x/m", "10/fortnight", "0/m", "5/0s", "-1/s"])
def test_parse_rate_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_verdict_counts_down_and_says_when_to_come_back() -> None:
    rate = Rate(2, 60)
    assert window(rate, 125.5) == (2, 55)
    assert verdict(rate, 1, 125.5).headers() == {"x-ratelimit-limit": "2", "x-ratelimit-remaining": "1",
                                                 "x-ratelimit-reset": "55"}
    refused = verdict(rate, 3, 125.5)
    assert not refused.allowed and refused.headers()["retry-after"] == "55"
