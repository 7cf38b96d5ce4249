"""The admin: upstream keys are write-only, client keys are shown once, the audit log is read-only;
the connection test and the per-key request counts."""
from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils.timezone import now

from logs.models import RequestLog
from tests.servers import MockUpstream
from upstreams.models import ClientKey, Team, Upstream

pytestmark = pytest.mark.django_db

UPSTREAM_FORM = {"name": "ds", "base_url": "http://127.0.0.1:9/v1", "api": "chat", "models": "deepseek-*",
                 "model_map": "",
                 "priority": "0", "weight": "1", "enabled": "on", "connect_timeout": "10", "first_byte_timeout": "900",
                 "read_timeout": "300", "max_tokens_field": "max_tokens", "send_stream_options": "on"}


@pytest.fixture
def staff(admin_client: Client) -> Client:
    return admin_client


def test_upstream_key_is_never_rendered_and_kept_when_left_blank(staff: Client) -> None:
    response = staff.post("/admin/upstreams/upstream/add/", {**UPSTREAM_FORM, "api_key": "sk-live-TOPSECRET-1"})
    assert response.status_code == 302
    upstream = Upstream.objects.get(name="ds")
    assert upstream.api_key == "sk-live-TOPSECRET-1"
    for page in ("/admin/upstreams/upstream/", f"/admin/upstreams/upstream/{upstream.pk}/change/"):
        html = staff.get(page).content.decode()
        assert "TOPSECRET" not in html
    staff.post(f"/admin/upstreams/upstream/{upstream.pk}/change/", {**UPSTREAM_FORM, "priority": "3", "api_key": ""})
    upstream.refresh_from_db()
    assert (upstream.priority, upstream.api_key) == (3, "sk-live-TOPSECRET-1")
    staff.post(f"/admin/upstreams/upstream/{upstream.pk}/change/", {**UPSTREAM_FORM, "clear_api_key": "on"})
    upstream.refresh_from_db()
    assert upstream.api_key == ""


def test_new_client_key_is_shown_once_and_stored_hashed(staff: Client) -> None:
    """Everything the form says is kept with the new key: its scope, team and budget too."""
    team = Team.objects.create(name="platform")
    response = staff.post("/admin/upstreams/clientkey/add/", {
        "name": "bob", "active": "on", "rate_limit": "", "models": "qwen3-*",
        "expires_0": "2027-01-31", "expires_1": "00:00:00",
        "team": str(team.pk), "token_budget": "5000", "usd_budget": "2.50", "budget_period": "week"}, follow=True)
    [secret] = re.findall(r"sk-cgw-[A-Za-z0-9_-]{40,}", response.content.decode())
    key = ClientKey.objects.get(name="bob")
    assert ClientKey.objects.for_secret(secret) == key
    assert (key.models, key.expires.isoformat(), key.team, key.token_budget, key.usd_budget, key.budget_period) == (
        "qwen3-*", "2027-01-31T00:00:00+00:00", team, 5000, Decimal("2.50"), "week")
    again = staff.get(f"/admin/upstreams/clientkey/{key.pk}/change/").content.decode()
    assert secret not in again


def test_the_admins_request_log_leads_to_the_request_log_pages(staff: Client) -> None:
    """One request log: the admin lists the entry, and its list and rows open /logs/ (no second viewer)."""
    row = RequestLog.objects.create(request_id="req_1/with-slash", endpoint="responses", outcome="ok", model="m")
    index = staff.get("/admin/").content.decode()
    assert 'href="/admin/logs/requestlog/"' in index and "Request logs" in index
    listing = staff.get("/admin/logs/requestlog/?outcome__exact=ok&q=req_1")
    assert (listing.status_code, listing["Location"]) == (302, "/logs/")
    page = staff.get(f"/admin/logs/requestlog/{row.pk}/change/")
    assert (page.status_code, page["Location"]) == (302, "/logs/req_1/with-slash/")
    assert staff.get(page["Location"]).status_code == 200
    assert staff.get("/admin/logs/requestlog/999999/change/").status_code == 404
    assert staff.get("/admin/logs/requestlog/add/").status_code == 403


def test_the_admins_request_log_is_still_for_staff_only(client: Client) -> None:
    row = RequestLog.objects.create(request_id="req_2", endpoint="responses", outcome="ok")
    for path in ("/admin/logs/requestlog/", f"/admin/logs/requestlog/{row.pk}/change/"):
        answer = client.get(path)
        assert answer.status_code == 302 and answer["Location"].startswith("/admin/login/"), path


def run_test_connection(staff: Client, upstream: Upstream) -> list[tuple[str, str]]:
    """Run the Upstream list's "test connection" action; return the (level, text) messages shown."""
    page = staff.post("/admin/upstreams/upstream/", {"action": "test_connection", "_selected_action": [upstream.pk]},
                      follow=True)
    return [(m.level_tag, m.message) for m in page.context["messages"]]


@pytest.mark.django_db(transaction=True)
def test_test_connection_gives_the_latency_then_lists_the_models_once(staff: Client, chat_upstream: Upstream) -> None:
    (level, text), *capabilities = run_test_connection(staff, chat_upstream)
    assert level == "success"
    assert re.fullmatch(r"Upstream chat-mock: reachable in \d+ ms\.", text)
    said = [t for _, t in capabilities]
    assert any(t.startswith("Upstream chat-mock: chat stream:") for t in said)  # then what it can do
    # The models are listed once, with their context windows.
    assert [t for t in [text, *said] if "mock-model" in t] == ["Upstream chat-mock: models: 1 listed: mock-model "
                                                               "(32768 tokens)"]


@pytest.mark.django_db(transaction=True)
def test_test_connection_falls_back_to_a_one_token_request(staff: Client, chat_upstream: Upstream,
                                                           scripted: MockUpstream) -> None:
    scripted.script({"chunks": [{"text": "p"}, {"finish": "length"}]}, models=False)
    Upstream.objects.filter(pk=chat_upstream.pk).update(models="mock-model")
    (level, text), *_ = run_test_connection(staff, chat_upstream)
    assert level == "success"
    assert re.fullmatch(r"Upstream chat-mock: reachable in \d+ ms: GET /models: HTTP 404 .*; "
                        r"a 1-token chat request to mock-model answered\.", text)
    sent = scripted.requests()[0]
    assert sent["body"]["max_tokens"] == 1 and sent["body"]["stream"] is False
    assert sent["headers"]["authorization"] == "Bearer sk-upstream-SECRET-123"


def test_test_connection_asks_an_anthropic_upstream_in_messages_with_its_key_as_x_api_key(
        staff: Client, scripted: MockUpstream, transactional_db: None) -> None:
    claude = Upstream.objects.create(name="claude", base_url=scripted.url, api="anthropic", models="claude-x",
                                     api_key="sk-ant-SECRET")
    scripted.script({"chunks": [{"text": "p"}, {"finish": "length"}]}, models=False)
    (level, text), *_ = run_test_connection(staff, claude)
    assert level == "success" and text.endswith("a 1-token chat request to claude-x answered.")
    asked = scripted.requests()[0]  # GET /models is not recorded: the first is the 1-token request
    assert asked["path"] == "/v1/messages" and asked["body"]["max_tokens"] == 1
    assert asked["headers"]["x-api-key"] == "sk-ant-SECRET" and "authorization" not in asked["headers"]


@pytest.mark.django_db(transaction=True)
def test_test_connection_reports_a_failure_without_the_key(staff: Client, chat_upstream: Upstream,
                                                           scripted: MockUpstream) -> None:
    scripted.script({"status": 401, "body": {"error": {"message": "bad key sk-upstream-SECRET-123"}}}, models=False)
    Upstream.objects.filter(pk=chat_upstream.pk).update(models="mock-model")
    [(level, text)] = run_test_connection(staff, chat_upstream)
    assert level == "error" and text.startswith("Upstream chat-mock: failed: GET /models: HTTP 404")
    assert "1-token chat request to mock-model: HTTP 401" in text
    assert "SECRET" not in text and "[redacted]" in text


@pytest.mark.django_db(transaction=True)
def test_test_connection_reports_an_unreachable_upstream(staff: Client) -> None:
    down = Upstream.objects.create(name="down", base_url="http://127.0.0.1:9/v1", models="m", connect_timeout=2)
    [(level, text)] = run_test_connection(staff, down)
    assert level == "error" and "ConnectError" in text


def test_client_keys_list_their_request_counts(staff: Client) -> None:
    alice, _ = ClientKey.objects.create_key("alice")
    ClientKey.objects.create_key("idle")
    for n, days in enumerate((0, 0, 3)):
        RequestLog.objects.create(request_id=f"req_{n}", endpoint="responses", outcome="ok", client_key=alice,
                                  key_name="alice", started=now() - timedelta(days=days, minutes=1))
    html = staff.get("/admin/upstreams/clientkey/").content.decode()
    assert '<a href="/logs/?key=alice&amp;since=24h">2</a>' in html
    assert '<a href="/logs/?key=alice">3</a>' in html
    assert '<a href="/logs/?key=idle">0</a>' in html


def test_a_new_upstreams_key_field_says_what_it_is_not_what_it_keeps(admin_client: Client) -> None:
    page = admin_client.get("/admin/upstreams/upstream/add/").content.decode()
    assert "Leave empty to keep the current key" not in page and "leave empty for a server that needs none" in page
    assert 'type="hidden" name="clear_api_key"' in page  # nothing stored yet to remove


def test_the_lists_put_what_staff_scan_for_first(admin_client: Client, db: None) -> None:
    """At 1280 px the right-hand columns were off-screen: enabled, health, cool-down, spend and counts come first."""
    Upstream.objects.create(name="up", base_url="http://127.0.0.1:9/v1", models="a b c")
    ClientKey.objects.create_key("alice")

    def columns(path: str) -> list[str]:
        return list(dict.fromkeys(re.findall(r"column-([a-z_]+)", admin_client.get(path).content.decode())))

    assert columns("/admin/upstreams/upstream/")[:5] == ["name", "enabled", "health", "last_error", "mode"]
    assert columns("/admin/upstreams/clientkey/")[:5] == ["name", "active", "spend_period", "requests_day",
                                                          "tokens_day"]


def test_a_preset_fills_in_a_new_upstream_for_its_server(staff: Client, db: None) -> None:
    vllm = {**UPSTREAM_FORM, "name": "vllm", "base_url": "", "models": "", "send_stream_options": "",
            "preset": "vllm"}
    assert staff.post("/admin/upstreams/upstream/add/", vllm).status_code == 302
    saved = Upstream.objects.get(name="vllm")
    assert (saved.base_url, saved.api, saved.send_stream_options) == (
        "http://127.0.0.1:8001/v1", "chat", True)
    openai_form = {**UPSTREAM_FORM, "name": "openai", "base_url": "https://proxy.example/v1", "preset": "openai"}
    assert staff.post("/admin/upstreams/upstream/add/", openai_form).status_code == 302
    openai = Upstream.objects.get(name="openai")
    assert openai.base_url == "https://proxy.example/v1"  # a base URL given is kept
    assert (openai.api, openai.max_tokens_field, openai.accepts_developer_role) == (
        "responses", "max_completion_tokens", True)
    neither = staff.post("/admin/upstreams/upstream/add/", {**UPSTREAM_FORM, "name": "none", "base_url": ""})
    assert neither.status_code == 200 and "or choose a preset" in neither.content.decode()
    assert 'name="preset"' not in staff.get(f"/admin/upstreams/upstream/{saved.pk}/change/").content.decode()


def test_the_key_and_team_lists_show_what_each_spent_this_period(admin_client: Client, db: None) -> None:
    """Each key's own period: a daily key counts today's rows only, a total key every row; its team sums its keys."""
    team = Team.objects.create(name="agents", usd_budget=Decimal(5), budget_period="month")
    daily, _ = ClientKey.objects.create_key("daily", token_budget=1000, budget_period="day", team=team)
    forever, _ = ClientKey.objects.create_key("forever", budget_period="total", team=team)
    long_ago = now() - timedelta(days=40)
    for key, started in ((daily, now()), (daily, long_ago), (forever, now()), (forever, long_ago)):
        RequestLog.objects.create(request_id=f"req_{key.name}_{started:%s}", endpoint="responses", outcome="ok",
                                  client_key=key, team=team, started=started, input_tokens=100, output_tokens=50,
                                  cost=Decimal("0.25"))
    keys = admin_client.get("/admin/upstreams/clientkey/").content.decode()
    assert "150 / 1,000 tokens · $0.25" in keys  # today's row only
    assert "300 tokens · $0.50" in keys  # both rows, no limit set
    teams = admin_client.get("/admin/upstreams/team/").content.decode()
    assert "300 tokens · $0.50 / $5.00" in teams, re.findall(r"tokens[^<]*", teams)  # this month: two rows
    assert "/logs/usage/teams/agents/" in teams
