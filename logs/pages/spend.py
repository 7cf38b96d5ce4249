"""Budgets and spending: each key's and team's budget this period, used and left; the usage page and its CSV.

A budget's period is its owner's (UTC calendar: upstreams.models.spend); what was used of it
comes from the rows (``RequestLog.objects.spending``), as the API rebuilds it. The usage page
lists every key and team: its figures in the chosen window (usage.py) beside its budget.
A key whose name is shared by several keys shows the newest one's budget.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.urls import reverse

from logs.models import RequestLog
from logs.pages.stats import Scope
from logs.pages.usage import SUMS, KeyUsage, per_key, per_team, usage_of
from upstreams.models import COST_PLACES, Budgeted, BudgetPeriod, ClientKey, Period, Team, usd

PER_PERIOD: dict[str, str] = {BudgetPeriod.DAY: "/day", BudgetPeriod.WEEK: "/week", BudgetPeriod.MONTH: "/month",
              BudgetPeriod.TOTAL: " in total"}


def _share(used: Decimal | int, budget: Decimal | int | None) -> float | None:
    """The part of ``budget`` used (1.0: all of it; more when overspent); None without a budget."""
    if budget is None:
        return None
    if not budget:
        return 1.0 if used else 0.0
    return float(Decimal(used) / Decimal(budget))


@dataclass(frozen=True)
class BudgetLine:
    """One limit of a budget as a page shows it: ``tokens`` or ``USD``, the limit, used, left, the part used."""

    unit: str
    budget: str
    used: str
    left: str
    share: float | None

    @property
    def spent(self) -> bool:
        return self.share is not None and self.share >= 1


@dataclass(frozen=True)
class PeriodSpend:
    """What an owner (a key, a team) spent in its budget's current period, beside its budget (limits None: none)."""

    period: Period
    token_budget: int | None
    usd_budget: Decimal | None
    tokens_used: int
    usd_used: Decimal

    @property
    def has_budget(self) -> bool:
        return self.token_budget is not None or self.usd_budget is not None

    @property
    def tokens_left(self) -> int | None:
        return None if self.token_budget is None else max(self.token_budget - self.tokens_used, 0)

    @property
    def usd_left(self) -> Decimal | None:
        return None if self.usd_budget is None else max(self.usd_budget - self.usd_used, Decimal(0))

    @property
    def token_share(self) -> float | None:
        return _share(self.tokens_used, self.token_budget)

    @property
    def usd_share(self) -> float | None:
        return _share(self.usd_used, self.usd_budget)

    @property
    def share(self) -> float | None:
        """The larger part used of the two limits (the one that runs out first); None without a budget."""
        shares = [s for s in (self.token_share, self.usd_share) if s is not None]
        return max(shares) if shares else None

    @property
    def spent(self) -> bool:
        return self.share is not None and self.share >= 1

    @property
    def limit_text(self) -> str:
        """``100,000 tokens/month``, ``$5.00/day``, ``100,000 tokens + $5.00 in total``, or ``none``."""
        parts = ([f"{self.token_budget:,} tokens"] if self.token_budget is not None else []) + \
                ([usd(self.usd_budget)] if self.usd_budget is not None else [])
        return " + ".join(parts) + PER_PERIOD.get(self.period.kind, "") if parts else "none"

    @property
    def period_text(self) -> str:
        """``2025-06-01 – 2025-07-01 UTC``, or ``in total``."""
        if self.period.start is None or self.period.end is None:
            return "in total"
        return f"{self.period.start:%Y-%m-%d} – {self.period.end:%Y-%m-%d} UTC"

    def lines(self) -> list[BudgetLine]:
        """A line per limit it has: tokens, then dollars."""
        lines = []
        if self.token_budget is not None:
            lines.append(BudgetLine("tokens", f"{self.token_budget:,}", f"{self.tokens_used:,}",
                                    f"{self.tokens_left or 0:,}", self.token_share))
        if self.usd_budget is not None:
            lines.append(BudgetLine("USD", usd(self.usd_budget), usd(self.usd_used), usd(self.usd_left),
                                    self.usd_share))
        return lines

    def used_text(self) -> str:
        """What was used of each limit (of both without a budget): ``1,500 tokens · $0.42``."""
        tokens = f"{self.tokens_used:,} tokens"
        if not self.has_budget:
            return f"{tokens} · {usd(self.usd_used)}"
        parts = ([tokens] if self.token_budget is not None else []) + \
                ([usd(self.usd_used)] if self.usd_budget is not None else [])
        return " · ".join(parts)

    def left_text(self) -> str:
        """What is left of each limit, ``—`` without a budget."""
        parts = ([f"{self.tokens_left:,} tokens"] if self.tokens_left is not None else []) + \
                ([usd(self.usd_left)] if self.usd_left is not None else [])
        return " · ".join(parts) or "—"


def spend_of(owner: Budgeted, at: datetime) -> PeriodSpend:
    """What ``owner`` (a ClientKey or a Team) spent in its budget's period that holds ``at``."""
    period = owner.period(at)
    ids = {"team_id": owner.pk} if isinstance(owner, Team) else {"key_id": owner.pk}
    tokens, dollars = RequestLog.objects.spending(**ids, since=period.start, until=period.end)
    return PeriodSpend(period=period, token_budget=owner.token_budget, usd_budget=owner.usd_budget,
                       tokens_used=tokens, usd_used=dollars)


@dataclass(frozen=True)
class Spender:
    """One line of the usage page: a key or a team, its figures in the window, its spending this period."""

    kind: str  # "key" or "team"
    name: str
    team: str  # a key's team ("" for a team, and for a key in none)
    usage: KeyUsage
    owner: Budgeted | None  # None: a key no longer configured (deleted), seen in the rows only
    spend: PeriodSpend | None

    @property
    def page(self) -> str:
        return reverse("logs:usage_team" if self.kind == "team" else "logs:usage_key", args=[self.name])

    @property
    def budget(self) -> PeriodSpend | None:
        """Its spending this period if it has a budget."""
        return self.spend if self.spend is not None and self.spend.has_budget else None


def _ranked(spenders: list[Spender]) -> list[Spender]:
    return sorted(spenders, key=lambda s: (-s.usage.cost, -s.usage.tokens, -s.usage.requests, s.name))


def _empty(scope: Scope, name: str, *, linked: bool) -> KeyUsage:
    return usage_of(scope, name, dict.fromkeys(SUMS, 0), linked=linked)


def key_spenders(scope: Scope, at: datetime, team: Team | None = None) -> list[Spender]:
    """The keys with requests in ``scope`` or active, most cost first; ``team``: its keys, their rows counted to it."""
    rows = scope.rows().exclude(key_name="")
    keys = ClientKey.objects.select_related("team").order_by("pk")
    if team is not None:
        rows, keys = rows.filter(team_id=team.pk), keys.filter(team_id=team.pk)
    figures = {usage.name: usage for usage in per_key(scope, rows)}
    configured = {key.name: key for key in keys if key.active or key.name in figures}  # the newest of a name wins
    spenders = []
    for name in set(figures) | set(configured):
        key = configured.get(name)
        usage = figures.get(name) or _empty(scope, name, linked=True)
        spenders.append(Spender("key", name, key.team_name if key is not None else "", usage, key,
                                spend_of(key, at) if key is not None else None))
    return _ranked(spenders)


def team_spenders(scope: Scope, at: datetime) -> list[Spender]:
    """Every team, most cost first: its figures in ``scope`` (the rows that counted against it) and its budget."""
    teams = list(Team.objects.all())
    figures = per_team(scope, {team.pk: team.name for team in teams})
    return _ranked([Spender("team", team.name, "", figures.get(team.pk) or _empty(scope, team.name, linked=False),
                            team, spend_of(team, at)) for team in teams])


# unpriced_requests: the requests with tokens whose model had no price (their cost counted as 0).
CSV_FIELDS = ["kind", "name", "team", "requests", "input_tokens", "output_tokens", "cost_usd", "budget_period",
              "token_budget", "usd_budget", "tokens_used_this_period", "usd_used_this_period", "unpriced_requests"]


def _dollars(amount: Decimal | None) -> str:
    return "" if amount is None else f"{Decimal(amount).quantize(COST_PLACES):f}"


def csv_row(spender: Spender) -> list[object]:
    """The usage CSV's line of a key or a team (CSV_FIELDS); budget cells empty for a key no longer configured."""
    usage, owner, spent = spender.usage, spender.owner, spender.spend
    return [spender.kind, spender.name, spender.team, usage.requests, usage.input_tokens, usage.output_tokens,
            _dollars(usage.cost), owner.budget_period if owner else "", owner.token_budget if owner else None,
            owner.usd_budget if owner else None, spent.tokens_used if spent else None,
            _dollars(spent.usd_used) if spent else "", usage.unpriced]
