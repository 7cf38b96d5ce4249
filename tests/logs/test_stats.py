"""The overview: traffic, failures by whose they are, latency and tokens, from known rows (SQLite and PostgreSQL)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client

from logs.models import RequestLog
from logs.pages import charts
from logs.pages.overview import overview
from logs.pages.stats import WINDOWS, Bucket, percentile, totals
from logs.pages.usage import KeyUsage

NOW = datetime(2025, 6, 1, 12, 0, 30, tzinfo=UTC)
HOUR, DAY = WINDOWS["hour"], WINDOWS["day"]


def log(n: int, minutes_ago: float, **fields: Any) -> RequestLog:
    defaults: dict[str, Any] = {"endpoint": "responses", "model": "m", "upstream_name": "a", "status": 200,
                                "outcome": "ok", "key_name": "alice"}
    return RequestLog.objects.create(request_id=f"req_{n}", started=NOW - timedelta(minutes=minutes_ago),
                                     **(defaults | fields))


@pytest.fixture
def known(db: None) -> None:
    """Upstream a: ten fast answers; b: one slow answer and one failure; a rejection; older rows."""
    for n in range(10):
        log(n, minutes_ago=n + 0.5, ttfb_ms=10.0 * (n + 1), input_tokens=100, output_tokens=10)
    log(10, 12, upstream_name="b", key_name="bob", ttfb_ms=500.0, input_tokens=1000, output_tokens=200)
    log(11, 13, upstream_name="b", key_name="bob", ttfb_ms=40.0, outcome="upstream_error", status=502,
        error_type="upstream_unavailable", error_message="Could not connect to the upstream.")
    log(12, 14, upstream_name="", key_name="", ttfb_ms=1.0, outcome="rejected", status=404,
        error_type="model_not_found", error_message="The model 'x' is not served")
    log(13, 180, ttfb_ms=1000.0, input_tokens=7, output_tokens=7)  # in the day, not the hour
    log(14, 60 * 48, ttfb_ms=5.0)  # in neither


PERCENTILES = [
    pytest.param([], 50, None, id="no-values"),
    pytest.param([7.0], 95, 7.0, id="one-value"),
    pytest.param([10.0 * n for n in range(1, 11)], 50, 50.0, id="p50-of-ten"),
    pytest.param([10.0 * n for n in range(1, 11)], 95, 100.0, id="p95-of-ten"),
    pytest.param([float(n) for n in range(1, 101)], 95, 95.0, id="p95-of-hundred"),
]


@pytest.mark.parametrize(("values", "p", "expected"), PERCENTILES)
def test_percentile_is_the_nearest_rank(values: list[float], p: float, expected: float | None) -> None:
    assert percentile(values, p) == expected


@pytest.mark.django_db
def test_hour_totals_count_requests_failures_rate_and_tokens(known: None) -> None:
    t = totals(HOUR, NOW)
    assert (t.requests, t.failed, t.input_tokens, t.output_tokens) == (13, 2, 2000, 300)
    assert t.per_minute == pytest.approx(13 / 60)
    # The headline rate is the upstreams': one upstream failure of the 12 requests that reached one
    # (the unknown model is the client's mistake, counted apart).
    assert (t.reached, t.upstream_failed, t.error_rate) == (12, 1, pytest.approx(1 / 12))
    assert {f.fault: f.count for f in t.faults} == {"upstream": 1, "refused": 1, "disconnected": 0, "gateway": 0}
    # Every upstream's TTFBs together: 10..100, 40 and 500 (the rejection reached no upstream).
    assert (t.p50_ttfb, t.p95_ttfb) == (50.0, 500.0)


@pytest.mark.django_db
def test_the_day_includes_what_the_hour_does_not(known: None) -> None:
    t = totals(DAY, NOW)
    assert (t.requests, t.failed, t.input_tokens) == (14, 2, 2007)
    assert t.per_minute == pytest.approx(14 / 1440)


@pytest.mark.django_db
def test_ttfb_percentiles_are_per_upstream(known: None) -> None:
    upstreams = {u.name: u for u in overview(HOUR, NOW).upstreams}
    assert set(upstreams) == {"a", "b"}
    assert (upstreams["a"].requests, upstreams["a"].failed, upstreams["a"].p50_ttfb, upstreams["a"].p95_ttfb) == (
        10, 0, 50.0, 100.0)
    assert (upstreams["b"].requests, upstreams["b"].failed, upstreams["b"].p50_ttfb, upstreams["b"].p95_ttfb) == (
        2, 1, 40.0, 500.0)
    assert upstreams["b"].error_rate == 0.5
    assert {u.name: u.p95_ttfb for u in overview(DAY, NOW).upstreams}["a"] == 1000.0


@pytest.mark.django_db
def test_tokens_per_key_biggest_first(known: None) -> None:
    keys = overview(HOUR, NOW).keys
    assert [(k.name, k.requests, k.failed, k.upstream_failed, k.refused, k.input_tokens, k.output_tokens)
            for k in keys] == [("bob", 2, 1, 1, 0, 1000, 200), ("alice", 10, 0, 0, 0, 1000, 100),
                               ("", 1, 1, 0, 1, 0, 0)]


@pytest.mark.django_db
def test_failures_are_grouped_by_kind_with_the_newest_message(known: None) -> None:
    log(15, 1, upstream_name="b", outcome="upstream_error", status=502, error_type="upstream_unavailable",
        error_message="Could not connect, again.")
    errors = overview(HOUR, NOW).errors
    assert [(e.fault, e.error_type, e.upstream, e.key, e.model, e.count) for e in errors] == [
        ("upstream", "upstream_unavailable", "b", "alice", "m", 1),
        ("upstream", "upstream_unavailable", "b", "bob", "m", 1),
        ("refused", "model_not_found", "", "", "m", 1)]  # as many each: the newest first
    assert errors[0].message == "Could not connect, again."
    assert errors[0].last_seen == NOW - timedelta(minutes=1)


@pytest.mark.django_db
def test_requests_per_minute_fill_one_bar_each(known: None) -> None:
    buckets = overview(HOUR, NOW).buckets
    assert len(buckets) == 60
    assert buckets[-1].start == datetime(2025, 6, 1, 12, 0, tzinfo=UTC)  # the current minute is last
    assert sum(b.requests for b in buckets) == 13 and sum(b.failed for b in buckets) == 2
    by_minute = {b.start.strftime("%H:%M"): (b.requests, b.failed) for b in buckets if b.requests}
    assert by_minute["12:00"] == (1, 0) and by_minute["11:47"] == (1, 1) and by_minute["11:46"] == (1, 1)


@pytest.mark.django_db
def test_the_day_has_fifteen_minute_bars(known: None) -> None:
    buckets = overview(DAY, NOW).buckets
    assert len(buckets) == 96 and buckets[-1].start == datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    assert sum(b.requests for b in buckets) == 14


def test_the_traffic_chart_draws_a_bar_per_bucket_with_failures_in_red() -> None:
    start = datetime(2025, 6, 1, 11, 0, tzinfo=UTC)
    buckets = [Bucket(start + timedelta(minutes=n), requests=n, failed=n // 2) for n in range(60)]
    svg = str(charts.traffic(buckets))
    assert svg.startswith("<svg") and svg.count("<g>") == 60 and svg.count('class="bar-failed"') == 60
    assert "11:59 UTC: 59 requests, 29 failed" in svg


def test_chart_labels_are_escaped() -> None:
    svg = str(charts.tokens([KeyUsage("<script>alert(1)</script>", "", 1, 0, 0, 0, 0, 5, 5, 0, "", "")]))
    assert "<script>" not in svg and "&lt;script&gt;" in svg


@pytest.mark.django_db
def test_the_overview_page_draws_both_windows(admin_client: Client) -> None:
    RequestLog.objects.create(request_id="req_now", endpoint="responses", outcome="upstream_error", status=502,
                              upstream_name="a", key_name="alice", ttfb_ms=80.0, input_tokens=3, output_tokens=4,
                              error_type="upstream_unavailable")
    for window in ("hour", "day"):
        html = admin_client.get(f"/logs/stats/?window={window}").content.decode()
        assert html.count("<svg") == 3  # traffic, TTFB, tokens
        assert "upstream_unavailable" in html and "100.0%" in html
        assert "fault=upstream&amp;since=" in html
