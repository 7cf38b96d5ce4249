"""Usage per key and upstream health where staff look: the key page, the admin lists, the overview's JSON."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils.timezone import now

from logs.models import RequestLog
from tests.servers import MockUpstream
from upstreams.models import ClientKey, Upstream

pytestmark = pytest.mark.django_db


def log(request_id: str, minutes_ago: float, **fields: Any) -> RequestLog:
    defaults: dict[str, Any] = {"endpoint": "responses", "model": "qwen3-coder", "upstream_name": "llama",
                                "status": 200, "outcome": "ok", "key_name": "alice", "input_tokens": 100,
                                "output_tokens": 10}
    return RequestLog.objects.create(request_id=request_id, started=now() - timedelta(minutes=minutes_ago),
                                     **(defaults | fields))


@pytest.fixture
def month(db: None) -> None:
    """Alice over a month: an hour ago, a day ago, a week ago; two models; one upstream failure; bob once."""
    ClientKey.objects.create_key("alice")
    log("req_now", 5)
    log("req_now_other_model", 6, model="deepseek-chat", input_tokens=1000, output_tokens=50)
    log("req_now_failed", 7, outcome="upstream_error", status=502, input_tokens=None, output_tokens=None,
        error_type="upstream_unavailable")
    log("req_hours_ago", 60 * 5)
    log("req_days_ago", 60 * 24 * 3)
    log("req_weeks_ago", 60 * 24 * 20)
    log("req_bob", 5, key_name="bob")


def figures(html: str) -> list[list[str]]:
    """The key page's first table, row by row: the label, then the numbers."""
    table = html[html.index('class="grid key-windows"'):]
    table = table[:table.index("</table>")]
    return [re.findall(r">([^<>]+)<", row.replace("\n", "")) for row in table.split("<tr>")[2:]]


def test_a_keys_page_has_its_use_over_each_window_and_per_model(admin_client: Client, month: None) -> None:
    response = admin_client.get("/logs/keys/alice/?window=day")
    assert response.status_code == 200
    html = response.content.decode()
    rows = [[cell.strip() for cell in row if cell.strip()] for row in figures(html)]
    # requests, upstream failures, refused, all failures, input, output, reasoning, not reported
    assert rows == [["Last hour", "3", "1", "0", "1", "1.1k", "60", "0", "0"],
                    ["Last 24 hours", "4", "1", "0", "1", "1.2k", "70", "0", "0"],
                    ["Last 7 days", "5", "1", "0", "1", "1.3k", "80", "0", "0"],
                    ["Last 30 days", "6", "1", "0", "1", "1.4k", "90", "0", "0"]]
    per_model = html[html.index("Per model"):]
    assert per_model.index("deepseek-chat") < per_model.index("qwen3-coder")  # most tokens first
    assert html.count('<svg class="chart traffic') == 1 and "tokens per bar" in html.lower()


def test_an_unknown_key_with_no_requests_is_404(admin_client: Client, db: None) -> None:
    assert admin_client.get("/logs/keys/nobody/").status_code == 404


def test_the_overview_json_is_for_staff_and_has_every_window(admin_client: Client, client: Client,
                                                             month: None) -> None:
    assert client.get("/logs/stats/?format=json").status_code == 302  # anonymous: to the login
    user = get_user_model().objects.create_user("bob", password="pw")
    client.force_login(user)
    assert client.get("/logs/stats/?format=json").status_code == 403
    for window, requests in (("hour", 4), ("day", 5), ("week", 6), ("month", 7)):
        data = admin_client.get(f"/logs/stats/?window={window}&format=json").json()
        assert data["window"]["name"] == window and data["totals"]["requests"] == requests
        assert {k["name"] for k in data["keys"]} == {"alice", "bob"}
        assert data["keys"][0]["page"] == "/logs/keys/alice/"


def test_the_admin_key_list_shows_recent_tokens(admin_client: Client, month: None) -> None:
    page = " ".join(admin_client.get("/admin/upstreams/clientkey/").content.decode().split())
    key = ClientKey.objects.get(name="alice")
    RequestLog.objects.filter(key_name="alice").update(client_key=key)
    page = " ".join(admin_client.get("/admin/upstreams/clientkey/").content.decode().split())
    assert '<a href="/logs/keys/alice/">1,200 in · 70 out</a>' in page  # the last 24 hours


def test_the_admin_upstream_list_shows_health_and_the_last_error(admin_client: Client, db: None) -> None:
    Upstream.objects.create(name="llama", base_url="http://127.0.0.1:9/v1")
    Upstream.objects.create(name="quiet", base_url="http://127.0.0.1:10/v1")
    for n in range(3):
        log(f"req_ok_{n}", 10 + n)
    log("req_broke", 2, outcome="upstream_error", status=502, error_type="upstream_unavailable")
    tried = [{"upstream": "llama", "at": "127.0.0.1:9", "code": "upstream_timeout", "status": 504, "ms": 1.0}]
    log("req_moved_away", 1, upstream_name="other", attempts=tried, failed_over=",llama,")
    page = " ".join(admin_client.get("/admin/upstreams/upstream/").content.decode().split())
    rows = {found[1]: row for row in page.split("<tr")[1:] if (found := re.search(r">(llama|quiet)</a>", row))}
    llama, quiet = rows["llama"], rows["quiet"]
    assert "5 requests</a>" in llama and "40.0% failed</a>" in llama  # 2 of 5, the failover's try included
    assert "<code>upstream_timeout</code>" in llama and 'href="/logs/req_moved_away/"' in llama
    # No request, no cool-down, no error:
    assert '<td class="field-health">—</td>' in quiet and '<td class="field-last_error">—</td>' in quiet
    assert "column-base_url" in page and "column-models" in page


def test_test_connection_runs_from_the_upstreams_own_page(admin_client: Client, scripted: MockUpstream) -> None:
    upstream = Upstream.objects.create(name="mocked", base_url=scripted.base_url)
    page = admin_client.get(f"/admin/upstreams/upstream/{upstream.pk}/change/").content.decode()
    assert 'id="test-connection"' in page and f"/admin/upstreams/upstream/{upstream.pk}/test/" in page
    assert admin_client.get(f"/admin/upstreams/upstream/{upstream.pk}/test/").status_code == 403  # POST only
    answer = admin_client.post(f"/admin/upstreams/upstream/{upstream.pk}/test/", follow=True)
    assert answer.redirect_chain[-1][0] == f"/admin/upstreams/upstream/{upstream.pk}/change/"
    said = [str(m) for m in answer.context["messages"]]
    assert any("Upstream mocked" in m and "tool calls" in m for m in said), said
