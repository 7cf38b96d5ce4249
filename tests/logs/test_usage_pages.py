"""Spending where staff look: the usage page, a key's and a team's pages, the usage CSV, ``manage.py usage``.

The clock is fixed mid-month (NOW): the windows, the budgets' periods and the command's
default ``--since`` are then the same on every run.
"""
from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from logs.models import RequestLog
from upstreams.models import ClientKey, Team, usd

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
PERIOD = "2025-06-01 – 2025-07-01 UTC"


def log(request_id: str, ago: timedelta, key: ClientKey, **fields: Any) -> RequestLog:
    """A finished request of ``key`` (and its team), ``ago`` before NOW."""
    defaults: dict[str, Any] = {"endpoint": "responses", "model": "gpt-x", "upstream_name": "up", "status": 200,
                                "outcome": "ok", "priced": True}
    return RequestLog.objects.create(request_id=request_id, started=NOW - ago, client_key=key, key_name=key.name,
                                     team=key.team, **(defaults | fields))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("logs.pages.views.wall_now", lambda: NOW)
    monkeypatch.setattr("logs.management.commands.usage.now", lambda: NOW)


@pytest.fixture
def spending(db: None, clock: None) -> None:
    """Team red ($1.00 a month) with alice (100,000 tokens a month); bob alone, no budget.

    Alice this month: 1,000 + 200, 3,000 + 800 (priced, $0.062), then 10,000 tokens to a
    model without a price. Last month (within the 30 days): 55,000 tokens for $0.50.
    """
    red = Team.objects.create(name="red", usd_budget=Decimal("1.00"), budget_period="month")
    alice, _ = ClientKey.objects.create_key("alice", team=red, token_budget=100_000, budget_period="month")
    bob, _ = ClientKey.objects.create_key("bob")
    log("req_a1", timedelta(minutes=5), alice, input_tokens=1000, output_tokens=200, cost=Decimal("0.012"))
    log("req_a2", timedelta(hours=2), alice, input_tokens=3000, output_tokens=800, cost=Decimal("0.05"))
    log("req_a3", timedelta(days=10), alice, model="local-llm", input_tokens=10_000, output_tokens=0,
        cost=Decimal(0), priced=False)
    log("req_a4", timedelta(days=26), alice, input_tokens=50_000, output_tokens=5000, cost=Decimal("0.5"))
    log("req_b1", timedelta(minutes=30), bob, input_tokens=400, output_tokens=100, cost=Decimal("0.003"))
    # A refused request: no tokens, so not an unpriced one.
    log("req_b2", timedelta(minutes=31), bob, outcome="rejected", status=429, upstream_name="", priced=False)


def cells(html: str, table: str) -> list[list[str]]:
    """The body rows of the first table whose class holds ``table``, each as its non-blank texts."""
    start = html.index(f'class="grid {table}')
    body = html[html.index("<tbody>", start):html.index("</tbody>", start)]
    rows = [re.findall(r">([^<>]+)<", row.replace("\n", "")) for row in body.split("<tr>")[1:]]
    return [[text.strip() for text in row if text.strip()] for row in rows]


def test_the_usage_page_lists_each_key_and_team_with_cost_and_budget(admin_client: Client, spending: None) -> None:
    response = admin_client.get("/logs/usage/?window=month")
    assert response.status_code == 200
    html = response.content.decode()
    assert cells(html, "spenders keys") == [
        # key, team, requests, input, output, cost (1 unpriced), budget, period, used, left, used of the budget
        ["alice", "red", "4", "64k", "6k", "$0.562", "1 unpriced", "100,000 tokens/month", PERIOD, "15,000 tokens",
         "85,000 tokens", "15.0%"],
        ["bob", "—", "2", "400", "100", "$0.003", "none", PERIOD, "500 tokens · $0.003", "—", "—"]]
    assert cells(html, "spenders teams") == [
        ["red", "4", "64k", "6k", "$0.562", "1 unpriced", "$1.00/month", PERIOD, "$0.062", "$0.938", "6.2%"]]
    assert 'href="/logs/usage/keys/alice/?window=month"' in html
    assert 'href="/logs/usage/teams/red/?window=month"' in html
    assert ">$0.565<" in html  # the window's whole cost, in its tile
    assert 'class="current">Usage</a>' in html


def test_the_usage_page_counts_only_its_window(admin_client: Client, spending: None) -> None:
    html = admin_client.get("/logs/usage/?window=day").content.decode()
    alice, bob = cells(html, "spenders keys")
    assert alice[:6] == ["alice", "red", "2", "4k", "1k", "$0.062"]  # no unpriced request today
    assert alice[6:] == ["100,000 tokens/month", PERIOD, "15,000 tokens", "85,000 tokens", "15.0%"]  # the period's
    assert bob[:6] == ["bob", "—", "2", "400", "100", "$0.003"]


def test_a_spent_budget_shows_as_spent(admin_client: Client, spending: None) -> None:
    ClientKey.objects.filter(name="alice").update(token_budget=10_000)
    html = admin_client.get("/logs/usage/?window=month").content.decode()
    alice = cells(html, "spenders keys")[0]
    assert alice[7:] == ["10,000 tokens/month", PERIOD, "15,000 tokens", "0 tokens", "150.0%"]
    assert 'class="badge bad" title="spent: requests are refused until the period ends">150.0%' in html


def test_a_keys_page_shows_its_cost_per_window_its_budget_and_its_models(admin_client: Client,
                                                                         spending: None) -> None:
    response = admin_client.get("/logs/usage/keys/alice/?window=day")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Key alice" in html and "100,000 tokens/month" in html and PERIOD in html
    # this period: the limit, used, left, used of the budget
    assert cells(html, "budget") == [["tokens", "100,000", "15,000", "85,000", "15.0%"]]
    # requests, tokens, cost per window
    assert cells(html, "key-cost") == [["Last hour", "1", "1.2k", "$0.012"], ["Last 24 hours", "2", "5k", "$0.062"],
                                       ["Last 7 days", "2", "5k", "$0.062"],
                                       ["Last 30 days", "4", "70k", "$0.562", "1 unpriced"]]
    # the window's models: model, requests, upstream failures, refused, failures, input, output, not reported, cost
    assert cells(html, "models") == [["gpt-x", "2", "0", "0", "0", "4k", "1k", "0", "$0.062"]]
    assert html.count('<svg class="chart traffic') == 1  # its tokens over time
    assert 'href="/logs/usage/teams/red/"' in html  # its team, in the crumbs
    # The same page as /logs/keys/<name>/.
    assert cells(admin_client.get("/logs/keys/alice/?window=day").content.decode(), "budget") == \
        cells(html, "budget")


def test_a_keys_page_without_a_budget_says_what_it_used(admin_client: Client, spending: None) -> None:
    html = admin_client.get("/logs/usage/keys/bob/?window=month").content.decode()
    assert "No budget. Used this period: 500 tokens · $0.003." in html
    assert 'class="grid budget' not in html
    assert admin_client.get("/logs/usage/keys/nobody/").status_code == 404


def test_a_teams_page_shows_its_use_budget_and_keys(admin_client: Client, spending: None) -> None:
    response = admin_client.get("/logs/usage/teams/red/?window=month")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Team red" in html and "$1.00/month" in html
    assert cells(html, "budget") == [["USD", "$1.00", "$0.062", "$0.938", "6.2%"]]
    assert cells(html, "key-cost")[-1] == ["Last 30 days", "4", "70k", "$0.562", "1 unpriced"]
    assert cells(html, "key-windows")[-1] == ["Last 30 days", "4", "0", "0", "0", "64k", "6k", "0", "0"]
    # its keys: alice only (bob is in no team), with her own budget
    assert cells(html, "spenders keys") == [
        ["alice", "4", "64k", "6k", "$0.562", "1 unpriced", "100,000 tokens/month", PERIOD, "15,000 tokens",
         "85,000 tokens", "15.0%"]]
    models = cells(html, "models")
    assert [m[0] for m in models] == ["gpt-x", "local-llm"]  # most tokens first
    assert models[1][-2:] == ["$0", "1 unpriced"]
    assert admin_client.get("/logs/usage/teams/blue/").status_code == 404


def test_the_usage_csv_has_a_line_per_key_and_team(admin_client: Client, spending: None) -> None:
    ClientKey.objects.create_key('=HYPERLINK("http://evil.example")')  # active, no requests: listed
    response = admin_client.get("/logs/usage.csv?window=month")
    assert response["content-type"] == "text/csv; charset=utf-8"
    assert response["content-disposition"] == 'attachment; filename="usage-month-20250615-120000.csv"'
    reader = csv.reader(io.StringIO(response.content.decode()))
    header = next(reader)
    assert header == ["kind", "name", "team", "requests", "input_tokens", "output_tokens", "cost_usd",
                      "budget_period", "token_budget", "usd_budget", "tokens_used_this_period",
                      "usd_used_this_period", "unpriced_requests"]
    assert list(reader) == [
        ["key", "alice", "red", "4", "64000", "6000", "0.562000000", "month", "100000", "", "15000", "0.062000000",
         "1"],
        ["key", "bob", "", "2", "400", "100", "0.003000000", "month", "", "", "500", "0.003000000", "0"],
        ["key", "'=HYPERLINK(\"http://evil.example\")", "", "0", "0", "0", "0.000000000", "month", "", "", "0",
         "0.000000000", "0"],
        ["team", "red", "", "4", "64000", "6000", "0.562000000", "month", "", "1.0000", "15000", "0.062000000", "1"]]


@pytest.mark.parametrize("path", ["/logs/usage/", "/logs/usage.csv", "/logs/usage/keys/alice/",
                                  "/logs/usage/teams/red/"])
def test_the_usage_pages_are_for_staff_only(client: Client, spending: None, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302 and response["location"].startswith("/admin/login/")
    client.force_login(get_user_model().objects.create_user("carol", password="pw-not-staff"))
    assert client.get(path).status_code == 403


def table(output: str) -> list[list[str]]:
    """The command's table, a list of cells per line (cells are two or more spaces apart)."""
    return [re.split(r"\s{2,}", line.strip()) for line in output.splitlines()[1:]]


def test_the_usage_command_prints_each_key_and_team_since_the_month_began(spending: None) -> None:
    out = io.StringIO()
    call_command("usage", stdout=out)
    assert out.getvalue().splitlines()[0] == "Since 2025-06-01 00:00 UTC, until 2025-06-15 12:00 UTC."
    assert table(out.getvalue()) == [
        ["key", "team", "requests", "input tokens", "output tokens", "cost USD", "budget", "used this period",
         "left"],
        ["alice", "red", "3", "14,000", "1,000", "$0.062 (1 unpriced)", "100,000 tokens/month", "15,000 tokens",
         "85,000 tokens"],
        ["bob", "-", "2", "400", "100", "$0.003", "none", "500 tokens · $0.003", "—"],
        ["(team)", "red", "3", "14,000", "1,000", "$0.062 (1 unpriced)", "$1.00/month", "$0.062", "$0.938"]]


def test_the_usage_command_takes_a_key_a_team_and_a_day(spending: None) -> None:
    out = io.StringIO()
    call_command("usage", "--key", "alice", "--since", "2025-05-01", stdout=out)
    assert table(out.getvalue())[1:] == [
        ["alice", "red", "4", "64,000", "6,000", "$0.562 (1 unpriced)", "100,000 tokens/month", "15,000 tokens",
         "85,000 tokens"]]
    out = io.StringIO()
    call_command("usage", "--team", "red", stdout=out)
    assert [line[0] for line in table(out.getvalue())[1:]] == ["alice", "(team)"]
    for options, message in ((["--key", "nobody"], "No key is named 'nobody'"),
                             (["--team", "blue"], "No team is named 'blue'"),
                             (["--since", "June"], "is not a day like 2025-06-01"),
                             (["--since", "2025-02-30"], "is not a day like 2025-06-01")):
        with pytest.raises(CommandError, match=message):
            call_command("usage", *options, stdout=io.StringIO())


@pytest.mark.parametrize(("amount", "text"), [(0, "$0"), (Decimal("0.062"), "$0.062"), (Decimal("0.5"), "$0.50"),
                                              (Decimal("0.000315"), "$0.000315"), (Decimal("1234.5"), "$1,234.50")])
def test_dollars_read_as_staff_read_them(amount: Decimal, text: str) -> None:
    assert usd(amount) == text
