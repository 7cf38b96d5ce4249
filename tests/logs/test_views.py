"""The request log pages: staff only, filters as bookmarkable parameters, pages, CSV, one request's detail."""
from __future__ import annotations

import csv
import html
import io
import re
import subprocess
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.utils.timezone import now

from logs.models import RequestLog
from logs.pages.filters import LogFilter

pytestmark = pytest.mark.django_db

PAGES = ["/logs/", "/logs/stats/", "/logs/export.csv", "/logs/req_known/"]


def log(request_id: str, minutes_ago: float = 1, **fields: Any) -> RequestLog:
    """Write an audit row the way the gateway would, ``minutes_ago`` minutes back."""
    defaults: dict[str, Any] = {"endpoint": "responses", "model": "qwen3-coder", "upstream_name": "llama",
                                "upstream_model": "qwen3-coder", "mode": "bridge", "status": 200,
                                "outcome": "ok", "key_name": "alice", "ttfb_ms": 120.0, "duration_ms": 900.0,
                                "input_tokens": 10, "output_tokens": 5}
    return RequestLog.objects.create(request_id=request_id, started=now() - timedelta(minutes=minutes_ago),
                                     **(defaults | fields))


@pytest.fixture
def staff(admin_client: Client) -> Client:
    return admin_client


@pytest.fixture
def visitor() -> Client:
    """Bob: signed in, but not staff."""
    user = get_user_model().objects.create_user("bob", password="pw-not-staff")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def traffic() -> list[RequestLog]:
    """A mixed hour and one older row: what the filter cases below pick from."""
    return [
        log("req_ok_alice", 1),
        log("req_timeout", 2, outcome="upstream_error", status=504, upstream_status=None, error_type="upstream_timeout",
            error_message="The upstream did not answer in time (ReadTimeout).", key_name="bob", ttfb_ms=None),
        log("req_429", 3, outcome="upstream_error", status=429, upstream_status=429, error_type="rate_limit_exceeded",
            error_message="Rate limit reached, try again in 3s", upstream_name="deepseek", model="deepseek-chat",
            upstream_model="deepseek-chat", passed_headers={"retry-after": "3"}),
        log("req_unknown_model", 4, outcome="rejected", status=404, upstream_name="", upstream_model="", mode="",
            model="gpt-9", error_type="model_not_found", error_message="The model 'gpt-9' is not served"),
        log("req_alias", 5, model="coder", upstream_model="qwen3-coder-30b", key_name="bob", session_id="thread-a",
            request_kind="turn"),
        log("req_gone", 6, outcome="client_disconnected", status=200, session_id="thread-a", request_kind="compaction",
            notes="compaction: 9000 characters of history summarized in 1 upstream call(s)"),
        log("req_yesterday", 60 * 20, outcome="gateway_error", status=500, error_type="internal"),
    ]


def ids(html: str, rows: list[RequestLog]) -> set[str]:
    return {row.request_id for row in rows if f'data-request-id="{row.request_id}"' in html}


@pytest.mark.parametrize("page", PAGES)
def test_anonymous_visitors_are_sent_to_the_admin_login(client: Client, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 302
    assert response["location"] == f"/admin/login/?next={page}"


def test_the_login_redirect_keeps_the_filters(client: Client) -> None:
    response = client.get("/logs/?outcome=failed&since=1h")
    assert response["location"] == "/admin/login/?next=/logs/%3Foutcome%3Dfailed%26since%3D1h"


@pytest.mark.parametrize("page", PAGES)
def test_signed_in_users_who_are_not_staff_get_403(visitor: Client, page: str) -> None:
    log("req_known")
    assert visitor.get(page).status_code == 403


FILTERS = [
    pytest.param("outcome=upstream_error", {"req_timeout", "req_429"}, id="outcome"),
    pytest.param("outcome=failed", {"req_timeout", "req_429", "req_unknown_model", "req_gone", "req_yesterday"},
                 id="outcome-any-failure"),
    pytest.param("status=429", {"req_429"}, id="status"),
    pytest.param("status=5xx", {"req_timeout", "req_yesterday"}, id="status-class"),
    pytest.param("upstream=deepseek", {"req_429"}, id="upstream"),
    pytest.param("model=qwen3-coder-30b", {"req_alias"}, id="model-as-sent-upstream"),
    pytest.param("model=gpt-9", {"req_unknown_model"}, id="model"),
    pytest.param("key=bob", {"req_timeout", "req_alias"}, id="key"),
    pytest.param("since=1h", {"req_ok_alice", "req_timeout", "req_429", "req_unknown_model", "req_alias", "req_gone"},
                 id="since-relative"),
    pytest.param("until=1h", {"req_yesterday"}, id="until-relative"),
    pytest.param("since=2h&until=150s", {"req_429", "req_unknown_model", "req_alias", "req_gone"}, id="since-until"),
    pytest.param("q=TIMEOUT", {"req_timeout"}, id="q-error-type"),
    pytest.param("q=try again", {"req_429"}, id="q-error-text"),
    pytest.param("q=req_alia", {"req_alias"}, id="q-request-id"),
    pytest.param("q=deepseek-c", {"req_429"}, id="q-model"),
    pytest.param("outcome=failed&key=bob&since=1h", {"req_timeout"}, id="combined"),
    pytest.param("session=thread-a", {"req_alias", "req_gone"}, id="session"),
    pytest.param("kind=compaction", {"req_gone"}, id="kind"),
]


@pytest.mark.parametrize(("query", "expected"), FILTERS)
def test_each_filter_narrows_the_list(staff: Client, traffic: list[RequestLog], query: str,
                                      expected: set[str]) -> None:
    response = staff.get(f"/logs/?{query}")
    assert response.status_code == 200
    assert ids(response.content.decode(), traffic) == expected


@pytest.mark.parametrize(("query", "expected"), FILTERS)
def test_the_live_tail_matches_the_rows_the_list_shows(traffic: list[RequestLog], query: str,
                                                       expected: set[str]) -> None:
    filters = LogFilter.from_query(dict(pair.split("=") for pair in query.split("&")))
    assert {row.request_id for row in traffic if filters.matches(row.to_dict())} == expected


def test_a_sessions_page_shows_its_requests_in_order_with_its_compactions(staff: Client,
                                                                           traffic: list[RequestLog]) -> None:
    page = staff.get("/logs/sessions/thread-a/").content.decode()
    assert page.index("req_gone") < page.index("req_alias")  # oldest first: req_gone is 6 minutes old
    assert '<dd id="session-compactions">1</dd>' in page and '<dd id="session-turns">1</dd>' in page
    assert "summarized in 1 upstream call(s)" in page
    assert staff.get("/logs/sessions/no-such-thread/").status_code == 404
    listed = staff.get("/logs/?session=thread-a").content.decode()
    assert 'href="/logs/sessions/thread-a/"' in listed


def test_an_absolute_since_is_read_as_utc(staff: Client, traffic: list[RequestLog]) -> None:
    start = (now() - timedelta(minutes=2, seconds=30)).strftime("%Y-%m-%d %H:%M:%S")
    assert ids(staff.get("/logs/", {"since": start}).content.decode(), traffic) == {"req_ok_alice", "req_timeout"}


def test_filter_values_that_make_no_sense_are_reported_and_ignored(staff: Client, traffic: list[RequestLog]) -> None:
    html = staff.get("/logs/?status=abc&since=yesterday-ish&outcome=nope").content.decode()
    assert "is not a status like 502 or 5xx" in html and "is not a time" in html and "unknown outcome" in html
    assert ids(html, traffic) == {row.request_id for row in traffic}


def test_the_list_is_newest_first_in_pages_that_keep_the_filters(staff: Client) -> None:
    for n in range(120):
        log(f"req_{n:03}", minutes_ago=n, key_name="pager")
    first = staff.get("/logs/?key=pager").content.decode()
    assert first.index("req_000") < first.index("req_001") < first.index("req_049")
    assert "req_050" not in first and "Page 1 of 3" in first
    assert 'href="?key=pager&amp;page=2"' in first
    last = staff.get("/logs/?key=pager&page=3").content.decode()
    assert "req_100" in last and "req_119" in last and "req_099" not in last
    assert 'id="live-toggle"' not in last  # live rows go on top of the first page only


@pytest.fixture
def moves(traffic: list[RequestLog]) -> list[RequestLog]:
    """The mixed hour, a request that failed over from deepseek, and a bad key."""
    tried = [{"upstream": "deepseek", "at": "127.0.0.1:9", "code": "upstream_unavailable", "status": 502, "ms": 1.0}]
    return [*traffic,
            log("req_moved", 7, attempts=tried, failed_over=",deepseek,", input_tokens=None, output_tokens=None),
            log("req_bad_key", 8, key_name="", presented_key="sk-wrong-abc", upstream_name="", upstream_model="",
                mode="", outcome="rejected", status=401, error_type="invalid_api_key")]


MOVES = [
    pytest.param("failover=1", {"req_moved"}, id="failover"),
    pytest.param("upstream=deepseek", {"req_429", "req_moved"}, id="upstream-reached"),
    pytest.param("upstream=deepseek&outcome=upstream_error", {"req_429", "req_moved"}, id="failed-there"),
    pytest.param("upstream=deepseek&outcome=ok", set(), id="ok-there"),
    pytest.param("upstream=deepseek&outcome=upstream_error&error=rate_limit_exceeded", {"req_429"},
                 id="its-own-error-only"),
    pytest.param("fault=upstream", {"req_timeout", "req_429"}, id="fault-upstream"),
    pytest.param("fault=refused", {"req_unknown_model", "req_bad_key"}, id="fault-refused"),
    pytest.param("fault=disconnected", {"req_gone"}, id="fault-disconnected"),
    pytest.param("key=-", {"req_bad_key"}, id="no-key"),
    pytest.param("upstream=-", {"req_unknown_model", "req_bad_key"}, id="no-upstream"),
    pytest.param("reached=1&since=1h", {"req_ok_alice", "req_timeout", "req_429", "req_alias", "req_gone",
                                        "req_moved"}, id="reached"),
    pytest.param("tokens=none", {"req_moved"}, id="tokens-not-reported"),
    pytest.param("error=-&outcome=failed", {"req_gone"}, id="failed-without-error-code"),
]


@pytest.mark.parametrize(("query", "expected"), MOVES)
def test_failover_fault_and_none_filters_list_and_tail_the_same_rows(staff: Client, moves: list[RequestLog],
                                                                     query: str, expected: set[str]) -> None:
    assert ids(staff.get(f"/logs/?{query}").content.decode(), moves) == expected
    filters = LogFilter.from_query(dict(pair.split("=") for pair in query.split("&")))
    assert {row.request_id for row in moves if filters.matches(row.to_dict())} == expected


def test_a_failed_over_row_is_marked_and_a_bad_key_shows_its_start(staff: Client, moves: list[RequestLog]) -> None:
    page = " ".join(staff.get("/logs/").content.decode().split())
    assert 'title="failed over from deepseek to llama">failover</span>' in page
    assert "sk-wrong-abc…" in page
    detail = " ".join(staff.get("/logs/req_moved/").content.decode().split())
    assert "failed over from <b>deepseek</b> (upstream_unavailable, 502) to <b>llama</b>, which answered" in detail
    assert 'id="tokens-not-reported">not reported' in detail


def test_a_500_from_the_only_upstream_reads_as_one_story(staff: Client) -> None:
    tried = [{"upstream": "llama", "at": "127.0.0.1:9", "code": "upstream_error", "status": 500, "ms": 3.0}]
    log("req_500", 1, outcome="upstream_error", status=500, upstream_status=500, attempts=tried,
        error_type="upstream_error", connected_ms=2.0, ttfb_ms=3.0)
    detail = " ".join(staff.get("/logs/req_500/").content.decode().split())
    assert "llama answered with an error, 500; no other upstream took the request." in detail
    assert "No upstream answered" not in detail and "failed over" not in detail


def test_a_connection_that_never_opened_is_not_drawn_as_waiting_for_the_first_byte(staff: Client) -> None:
    tried = [{"upstream": "llama", "at": "127.0.0.1:9", "code": "upstream_unavailable", "status": 502, "ms": 1.0}]
    log("req_refused_conn", 1, outcome="upstream_error", status=502, upstream_status=None, attempts=tried,
        error_type="upstream_unavailable", connected_ms=None, ttfb_ms=1.5, duration_ms=1.6)
    detail = " ".join(staff.get("/logs/req_refused_conn/").content.decode().split())
    timeline = detail[detail.index("<svg"):detail.index("</svg>")]
    assert "no upstream answered" in timeline and "until the first byte: " not in timeline
    assert "llama could not be reached; no other upstream took the request." in detail


def test_the_list_costs_the_same_few_queries_for_any_number_of_rows(
        staff: Client, traffic: list[RequestLog], django_assert_max_num_queries: Any) -> None:
    for n in range(40):
        log(f"req_more_{n}", minutes_ago=n)
    with django_assert_max_num_queries(12):
        assert staff.get("/logs/").status_code == 200


def test_the_summary_answers_what_failed_in_the_last_hour(staff: Client, traffic: list[RequestLog]) -> None:
    html = staff.get("/logs/").content.decode()
    summary = html[html.index('id="summary"'):html.index("</table>", html.index('id="summary"'))]
    hour, day = summary.split('data-window="hour"')[1].split('data-window="day"')
    # The upstreams' failures, of the requests that reached one: the timeout and the 429 of 5;
    # the unknown model (refused), the client that left and the gateway's own error counted apart.
    assert re.search(r'data-figure="upstream_failed"><a [^>]*>2</a> \(40\.0%\)', hour)
    assert re.search(r'data-figure="upstream_failed"><a [^>]*>2</a> \(33\.3%\)', day)
    assert '<td data-figure="refused">1</td>' in hour and '<td data-figure="disconnected">1</td>' in hour
    assert "upstream_timeout" in html  # why, right in the row


def read_csv(response: Any) -> list[dict[str, str]]:
    async def collect() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return list(csv.DictReader(io.StringIO(async_to_sync(collect)().decode())))


def test_csv_export_has_every_filtered_row_not_just_one_page(staff: Client) -> None:
    for n in range(60):
        log(f"req_{n:03}", minutes_ago=n, outcome="upstream_error" if n % 2 else "ok")
    response = staff.get("/logs/export.csv?outcome=upstream_error")
    assert response["content-type"] == "text/csv; charset=utf-8"
    assert response["content-disposition"].startswith('attachment; filename="request-log-')
    rows = read_csv(response)
    assert [row["request_id"] for row in rows] == [f"req_{n:03}" for n in range(1, 60, 2)]
    assert rows[0]["outcome"] == "upstream_error" and rows[0]["ttfb_ms"] == "120.0"


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted(staff: Client) -> None:
    # A client picks its own x-request-id and upstreams write the error text: neither may run as a formula.
    log("=HYPERLINK(\"http://evil.example\")", error_message="+cmd|' /C calc'!A0")
    [row] = read_csv(staff.get("/logs/export.csv"))
    assert row["request_id"].startswith("'=") and row["error_message"].startswith("'+")


def test_the_detail_page_shows_every_field_the_error_and_the_upstream_answer(staff: Client) -> None:
    log("req_detail", outcome="upstream_error", status=429, upstream_status=429, error_type="rate_limit_exceeded",
        error_message="Rate limit reached, try again in 3s", passed_headers={"retry-after": "3",
                                                                              "x-ratelimit-remaining": "0"},
        connected_ms=40.0, ttfb_ms=55.0, duration_ms=60.0, client_ip="10.1.2.3", reasoning_tokens=7,
        cached_tokens=3, tool_calls=2, request_bytes=2048, response_bytes=180, stream=True)
    html = staff.get("/logs/req_detail/").content.decode()
    for text in ("rate_limit_exceeded", "Rate limit reached, try again in 3s", "retry-after", "x-ratelimit-remaining",
                 "10.1.2.3", "/v1/responses", "qwen3-coder", "llama", "bridge", "2.0\xa0KB", "180\xa0bytes"):
        assert text in html, text
    assert "HTTP 429" in html and 'class="status warn">429<' in html  # the answer and the upstream's
    for mark in ("Received", "Upstream answered</b> +40 ms", "First byte</b> +55 ms", "Finished</b> +60 ms"):
        assert mark in html, mark
    assert "<svg" in html and "waiting for the upstream" in html
    assert "Body capture is off" in html


def test_the_detail_page_shows_redacted_bodies_when_they_were_captured(staff: Client) -> None:
    log("req_bodies", request_body='{"model": "m", "input": "hi"}', response_body="data: [DONE]")
    with override_settings(GATEWAY_LOG_BODIES=True):
        html = staff.get("/logs/req_bodies/").content.decode()
    assert "&quot;input&quot;: &quot;hi&quot;" in html and "data: [DONE]" in html
    assert "Body capture is off" not in html


def test_a_request_id_with_a_slash_has_a_detail_page(staff: Client) -> None:
    row = log("client/chosen id")
    assert row.get_absolute_url() == "/logs/client/chosen%20id/"
    assert staff.get(row.get_absolute_url()).status_code == 200


def test_an_unknown_request_id_is_404(staff: Client) -> None:
    assert staff.get("/logs/req_nothing/").status_code == 404


def copied_curl(page: str) -> str:
    start = page.index('<pre class="body curl" id="curl">') + len('<pre class="body curl" id="curl">')
    return html.unescape(page[start:page.index("</pre>", start)])


@pytest.mark.processes
def test_the_detail_page_offers_the_request_as_curl_without_its_key(staff: Client) -> None:
    body = '{"model": "qwen3-coder", "input": "it\'s here", "stream": true}'
    log("req_curl", request_body=body, stream=True)
    command = copied_curl(staff.get("/logs/req_curl/").content.decode())
    assert command.startswith("curl -sN http://testserver/v1/responses ") and "$CODEX_GATEWAY_KEY" in command
    # The shell hands the body back exactly (quotes and all), with a request id of its own.
    echoed = subprocess.run(["bash", "-c", command.replace("curl -sN", "printf '%s\\n'", 1)],
                            capture_output=True, text=True, check=True, env={"CODEX_GATEWAY_KEY": "K"}).stdout
    assert echoed.splitlines()[-1] == body and "x-request-id: req_curl-again" in echoed


def test_a_request_without_its_body_gets_a_minimal_one_said_so(staff: Client) -> None:
    log("req_nobody", endpoint="chat/completions", model="deepseek-chat")
    page = staff.get("/logs/req_nobody/").content.decode()
    assert '"model": "deepseek-chat"' in copied_curl(page) and "was not kept whole" in page
    log("req_get", endpoint="responses/{id}")
    assert 'id="curl"' not in staff.get("/logs/req_get/").content.decode()  # its id is not on the row
