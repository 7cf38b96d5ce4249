"""Usage per client key and team: requests, failures, tokens and cost, per key and per model, over a window.

What staff ask of a key (who uses the gateway, for what, what it costs, and does it work for
them) and what budgets are counted in (their part: spend.py). A key's page and a team's draw
their tokens over time. Bad-key rows have no key name: they are one line, "(no key)", listed
with ``key=-``. A cost is the sum of the rows' ``cost``: a row whose model had no price costs
0 and is counted as ``unpriced`` (when it has tokens), so a cost is never silently low.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.urls import reverse

from logs.models import Outcome, RequestLog
from logs.pages.stats import UNTOKENED, WINDOWS, Scope, Window, buckets_of
from upstreams.models import usd

NO_KEY = "-"  # the list's key filter for rows without a key (refused keys)
# Tokens were counted but no price applied: the row's cost of 0 is not what it cost.
UNPRICED = Q(priced=False) & (Q(input_tokens__isnull=False) | Q(output_tokens__isnull=False))
SUMS = {"requests": Count("pk"), "upstream_failed": Count("pk", filter=Q(outcome=Outcome.UPSTREAM_ERROR)),
        "refused": Count("pk", filter=Q(outcome=Outcome.REJECTED)),
        "failed": Count("pk", filter=~Q(outcome=Outcome.OK)),
        # Before the sums named like the token fields: a filter after them would read the sums.
        "untokened": Count("pk", filter=UNTOKENED), "unpriced": Count("pk", filter=UNPRICED),
        "input_tokens": Sum("input_tokens"), "output_tokens": Sum("output_tokens"),
        "reasoning_tokens": Sum("reasoning_tokens"), "cost": Sum("cost")}



@dataclass(frozen=True)
class KeyUsage:
    """One key's (and, with ``model``, one model's) figures in a window, with the list links of their rows.

    A team's figures have the same shape (``name``: the team's), without links: the list has
    no team filter.
    """

    name: str  # "": requests that presented no known key
    model: str
    requests: int
    upstream_failed: int
    refused: int
    failed: int  # any failure, whosever
    untokened: int  # answered without token counts (the upstream reported none)
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    link: str
    failed_link: str
    cost: Decimal = Decimal(0)  # US dollars
    unpriced: int = 0  # requests with tokens and no price (their cost counted as 0)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def cost_text(self) -> str:
        return usd(self.cost)

    @property
    def page(self) -> str:
        """The key's own page (its use over time); none for the rows without a key."""
        return reverse("logs:key", args=[self.name]) if self.name else ""


def usage_of(scope: Scope, name: str, row: Mapping[str, Any], model: str | None = None, *,
             linked: bool = True) -> KeyUsage:
    """One group's figures (``row``: SUMS of it); ``model``: the one it is of ("" for rows without one), None for all.

    ``linked``: the group is a key's (its rows have a list link); a team's is not.
    """
    params = {"key": name or NO_KEY, "model": "" if model is None else model or NO_KEY}
    sums: dict[str, Any] = {field: row[field] or 0 for field in SUMS}  # a Sum over no rows is None
    sums["cost"] = Decimal(sums["cost"])
    links: dict[str, Any] = {"link": "", "failed_link": ""}
    if linked:
        links = {"link": scope.link(**params), "failed_link": scope.link(**params, outcome="failed")}
    return KeyUsage(name=name, model=model or "", **sums, **links)


def _ranked(usages: list[KeyUsage]) -> list[KeyUsage]:
    return sorted(usages, key=lambda k: (-k.tokens, -k.requests, k.name, k.model))


def per_key(scope: Scope, logs: QuerySet[RequestLog] | None = None) -> list[KeyUsage]:
    """Each key's figures in ``scope``, most tokens first."""
    logs = scope.rows() if logs is None else logs
    rows = logs.values("key_name").annotate(**SUMS).order_by()
    return _ranked([usage_of(scope, str(row["key_name"]), row) for row in rows])



def per_team(scope: Scope, names: Mapping[int, str]) -> dict[int, KeyUsage]:
    """Each team's figures in ``scope`` (the rows that counted against it), by the team's id; ``names``: the teams'."""
    rows = scope.rows().exclude(team=None).values("team_id").annotate(**SUMS).order_by()
    return {row["team_id"]: usage_of(scope, names.get(row["team_id"], ""), row, linked=False) for row in rows}


@dataclass(frozen=True)
class TokenBucket:
    start: datetime
    tokens: int
    failed: int


@dataclass(frozen=True)
class KeyPage:
    """A key's page (or a team's): its figures over each window, its tokens over the chosen one, its models."""

    name: str
    window: Window
    windows: list[KeyUsage]  # the last hour, day, 7 and 30 days, in that order
    buckets: list[TokenBucket]
    models: list[KeyUsage]


def _page(name: str, mine: QuerySet[RequestLog], window: Window, now: datetime, *, linked: bool) -> KeyPage:
    """The page of the rows ``mine`` (all of a key's or a team's), ``window`` chosen for its chart and model table."""
    spans = []
    for each in WINDOWS.values():
        scope = Scope.of(each, now)
        spans.append(usage_of(scope, name, mine.filter(started__gte=scope.since, started__lt=scope.until)
                              .aggregate(**SUMS), linked=linked))
    scope = Scope.of(window, now)
    rows = mine.filter(started__gte=scope.since, started__lt=scope.until).values("model").annotate(**SUMS).order_by()
    models = _ranked([usage_of(scope, name, row, str(row["model"]), linked=linked) for row in rows])
    since = window.chart_start(now)
    charted = mine.filter(started__gte=since, started__lte=now)
    input_bars = buckets_of(window, charted, since, "input_tokens")
    output_bars = buckets_of(window, charted, since, "output_tokens")
    bars = [TokenBucket(start, tokens_in + tokens_out, failed)
            for (start, tokens_in, failed), (_, tokens_out, _) in zip(input_bars, output_bars, strict=True)]
    return KeyPage(name=name, window=window, windows=spans, buckets=bars, models=models)


def key_page(name: str, window: Window, now: datetime) -> KeyPage:
    """Return everything a key's page shows, ``window`` chosen for its chart and model table."""
    return _page(name, RequestLog.objects.filter(key_name=name), window, now, linked=True)


def team_page(team_id: int, name: str, window: Window, now: datetime) -> KeyPage:
    """Return a team's figures as a key's page shows them: the rows that counted against the team."""
    return _page(name, RequestLog.objects.filter(team_id=team_id), window, now, linked=False)
