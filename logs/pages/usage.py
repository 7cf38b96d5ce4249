"""Usage per client key: requests, upstream failures, refusals and tokens, per key and per model, over a window.

What staff ask of a key (who uses the gateway, for what, and does it work for them) and what
budgets are counted in. A key's page draws its tokens over time. Bad-key rows have no key
name: they are one line, "(no key)", listed with ``key=-``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.urls import reverse

from logs.models import Outcome, RequestLog
from logs.pages.stats import UNTOKENED, WINDOWS, Scope, Window, buckets_of

NO_KEY = "-"  # the list's key filter for rows without a key (refused keys)
SUMS = {"requests": Count("pk"), "upstream_failed": Count("pk", filter=Q(outcome=Outcome.UPSTREAM_ERROR)),
        "refused": Count("pk", filter=Q(outcome=Outcome.REJECTED)),
        "failed": Count("pk", filter=~Q(outcome=Outcome.OK)),
        "untokened": Count("pk", filter=UNTOKENED), "input_tokens": Sum("input_tokens"),
        "output_tokens": Sum("output_tokens"), "reasoning_tokens": Sum("reasoning_tokens")}


@dataclass(frozen=True)
class KeyUsage:
    """One key's (and, with ``model``, one model's) figures in a window, with the list links of their rows."""

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

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def page(self) -> str:
        """The key's own page (its use over time); none for the rows without a key."""
        return reverse("logs:key", args=[self.name]) if self.name else ""


def _usage(scope: Scope, row: Mapping[str, Any], model: str | None = None) -> KeyUsage:
    """One group's figures; ``model``: the model it is of ("" for rows without one), None for all of a key's."""
    name = str(row["key_name"])
    params = {"key": name or NO_KEY, "model": "" if model is None else model or NO_KEY}
    return KeyUsage(name=name, model=model or "", requests=row["requests"], upstream_failed=row["upstream_failed"],
                    refused=row["refused"], failed=row["failed"], untokened=row["untokened"],
                    input_tokens=row["input_tokens"] or 0, output_tokens=row["output_tokens"] or 0,
                    reasoning_tokens=row["reasoning_tokens"] or 0,
                    link=scope.link(**params), failed_link=scope.link(**params, outcome="failed"))


def _ranked(usages: list[KeyUsage]) -> list[KeyUsage]:
    return sorted(usages, key=lambda k: (-k.tokens, -k.requests, k.name, k.model))


def per_key(scope: Scope, logs: QuerySet[RequestLog] | None = None) -> list[KeyUsage]:
    """Each key's figures in ``scope``, most tokens first."""
    logs = scope.rows() if logs is None else logs
    return _ranked([_usage(scope, row) for row in logs.values("key_name").annotate(**SUMS).order_by()])


def per_key_model(scope: Scope, logs: QuerySet[RequestLog] | None = None) -> list[KeyUsage]:
    """Each key's figures per model asked for in ``scope``, most tokens first."""
    logs = scope.rows() if logs is None else logs
    rows = logs.values("key_name", "model").annotate(**SUMS).order_by()
    return _ranked([_usage(scope, row, str(row["model"])) for row in rows])


@dataclass(frozen=True)
class TokenBucket:
    start: datetime
    tokens: int
    failed: int


@dataclass(frozen=True)
class KeyPage:
    """A key's page: its figures over each window, its tokens over the chosen one, its models."""

    name: str
    window: Window
    windows: list[KeyUsage]  # the last hour, day, 7 and 30 days, in that order
    buckets: list[TokenBucket]
    models: list[KeyUsage]


def key_page(name: str, window: Window, now: datetime) -> KeyPage:
    """Return everything a key's page shows, ``window`` chosen for its chart and model table."""
    spans = []
    for each in WINDOWS.values():
        scope = Scope.of(each, now)
        found = per_key(scope, scope.rows().filter(key_name=name))
        spans.append(found[0] if found else _usage(scope, {"key_name": name, **dict.fromkeys(SUMS, 0)}))
    scope = Scope.of(window, now)
    mine = scope.rows().filter(key_name=name)
    since = window.chart_start(now)
    charted = RequestLog.objects.filter(key_name=name, started__gte=since, started__lte=now)
    input_bars = buckets_of(window, charted, since, "input_tokens")
    output_bars = buckets_of(window, charted, since, "output_tokens")
    bars = [TokenBucket(start, tokens_in + tokens_out, failed)
            for (start, tokens_in, failed), (_, tokens_out, _) in zip(input_bars, output_bars, strict=True)]
    return KeyPage(name=name, window=window, windows=spans, buckets=bars, models=per_key_model(scope, mine))
