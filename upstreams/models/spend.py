"""What spending may cost: budgets per period on keys and teams, teams, and the price of each model.

A budget counts tokens (input + output, as the upstream reported them) and US dollars (at
the prices below) over a period on UTC calendar boundaries: a ``day`` from 00:00 UTC, a
``week`` from Monday 00:00 UTC, a ``month`` from the 1st at 00:00 UTC; a ``total`` never
resets. The API enforces them (api/budgets/); the database's rows are their truth.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.core.validators import MinValueValidator
from django.db import models

from upstreams.models.upstream import ByPattern

MILLION = Decimal(1_000_000)
COST_PLACES = Decimal("1e-9")  # a row's cost is kept to the billionth of a dollar (the ledger counts in those)


def usd(amount: Decimal | int | None) -> str:
    """US dollars as people read them: ``$1,234.56``, ``$0.42``, a small amount to the millionth (``$0.000315``)."""
    amount = Decimal(amount or 0)
    if not amount:
        return "$0"
    if abs(amount) >= 1:
        return f"${amount:,.2f}"
    text = f"{amount:.6f}".rstrip("0")
    return f"${text}" if len(text.partition(".")[2]) >= 2 else f"${amount:.2f}"


class BudgetPeriod(models.TextChoices):
    DAY = "day", "per day (from 00:00 UTC)"
    WEEK = "week", "per week (from Monday 00:00 UTC)"
    MONTH = "month", "per month (from the 1st, 00:00 UTC)"
    TOTAL = "total", "in total (never resets)"


@dataclass(frozen=True, slots=True)
class Period:
    """One budget period: ``start`` to ``end`` (both None for ``total``), and its name in the ledger."""

    kind: str
    start: datetime | None
    end: datetime | None

    @property
    def tag(self) -> str:
        if self.start is None:
            return "total"
        start = self.start
        return f"{self.kind[0]}{start.year:04}{start.month:02}{start.day:02}"

    @property
    def resets(self) -> bool:
        return self.end is not None


def period_at(kind: str, at: datetime) -> Period:
    """The period of kind ``kind`` that ``at`` falls in (UTC calendar boundaries)."""
    at = at.astimezone(UTC)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == BudgetPeriod.DAY:
        return Period(kind, day, day + timedelta(days=1))
    if kind == BudgetPeriod.WEEK:
        start = day - timedelta(days=day.weekday())
        return Period(kind, start, start + timedelta(days=7))
    if kind == BudgetPeriod.MONTH:
        start = day.replace(day=1)
        return Period(kind, start, (start + timedelta(days=32)).replace(day=1))
    return Period(BudgetPeriod.TOTAL, None, None)


class Budgeted(models.Model):
    """A budget of tokens and/or US dollars per period (a key's, a team's): empty means no limit."""

    token_budget = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Tokens (input + output) per budget period; empty: no limit.")
    usd_budget = models.DecimalField(
        "USD budget", max_digits=14, decimal_places=4, null=True, blank=True, validators=[MinValueValidator(0)],
        help_text="US dollars per budget period, at the prices of the models used; empty: no limit.")
    budget_period = models.CharField(max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)

    class Meta:
        abstract = True

    @property
    def has_budget(self) -> bool:
        return self.token_budget is not None or self.usd_budget is not None

    def period(self, at: datetime) -> Period:
        return period_at(self.budget_period, at)


class Team(Budgeted):
    """Keys that share a budget: a request counts against its key's budget and its team's, both."""

    name = models.CharField(max_length=100, unique=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Price(ByPattern, models.Model):
    """What a model costs, in US dollars per million tokens; a request to a model with no price costs 0."""

    pattern = models.CharField(
        "model", max_length=200, unique=True,
        help_text="A model name as clients ask for it, or a glob (claude-*): a name beats a glob, "
                  "a longer glob a shorter one.")
    input = models.DecimalField(max_digits=12, decimal_places=6, validators=[MinValueValidator(0)],
                                help_text="USD per million input tokens.")
    cached_input = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True, validators=[MinValueValidator(0)],
        help_text="USD per million input tokens read from the prompt cache; empty: the input price.")
    output = models.DecimalField(max_digits=12, decimal_places=6, validators=[MinValueValidator(0)],
                                 help_text="USD per million output tokens (reasoning included).")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pattern"]

    def __str__(self) -> str:
        return self.pattern

    def cost(self, input_tokens: int, cached_tokens: int, output_tokens: int) -> Decimal:
        """The dollars these tokens cost (cached tokens are part of the input tokens, priced apart)."""
        cached = min(max(cached_tokens, 0), input_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        total = ((input_tokens - cached) * Decimal(self.input) + cached * Decimal(cached_price)
                 + output_tokens * Decimal(self.output)) / MILLION
        return total.quantize(COST_PLACES, rounding=ROUND_HALF_UP)
