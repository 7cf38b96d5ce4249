"""The request log UI in a real browser: Playwright for Python driving Debian's chromium (`make chromium`).

Screenshots land in test-artifacts/screenshots/ (git-ignored) for a human to look at.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.utils.timezone import now
from playwright.sync_api import Page, sync_playwright

from logs.models import RequestLog
from tests.conftest import wait_for_logs
from tests.servers import PASSWORD, ROOT, Gateway, MockUpstream
from upstreams.models import Upstream

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = ROOT / "test-artifacts" / "screenshots"

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium: run `make chromium` (apt-get)")]


@pytest.fixture
def traffic(gateway: Gateway, chat_upstream: Upstream) -> None:
    """A staff user and an hour of mixed requests, as the list would show them."""
    get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    kinds = [("ok", 200, "", ""), ("upstream_error", 502, "upstream_unavailable",
                                   "Could not connect to the upstream: [Errno 111] Connection refused."),
             ("ok", 200, "", ""), ("rejected", 404, "model_not_found", "The model 'gpt-9' is not served."),
             ("upstream_error", 429, "rate_limit_exceeded", "Rate limit reached, try again in 3s"), ("ok", 200, "", "")]
    for n in range(24):
        outcome, status, error_type, message = kinds[n % len(kinds)]
        RequestLog.objects.create(
            request_id=f"req_seed_{n:02}", started=now() - timedelta(minutes=2 * n + 1), endpoint="responses",
            model="qwen3-coder" if n % 3 else "deepseek-chat", upstream_name="chat-mock", upstream_model="qwen3-coder",
            mode="bridge", stream=True, status=status, upstream_status=status if outcome != "rejected" else None,
            outcome=outcome, error_type=error_type, error_message=message, key_name=("alice", "bob")[n % 2],
            connected_ms=40.0 + n, ttfb_ms=90.0 + 7 * n, duration_ms=900.0 + 40 * n, input_tokens=1200 + 10 * n,
            output_tokens=300 + n, passed_headers={"retry-after": "3"} if status == 429 else {})


@pytest.fixture
def page(traffic: None, gateway: Gateway) -> Iterator[Page]:
    """A signed-in staff browser tab on the request log; ask for it last.

    While Playwright's sync API runs, this thread has a running asyncio loop: Django
    refuses the ORM then (and would open a second, never-closed connection if allowed).
    So every row a test needs is written by fixtures set up before this one.
    """
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        # A viewer far from UTC: the pages show their own time zone (hover: UTC).
        tab = browser.new_page(viewport={"width": 1440, "height": 900}, timezone_id="Asia/Tokyo")
        tab.set_default_timeout(15_000)
        tab.goto(f"{gateway.url}/logs/")
        assert "/admin/login/" in tab.url  # anonymous: the admin's login page first
        tab.fill("#id_username", "ops")
        tab.fill("#id_password", PASSWORD)
        tab.click("input[type=submit]")
        tab.wait_for_url(f"{gateway.url}/logs/")
        yield tab
        browser.close()


@pytest.fixture
def late_evening(traffic: None) -> RequestLog:
    """A request of 23:30 UTC: 08:30 the next morning in Tokyo."""
    return RequestLog.objects.create(request_id="req_tokyo", started=datetime(2026, 11, 30, 23, 30, 5, 250000, UTC),
                                     endpoint="responses", model="qwen3-coder", outcome="ok", status=200)


def test_times_are_shown_in_the_viewers_time_zone_with_utc_on_hover(gateway: Gateway, late_evening: RequestLog,
                                                                    page: Page) -> None:
    page.goto(f"{gateway.url}/logs/req_tokyo/")
    received = page.locator("dd time").first
    assert received.inner_text() == "2026-12-01 08:30:05.250000 Asia/Tokyo"
    assert received.get_attribute("title") == "2026-11-30 23:30:05.250000 UTC"
    page.goto(f"{gateway.url}/logs/?q=req_tokyo")
    cell = page.locator("#log-table tbody td.time time")
    assert cell.inner_text() == "Dec 1 08:30:05" and "UTC" in (cell.get_attribute("title") or "")


def outcomes(tab: Page) -> list[str]:
    return tab.locator("#log-table tbody td.outcome .badge").all_inner_texts()


def test_staff_sign_in_and_filter_the_list(gateway: Gateway, page: Page) -> None:
    assert page.locator("#log-table tbody tr").count() == 24
    page.screenshot(path=SHOTS / "logs-list.png", full_page=True)
    page.select_option("select[name=outcome]", "upstream_error")
    page.fill("input[name=since]", "1h")
    page.click(".filters button[type=submit]")
    page.wait_for_url("**/logs/?outcome=upstream_error&*")
    assert "since=1h" in page.url  # bookmarkable
    assert set(outcomes(page)) == {"upstream_error"} and len(outcomes(page)) == 8
    assert page.locator(".toolbar .count").inner_text() == "8 requests match"
    page.screenshot(path=SHOTS / "logs-filtered.png", full_page=True)


def test_a_row_opens_the_requests_detail_page(gateway: Gateway, page: Page) -> None:
    page.goto(f"{gateway.url}/logs/?outcome=upstream_error&q=rate_limit")
    page.click("#log-table tbody tr:first-child td.rid a")
    page.wait_for_url("**/logs/req_seed_*/")
    assert page.locator("h1").inner_text() == "req_seed_04"
    assert "Rate limit reached, try again in 3s" in page.locator(".error-box").inner_text()
    assert "retry-after" in page.locator("table.headers").inner_text()
    assert page.locator("svg.timeline rect").count() == 3
    assert "Body capture is off" in page.locator(".bodies").inner_text()
    page.screenshot(path=SHOTS / "logs-detail.png", full_page=True)


def test_a_request_appears_live_on_the_list(gateway: Gateway, scripted: MockUpstream, active_key: str,
                                            page: Page) -> None:
    scripted.script({"chunks": [{"text": "live!"}, {"finish": "stop"}]})
    page.check("#live-toggle")
    page.wait_for_selector("#live-status.on")
    answer = httpx.post(f"{gateway.url}/v1/chat/completions",
                        json={"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]},
                        headers={"authorization": f"Bearer {active_key}", "x-request-id": "req_browser_live"})
    assert answer.status_code == 200
    row = page.wait_for_selector('#log-table tbody tr[data-request-id="req_browser_live"]')
    assert page.locator("#log-table tbody tr").first.get_attribute("data-request-id") == "req_browser_live"
    assert "alice" in row.inner_text() and "chat-mock" in row.inner_text()
    # The summary atop the page follows: the 24 seeded requests of the last hour, then this one.
    figure = '#summary tr[data-window="hour"] td[data-figure="requests"]'
    requests = page.locator(figure)
    page.wait_for_function("(figure) => document.querySelector(figure).textContent.trim() === '25'", arg=figure)
    assert requests.inner_text() == "25"
    page.screenshot(path=SHOTS / "logs-live.png")


def test_the_overview_draws_its_charts(gateway: Gateway, page: Page) -> None:
    page.click("nav a:text('Overview')")
    page.wait_for_url("**/logs/stats/")
    assert page.locator("svg.chart").count() == 3
    # 8 upstream failures of the 24 seeded requests, all of which reached the upstream; the 4
    # unknown models are the clients' mistakes, counted apart.
    assert page.locator("#tile-upstream-errors .value").inner_text() == "33.3%"
    page.click("#tile-upstream-errors a")
    assert page.locator(".toolbar .count").inner_text() == "8 requests match"  # the rows behind the figure
    page.go_back()
    page.screenshot(path=SHOTS / "logs-overview.png", full_page=True)


THREAD = "01a24f0c-db57-7923-a9cf-29415e960daa"


@pytest.fixture
def codex_session(traffic: None, gateway: Gateway, scripted: MockUpstream, active_key: str) -> None:
    """A Codex-like session through the gateway: a turn, a compaction, the turn after it (headers as Codex sends)."""
    scripted.script({"chunks": [{"text": "Hi."}, {"finish": "stop"},
                                {"usage": {"prompt_tokens": 900, "completion_tokens": 3, "total_tokens": 903}}]},
                    {"chunks": [{"text": "The user said hi."}, {"finish": "stop"}]},
                    {"chunks": [{"text": "Still here."}, {"finish": "stop"}]})

    def send(kind: str, items: list[dict]) -> dict:
        metadata = f'{{"thread_id": "{THREAD}", "request_kind": "{kind}"}}'
        answer = httpx.post(f"{gateway.url}/v1/responses", json={"model": "mock-model", "store": False,
                                                                   "input": items},
                            headers={"authorization": f"Bearer {active_key}", "session-id": THREAD,
                                     "x-codex-turn-metadata": metadata}, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    hello = {"role": "user", "content": "hi"}
    send("turn", [hello])
    [item] = send("compaction", [hello, {"type": "compaction_trigger"}])["output"]
    send("turn", [hello, item, {"role": "user", "content": "still there?"}])
    wait_for_logs(3)


def test_a_codex_session_is_one_filter_and_one_page_with_its_compaction(gateway: Gateway, codex_session: None,
                                                                      page: Page) -> None:
    page.goto(f"{gateway.url}/logs/")
    page.click(f'#log-table a.session[href="/logs/sessions/{THREAD}/"] >> nth=0')
    page.wait_for_url(f"**/logs/sessions/{THREAD}/")
    rows = page.locator("#session-table tbody tr")
    assert rows.count() == 3
    assert [rows.nth(n).get_attribute("data-kind") for n in range(3)] == ["turn", "compaction", "turn"]
    assert "compaction" in (rows.nth(1).get_attribute("class") or "")
    assert "summarized in 1 upstream call(s)" in rows.nth(1).inner_text()
    assert page.locator("#session-compactions").inner_text() == "1"
    assert page.locator("#session-turns").inner_text() == "2"
    page.screenshot(path=SHOTS / "logs-session.png", full_page=True)
    page.goto(f"{gateway.url}/logs/?session={THREAD}")
    assert page.locator("#log-table tbody tr").count() == 3
    assert page.locator(".toolbar a.button:text('Session view')").count() == 1
