"""The request log's figures over a window: its rows exactly, totals by whose the failures were, bars, latency.

Every figure carries the list link (``Scope.link``) of the rows it counts, and equals
them: the overview (overview.py) and the usage per key (usage.py) are built on these.

Counts and sums are database aggregations (the same SQL on SQLite and PostgreSQL);
percentiles are taken in Python from a bounded sample of the newest rows, since neither
database offers one portable percentile function.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncHour, TruncMinute
from django.urls import reverse
from django.utils.timezone import now as wall_now

from logs.models import Fault, Outcome, RequestLog, outcomes_of

# At most this many time-to-first-byte values per window: exact for normal traffic, and a
# busy day's percentiles still come from its newest rows in one bounded query.
PERCENTILE_SAMPLE = 20_000
FAILED = ~Q(outcome=Outcome.OK)
REACHED = ~Q(upstream_name="")
# Answered by an upstream, and no token counts on the row: the upstream reported none.
UNTOKENED = Q(outcome=Outcome.OK) & REACHED & Q(input_tokens__isnull=True, output_tokens__isnull=True)


@dataclass(frozen=True)
class Window:
    name: str
    label: str
    span: timedelta
    bucket: timedelta  # one bar of the traffic chart
    since: str  # the list's relative ``since`` for it (a bookmark of "the last hour")

    @property
    def minutes(self) -> float:
        return self.span.total_seconds() / 60

    def chart_start(self, now: datetime) -> datetime:
        """Return where the window's chart begins: whole bars, the last one holding ``now``.

        Aligning on the bar size keeps the bars steady between two page loads; the numbers
        use the exact window (``now - span``).
        """
        size = self.bucket.total_seconds()
        current = datetime.fromtimestamp(now.timestamp() // size * size, tz=UTC)
        return current + self.bucket - self.span


WINDOWS = {
    "hour": Window("hour", "Last hour", timedelta(hours=1), timedelta(minutes=1), "1h"),
    "day": Window("day", "Last 24 hours", timedelta(days=1), timedelta(minutes=15), "24h"),
    "week": Window("week", "Last 7 days", timedelta(days=7), timedelta(hours=6), "7d"),
    "month": Window("month", "Last 30 days", timedelta(days=30), timedelta(days=1), "30d"),
}


def window_named(name: str | None) -> Window:
    """Return the window a page's ``?window=`` names: the last hour unless it names another."""
    return WINDOWS.get(name or "", WINDOWS["hour"])


@dataclass(frozen=True)
class Scope:
    """The rows of one window, exactly: ``since <= started < until``; its links list the same rows."""

    window: Window
    since: datetime
    until: datetime

    @classmethod
    def of(cls, window: Window, now: datetime | None = None) -> Scope:
        until = now or wall_now()
        return cls(window, until - window.span, until)

    def rows(self) -> QuerySet[RequestLog]:
        return RequestLog.objects.filter(started__gte=self.since, started__lt=self.until)

    def link(self, **params: str) -> str:
        """Return the list page's URL of the rows a figure counts: its filters, within this window exactly."""
        bounds = {"since": self.since.isoformat(), "until": self.until.isoformat()}
        return f"{reverse('logs:list')}?{urlencode({**{k: v for k, v in params.items() if v}, **bounds})}"


@dataclass(frozen=True)
class FaultCount:
    fault: str
    label: str
    count: int
    link: str


@dataclass(frozen=True)
class Totals:
    window: Window
    requests: int
    reached: int  # requests that reached an upstream
    failed: int  # any failure, whosever
    faults: list[FaultCount]  # failures by whose they are, upstream failures first
    upstream_failed: int
    failovers: int  # requests that moved from one upstream to another
    per_minute: float
    error_rate: float | None  # upstream failures over requests that reached one (None: none did)
    p50_ttfb: float | None
    p95_ttfb: float | None
    input_tokens: int
    output_tokens: int
    untokened: int  # answered requests whose upstream reported no tokens
    links: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Bucket:
    start: datetime
    requests: int
    failed: int


def percentile(values: Sequence[float], p: float) -> float | None:
    """Return the ``p``-th percentile of sorted ``values`` by nearest rank (a value that occurred)."""
    if not values:
        return None
    rank = max(math.ceil(p / 100 * len(values)), 1)
    return values[rank - 1]


def ttfb_sample(logs: QuerySet[RequestLog]) -> tuple[dict[str, list[float]], bool]:
    """Return the newest upstream TTFBs by upstream name (sorted), and whether the sample was cut."""
    rows = list(logs.filter(ttfb_ms__isnull=False).exclude(upstream_name="").order_by("-started")
                .values_list("upstream_name", "ttfb_ms")[:PERCENTILE_SAMPLE])
    by_upstream: dict[str, list[float]] = defaultdict(list)
    for name, ttfb in rows:
        if ttfb is not None:  # excluded by the query; the type does not know
            by_upstream[name].append(ttfb)
    for values in by_upstream.values():
        values.sort()
    return by_upstream, len(rows) == PERCENTILE_SAMPLE


def _faults(scope: Scope, sums: dict[str, Any]) -> list[FaultCount]:
    return [FaultCount(str(fault), str(fault.label), sums[f"fault_{fault}"], scope.link(fault=str(fault)))
            for fault in Fault]


# Each fault's count, in the totals' one aggregate query.
FAULT_COUNTS = {f"fault_{fault}": Count("pk", filter=Q(outcome__in=outcomes_of(fault))) for fault in Fault}


def totals_of(scope: Scope, logs: QuerySet[RequestLog], ttfbs: dict[str, list[float]]) -> Totals:
    sums = logs.aggregate(requests=Count("pk"), reached=Count("pk", filter=REACHED),
                          failovers=Count("pk", filter=~Q(failed_over="")), untokened=Count("pk", filter=UNTOKENED),
                          input_tokens=Sum("input_tokens"), output_tokens=Sum("output_tokens"), **FAULT_COUNTS)
    faults = _faults(scope, sums)
    upstream_failed = faults[0].count
    everything = sorted(v for values in ttfbs.values() for v in values)
    requests, reached = sums["requests"], sums["reached"]
    return Totals(window=scope.window, requests=requests, reached=reached,
                  failed=sum(f.count for f in faults), faults=faults, upstream_failed=upstream_failed,
                  failovers=sums["failovers"], per_minute=requests / scope.window.minutes,
                  error_rate=upstream_failed / reached if reached else None,
                  p50_ttfb=percentile(everything, 50), p95_ttfb=percentile(everything, 95),
                  input_tokens=sums["input_tokens"] or 0, output_tokens=sums["output_tokens"] or 0,
                  untokened=sums["untokened"],
                  links={"requests": scope.link(), "reached": scope.link(reached="1"),
                         "failed": scope.link(outcome="failed"), "failovers": scope.link(failover="1"),
                         "untokened": scope.link(tokens="none")})


def totals(window: Window, now: datetime | None = None) -> Totals:
    """Return the headline numbers of ``window`` (the strip atop the list page)."""
    scope = Scope.of(window, now)
    logs = scope.rows()
    return totals_of(scope, logs, ttfb_sample(logs)[0])


def trunc_for(window: Window) -> Any:
    """Minutes for bars under an hour, hours above: a month's chart reads 720 rows, not 43,200."""
    return TruncMinute if window.bucket < timedelta(hours=1) else TruncHour


def buckets_of(window: Window, logs: QuerySet[RequestLog], since: datetime,
               value: Any = None) -> list[tuple[datetime, int, int]]:
    """Return ``window``'s bars from ``since``: (start, count or ``value``'s sum, failures), oldest first.

    Grouped per minute or hour in SQL (both databases), regrouped into the window's bars here.
    """
    counts = [[0, 0] for _ in range(int(window.span / window.bucket))]
    measure = Sum(value) if value is not None else Count("pk")
    grouped = (logs.annotate(at=trunc_for(window)("started")).values("at")
               .annotate(measure=measure, failures=Count("pk", filter=FAILED)).order_by("at"))
    for row in grouped:
        index = min(max(int((row["at"] - since) / window.bucket), 0), len(counts) - 1)
        counts[index][0] += row["measure"] or 0
        counts[index][1] += row["failures"]
    return [(since + window.bucket * i, amount, failed) for i, (amount, failed) in enumerate(counts)]


def traffic(window: Window, now: datetime | None = None) -> list[Bucket]:
    """Return the bars of ``window``'s traffic chart, oldest first."""
    now = now or wall_now()
    since = window.chart_start(now)
    logs = RequestLog.objects.filter(started__gte=since, started__lte=now)
    return [Bucket(start, requests, failed) for start, requests, failed in buckets_of(window, logs, since)]


@dataclass(frozen=True)
class SessionSummary:
    """A session at a glance: its turns, compactions, failures, tokens and time."""

    requests: int
    turns: int  # requests that asked a model (not Codex's warm-ups, nor the catalog)
    compactions: int
    failed: int
    input_tokens: int
    output_tokens: int
    first: datetime
    last: datetime
    models: list[str]

    @property
    def span_ms(self) -> float:
        """From the first request to the end of the last, in milliseconds."""
        return (self.last - self.first).total_seconds() * 1000


def session_summary(rows: Sequence[RequestLog]) -> SessionSummary:
    """Sum up one session's rows (oldest first), as its page shows them."""
    return SessionSummary(
        requests=len(rows),
        turns=sum(1 for row in rows if row.upstream_name and row.request_kind != "compaction"),
        compactions=sum(1 for row in rows if row.request_kind == "compaction"),
        failed=sum(1 for row in rows if row.failed),
        input_tokens=sum(row.input_tokens or 0 for row in rows),
        output_tokens=sum(row.output_tokens or 0 for row in rows),
        first=rows[0].started, last=rows[-1].finished or rows[-1].started,
        models=sorted({row.model for row in rows if row.model}))
