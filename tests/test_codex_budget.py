"""The real Codex CLI meets a spent budget: it shows its usage-limit message and does not retry.

Codex reads a 429 whose error ``type`` is ``usage_limit_reached`` (with an integer
``resets_at``) as its own plan's usage limit: it says so, with the time the limit resets,
and gives up at once, whatever its retry settings; ``insufficient_quota`` is "Quota exceeded".
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.codex import VERSIONS, Codex
from tests.conftest import wait_for_logs
from tests.servers import Gateway, MockUpstream
from upstreams.models import ClientKey, Upstream

pytestmark = pytest.mark.codex


@pytest.fixture(params=VERSIONS)
def codex(request: pytest.FixtureRequest, tmp_path: Path) -> Codex:
    return Codex(request.param, tmp_path)


def retrying(codex: Codex) -> None:
    """Let Codex retry as it does by default (the suite's config turns retries off)."""
    config = codex.codex_home / "config.toml"
    config.write_text(config.read_text().replace("request_max_retries = 0", "request_max_retries = 4")
                      .replace("stream_max_retries = 0", "stream_max_retries = 4"))


@pytest.mark.parametrize(("period", "said"), [("day", "You’ve hit your usage limit."), ("total", "Quota exceeded")])
def test_codex_shows_the_usage_limit_and_does_not_retry(codex: Codex, gateway: Gateway, scripted: MockUpstream,
                                                        period: str, said: str) -> None:
    Upstream.objects.create(name="local", base_url=scripted.base_url)
    _, secret = ClientKey.objects.create_key("codex", token_budget=0, budget_period=period)
    codex.configure(gateway)
    retrying(codex)
    result, events = codex.exec("say hi", env={"GATEWAY_KEY": secret})
    shown = result.stdout + result.stderr
    assert result.returncode != 0
    assert said in shown, shown[-3000:]
    if period == "day":  # with the time it resets, from resets_at: midnight UTC (the test's zone)
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        assert f"Try again at {tomorrow:%b} {tomorrow.day}" in shown and "12:00 AM" in shown, shown[-3000:]
    assert scripted.requests() == []
    turns = [row for row in wait_for_logs(1) if row.endpoint == "responses"]
    assert [(r.status, r.error_type) for r in turns] == [(429, "usage_limit_reached" if period == "day"
                                                          else "insufficient_quota")]  # asked once: no retry
