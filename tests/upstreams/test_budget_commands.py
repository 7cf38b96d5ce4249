"""The command line of budgets: createapikey's team and budget, ``team``, ``setprice``; periods and prices (pure)."""
from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from upstreams.models import ClientKey, Price, Team, best_for, period_at


def run(*args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


@pytest.mark.django_db
def test_createapikey_puts_the_key_in_a_team_with_a_budget() -> None:
    said = run("createapikey", "ci-bot", "--team", "agents", "--token-budget", "2000000", "--usd-budget", "$12.50",
               "--budget-period", "day")
    assert "Created team agents" in said
    key = ClientKey.objects.get(name="ci-bot")
    assert (key.team.name, key.token_budget, key.usd_budget, key.budget_period) == (
        "agents", 2_000_000, Decimal("12.50"), "day")
    run("createapikey", "second", "--team", "agents")
    assert Team.objects.get(name="agents").keys.count() == 2  # the team is found, not made again
    with pytest.raises(CommandError, match="is not an amount"):
        run("createapikey", "bad", "--usd-budget", "lots")
    with pytest.raises(CommandError, match="0 or more"):
        run("createapikey", "bad", "--token-budget", "-5")


@pytest.mark.django_db
def test_team_creates_changes_and_shows_a_team() -> None:
    assert run("team", "agents", "--usd-budget", "50").startswith("Created agents: no token limit, $50.00, per month")
    assert run("team", "agents", "--token-budget", "1000", "--budget-period", "week").startswith(
        "Changed agents: 1,000 tokens, $50.00, per week")
    assert run("team", "agents", "--no-budget").startswith("Changed agents: no token limit, no dollar limit")
    assert run("team", "agents").startswith("Team agents:")


@pytest.mark.django_db
def test_setprice_sets_changes_and_removes_a_price() -> None:
    assert run("setprice", "qwen3-*", "--input", "0.2", "--output", "0.6").startswith("Set the price of qwen3-*")
    assert "cached input $0.02" in run("setprice", "qwen3-*", "--input", "0.2", "--output", "0.6",
                                       "--cached-input", "0.02")
    price = Price.objects.get(pattern="qwen3-*")
    assert (price.input, price.cached_input, price.output) == (Decimal("0.2"), Decimal("0.02"), Decimal("0.6"))
    with pytest.raises(CommandError):
        run("setprice", "m", "--input", "-1", "--output", "1")
    assert run("setprice", "qwen3-*", "--input", "0", "--output", "0", "--delete").startswith("Removed")
    assert not Price.objects.exists()


def test_a_price_costs_cached_input_apart_and_a_name_beats_a_glob() -> None:
    price = Price(pattern="claude-*", input=Decimal(3), cached_input=Decimal("0.3"), output=Decimal(15))
    # 10,000 in of which 8,000 cached, 500 out: 2,000 x 3 + 8,000 x 0.3 + 500 x 15, per million.
    assert price.cost(10_000, 8_000, 500) == Decimal("0.0159")
    assert Price(pattern="m", input=Decimal(1), output=Decimal(1)).cost(3, 9, 0) == Decimal("0.000003")  # cached <= in
    named = Price(pattern="claude-sonnet-4-5", input=Decimal(1), output=Decimal(1))
    assert best_for("claude-sonnet-4-5", [price, named]) is named
    assert best_for("claude-opus-4-5", [price, named]) is price
    assert best_for("gpt-5", [price, named]) is None


@pytest.mark.parametrize(("kind", "start", "end"), [
    ("day", datetime(2026, 12, 9, tzinfo=UTC), datetime(2026, 12, 10, tzinfo=UTC)),
    ("week", datetime(2026, 12, 7, tzinfo=UTC), datetime(2026, 12, 14, tzinfo=UTC)),  # from Monday
    ("month", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ("total", None, None),
])
def test_budget_periods_follow_the_utc_calendar(kind: str, start: datetime | None, end: datetime | None) -> None:
    period = period_at(kind, datetime(2026, 12, 9, 23, 30, tzinfo=UTC))  # a Wednesday
    assert (period.start, period.end) == (start, end)
    assert period_at(kind, datetime(2026, 12, 10, 0, 30, tzinfo=UTC)).start == (
        datetime(2026, 12, 10, tzinfo=UTC) if kind == "day" else start)
