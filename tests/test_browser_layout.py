"""The request log's layout in a real browser: 1280 and 420 px wide, light and dark colour schemes.

At 1280 px the list's key columns stay in view beside the widest cells (a long error type, the
compaction and session badges); at 420 px no page scrolls sideways (a wide table scrolls in its
own box) and the top bar's Log out stays in view; the pages follow the viewer's colour scheme.
Screenshots of each page, width and scheme land in test-artifacts/screenshots/.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, Literal

import pytest
from django.contrib.auth import get_user_model
from django.utils.timezone import now
from playwright.sync_api import Browser, Page, sync_playwright

from logs.models import RequestLog
from tests.servers import PASSWORD, Gateway
from tests.test_browser import ARGS, CHROMIUM, SHOTS, pytestmark  # noqa: F401  (the chromium skipif)
from upstreams.models import ClientKey, Upstream

Scheme = Literal["light", "dark"]
SESSION = "019a6c3e-5b7d-7f10-8a42-3c1d9e0b7a55"
WIDE_ERROR = "upstream_stream_ended_before_its_terminal_event_after_first_byte"  # 64 characters, the column's most
LONG_ID = "req_" + "7f3a9c" * 16  # a client-chosen request id, as long as a UUID pair and more
PAGES = {"list": "/logs/", "detail": f"/logs/{LONG_ID}/", "overview": "/logs/stats/",
         "session": f"/logs/sessions/{SESSION}/"}


@pytest.fixture
def wide_rows(gateway: Gateway) -> None:
    """A staff user and an hour of requests with the widest cells the list shows (and a failover), on its first page."""
    get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    common: dict[str, Any] = {"endpoint": "responses", "mode": "bridge", "stream": True, "key_name": "ci-runner-eu",
                              "upstream_name": "openrouter-eu-west-fallback", "connected_ms": 52.0, "ttfb_ms": 410.0,
                              "duration_ms": 18_250.0, "input_tokens": 182_345, "output_tokens": 4_321}
    model = "qwen3-coder-480b-a35b-instruct-fp8-long-context"
    for n in range(12):
        failed = n % 3 == 1
        RequestLog.objects.create(
            request_id=f"req_layout_{n:02}", started=now() - timedelta(minutes=3 * n + 2), model=model,
            upstream_model=model, status=502 if failed else 200, upstream_status=502 if failed else 200,
            outcome="upstream_error" if failed else "ok", error_type=WIDE_ERROR if failed else "",
            error_message="The upstream closed the stream before response.completed. " * 3 if failed else "",
            session_id=SESSION, request_kind="compaction" if n % 4 == 0 else "turn",
            transport="websocket" if n % 2 else "http",
            notes="Compacted 48 items into 1: summarized in 2 upstream call(s)." if n % 4 == 0 else "", **common)
    RequestLog.objects.create(  # the newest row carries everything wide at once
        request_id=LONG_ID, started=now() - timedelta(seconds=20), model=model, upstream_model=model, status=502,
        upstream_status=502, outcome="upstream_error", error_type=WIDE_ERROR,
        error_message="The upstream closed the stream before response.completed. " * 6, session_id=SESSION,
        request_kind="compaction", transport="websocket", passed_headers={"x-ratelimit-remaining-requests": "0"},
        failed_over="deepseek-primary-us-east", attempts=[{"upstream": "deepseek-primary-us-east", "at": "connect",
                                                           "code": "upstream_unavailable", "status": None, "ms": 31.0}],
        notes="Compacted 48 items into 1: summarized in 2 upstream call(s).", **common)


@pytest.fixture
def open_page(wide_rows: None, gateway: Gateway) -> Iterator[Callable[[int, Scheme], Page]]:
    """Open a signed-in tab at a width and colour scheme; ask for it last (see test_browser.py's ``page``)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser: Browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        login = browser.new_page()
        login.set_default_timeout(15_000)
        login.goto(f"{gateway.url}/logs/")
        login.fill("#id_username", "ops")
        login.fill("#id_password", PASSWORD)
        login.click("input[type=submit]")
        login.wait_for_url(f"{gateway.url}/logs/")
        state = login.context.storage_state()
        login.close()

        def tab(width: int, scheme: Scheme) -> Page:
            opened = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme,
                                      storage_state=state)
            opened.set_default_timeout(15_000)
            return opened

        yield tab
        browser.close()


def visit(tab: Page, gateway: Gateway, name: str, width: int, scheme: Scheme) -> None:
    tab.goto(gateway.url + PAGES[name])
    assert tab.url == gateway.url + PAGES[name]  # signed in, not sent to the login page
    tab.screenshot(path=SHOTS / f"layout-{name}-{width}-{scheme}.png", full_page=True)


def page_width(tab: Page) -> tuple[int, int]:
    """The document's scroll width and the window's width: a page that scrolls sideways has the first larger."""
    return tab.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")


def luminance(css_colour: str) -> float:
    """The relative luminance (0 black, 1 white) of a computed ``rgb(...)``/``rgba(...)`` colour."""
    red, green, blue = (int(float(part)) / 255 for part in css_colour[css_colour.index("(") + 1:-1].split(",")[:3])

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)


def background(tab: Page, selector: str = "body") -> float:
    return luminance(tab.eval_on_selector(selector, "el => getComputedStyle(el).backgroundColor"))


def horizontal_extent(tab: Page, selector: str) -> list[tuple[float, float]]:
    """The left and right edges, in the viewport, of each element ``selector`` matches."""
    return tab.eval_on_selector_all(selector, "els => els.map(el => { const r = el.getBoundingClientRect(); "
                                              "return [r.left, r.right]; })")


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [1280, 420])
def test_no_page_scrolls_sideways_and_each_follows_the_colour_scheme(
        gateway: Gateway, width: int, scheme: Scheme, open_page: Callable[[int, Scheme], Page]) -> None:
    tab = open_page(width, scheme)
    for name in PAGES:
        visit(tab, gateway, name, width, scheme)
        scroll_width, inner_width = page_width(tab)
        assert scroll_width <= inner_width, f"{name} at {width} px ({scheme}) is {scroll_width} px wide"
        body = background(tab)
        assert (body < 0.05) if scheme == "dark" else (body > 0.85), f"{name} ({scheme}): body luminance {body:.3f}"
        card = background(tab, ".card")
        assert (card < 0.08) if scheme == "dark" else (card > 0.85), f"{name} ({scheme}): card luminance {card:.3f}"
        [(left, right)] = horizontal_extent(tab, ".topbar button:text('Log out')")
        assert 0 <= left and right <= inner_width, f"Log out on {name} at {width} px spans {left}-{right}"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_lists_key_columns_are_in_view_at_1280_beside_the_widest_cells(
        gateway: Gateway, scheme: Scheme, open_page: Callable[[int, Scheme], Page]) -> None:
    tab = open_page(1280, scheme)
    visit(tab, gateway, "list", 1280, scheme)
    newest = f'#log-table tbody tr[data-request-id="{LONG_ID}"]'
    assert tab.locator(f"{newest} .why").inner_text() == WIDE_ERROR  # the wide cells are on the page
    assert tab.locator(f"{newest} .badge.kind").inner_text() == "compaction"
    assert tab.locator(f"{newest} a.session").count() == 1
    headers = tab.locator("#log-table thead th").all_inner_texts()
    for column in ("Status", "Outcome", "TTFB", "Duration", "Tokens"):
        index = headers.index(column) + 1
        column_cells = f"#log-table thead th:nth-child({index}), #log-table tbody td:nth-child({index})"
        cells = horizontal_extent(tab, column_cells)
        assert len(cells) == 1 + tab.locator("#log-table tbody tr").count()
        assert all(0 <= left and right <= 1280 for left, right in cells), f"{column} spans {cells}"
    # In view means on the screen, not scrolled off inside the table's own box.
    scroll_width, client_width = tab.eval_on_selector(".table-wrap", "el => [el.scrollWidth, el.clientWidth]")
    assert scroll_width <= client_width
    assert tab.locator(f"{newest} td.num").last.inner_text() == "186.7k"  # the Tokens cell itself, not cut


@pytest.fixture
def upstream_rows(wide_rows: None) -> None:
    """Upstreams with the longest base URLs and model lists staff type, and keys: the admin lists' widest cells."""
    for n, name in enumerate(("openrouter-eu-west-fallback", "deepseek-primary-us-east", "local-vllm")):
        Upstream.objects.create(name=name, base_url=f"https://{name}.inference.example.internal:8443/api/v1",
                                models="qwen3-coder-480b-a35b-instruct-fp8-long-context, deepseek-chat, "
                                       "deepseek-reasoner, gpt-oss-120b, llama-4-maverick-17b-128e", priority=n)
    for name in ("ci-runner-eu", "alice", "bob"):
        ClientKey.objects.create_key(name)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_admin_lists_show_their_key_columns_at_1280(
        gateway: Gateway, scheme: Scheme, upstream_rows: None, open_page: Callable[[int, Scheme], Page]) -> None:
    tab = open_page(1280, scheme)
    for path, columns in (("/admin/upstreams/upstream/", ("health", "last_error", "base_url", "models")),
                          ("/admin/upstreams/clientkey/", ("requests_day", "tokens_day", "last_used"))):
        tab.goto(gateway.url + path)
        tab.screenshot(path=SHOTS / f"layout-admin-{path.split('/')[-2]}-1280-{scheme}.png", full_page=True)
        scroll_width, inner_width = page_width(tab)
        assert scroll_width <= inner_width, f"{path} is {scroll_width} px wide"
        for column in columns:
            cells = horizontal_extent(tab, f"th.column-{column}, td.field-{column}")
            assert len(cells) > 1 and all(0 <= left and right <= 1280 for left, right in cells), (column, cells)
