"""The request log's overview: traffic, failures, time to first byte and tokens over a window.

Counts and sums are database aggregations (the same SQL on SQLite and PostgreSQL);
percentiles are taken in Python from a bounded sample of the newest rows, since neither
database offers one portable percentile function.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Count, Max, Q, QuerySet, Sum
from django.db.models.functions import TruncMinute
from django.utils.timezone import now as wall_now

from logs.models import Outcome, RequestLog

# At most this many time-to-first-byte values per window: exact for normal traffic, and a
# busy day's percentiles still come from its newest rows in one bounded query.
PERCENTILE_SAMPLE = 20_000
TOP_KEYS = 20
TOP_ERRORS = 10
FAILED = ~Q(outcome=Outcome.OK)


@dataclass(frozen=True)
class Window:
    name: str
    label: str
    span: timedelta
    bucket: timedelta  # one bar of the traffic chart

    @property
    def minutes(self) -> float:
        return self.span.total_seconds() / 60

    def chart_start(self, now: datetime) -> datetime:
        """Return where the window's chart begins: whole bars, the last one holding ``now``.

        Aligning on the bar size keeps the bars steady between two page loads; the numbers
        use the exact window (``now - span``), as the list's ``since=1h`` filter does.
        """
        size = self.bucket.total_seconds()
        current = datetime.fromtimestamp(now.timestamp() // size * size, tz=UTC)
        return current + self.bucket - self.span


WINDOWS = {
    "hour": Window("hour", "Last hour", timedelta(hours=1), timedelta(minutes=1)),
    "day": Window("day", "Last 24 hours", timedelta(days=1), timedelta(minutes=15)),
}


@dataclass(frozen=True)
class Totals:
    window: Window
    requests: int
    failed: int
    per_minute: float
    error_rate: float | None  # None: no requests, so no rate
    p50_ttfb: float | None
    p95_ttfb: float | None
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Bucket:
    start: datetime
    requests: int
    failed: int


@dataclass(frozen=True)
class UpstreamStats:
    name: str
    requests: int
    failed: int
    error_rate: float
    p50_ttfb: float | None
    p95_ttfb: float | None


@dataclass(frozen=True)
class KeyStats:
    name: str
    requests: int
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class ErrorStats:
    outcome: str
    error_type: str
    upstream: str
    count: int
    last_seen: datetime
    message: str  # the newest one


@dataclass(frozen=True)
class Overview:
    totals: Totals
    since: datetime
    until: datetime
    buckets: list[Bucket]
    upstreams: list[UpstreamStats]
    keys: list[KeyStats]
    errors: list[ErrorStats]
    sampled: bool  # percentiles came from the newest PERCENTILE_SAMPLE rows only


def percentile(values: Sequence[float], p: float) -> float | None:
    """Return the ``p``-th percentile of sorted ``values`` by nearest rank (a value that occurred)."""
    if not values:
        return None
    rank = max(math.ceil(p / 100 * len(values)), 1)
    return values[rank - 1]


def _in_window(window: Window, now: datetime) -> QuerySet[RequestLog]:
    return RequestLog.objects.filter(started__gte=now - window.span, started__lte=now)


def _ttfb_sample(logs: QuerySet[RequestLog]) -> tuple[dict[str, list[float]], bool]:
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


def _totals(window: Window, logs: QuerySet[RequestLog], ttfbs: dict[str, list[float]]) -> Totals:
    sums = logs.aggregate(requests=Count("pk"), failed=Count("pk", filter=FAILED),
                          input_tokens=Sum("input_tokens"), output_tokens=Sum("output_tokens"))
    everything = sorted(v for values in ttfbs.values() for v in values)
    requests = sums["requests"]
    return Totals(window=window, requests=requests, failed=sums["failed"],
                  per_minute=requests / window.minutes,
                  error_rate=sums["failed"] / requests if requests else None,
                  p50_ttfb=percentile(everything, 50), p95_ttfb=percentile(everything, 95),
                  input_tokens=sums["input_tokens"] or 0, output_tokens=sums["output_tokens"] or 0)


def totals(window: Window, now: datetime | None = None) -> Totals:
    """Return the headline numbers of ``window`` (the strip atop the list page)."""
    logs = _in_window(window, now or wall_now())
    return _totals(window, logs, _ttfb_sample(logs)[0])


def traffic(window: Window, now: datetime | None = None) -> list[Bucket]:
    """Return the bars of ``window``'s traffic chart, oldest first."""
    now = now or wall_now()
    since = window.chart_start(now)
    # Per minute in SQL (TruncMinute works on both databases), regrouped into the window's
    # bars here: at most 1440 rows for a day.
    counts = [[0, 0] for _ in range(int(window.span / window.bucket))]
    logs = RequestLog.objects.filter(started__gte=since, started__lte=now)
    minutes = (logs.annotate(minute=TruncMinute("started")).values("minute")
               .annotate(requests=Count("pk"), failures=Count("pk", filter=FAILED)).order_by("minute"))
    for row in minutes:
        index = min(max(int((row["minute"] - since) / window.bucket), 0), len(counts) - 1)
        counts[index][0] += row["requests"]
        counts[index][1] += row["failures"]
    return [Bucket(since + window.bucket * i, requests, failed) for i, (requests, failed) in enumerate(counts)]


def _upstreams(logs: QuerySet[RequestLog], ttfbs: dict[str, list[float]]) -> list[UpstreamStats]:
    """Each upstream's requests and failures: as the one that answered, and as a failed try before another.

    A request that failed over from A to B counts once for B (its outcome) and once, failed,
    for A: A's error rate shows what its clients never saw.
    """
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in logs.exclude(upstream_name="").values("upstream_name").annotate(
            requests=Count("pk"), failures=Count("pk", filter=FAILED)):
        counts[row["upstream_name"]] = [row["requests"], row["failures"]]
    for attempts in logs.exclude(failed_over="").values_list("attempts", flat=True):
        for attempt in attempts or []:
            name = attempt.get("upstream") if isinstance(attempt, dict) else None
            if name:
                counts[name][0] += 1
                counts[name][1] += 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1][0], item[0]))
    return [UpstreamStats(name=name, requests=requests, failed=failed, error_rate=failed / requests,
                          p50_ttfb=percentile(ttfbs.get(name, []), 50),
                          p95_ttfb=percentile(ttfbs.get(name, []), 95)) for name, (requests, failed) in ranked]


def _keys(logs: QuerySet[RequestLog]) -> list[KeyStats]:
    rows = (logs.values("key_name").annotate(requests=Count("pk"), input_tokens=Sum("input_tokens"),
                                             output_tokens=Sum("output_tokens"),
                                             reasoning_tokens=Sum("reasoning_tokens")))
    stats = [KeyStats(name=r["key_name"], requests=r["requests"], input_tokens=r["input_tokens"] or 0,
                      output_tokens=r["output_tokens"] or 0, reasoning_tokens=r["reasoning_tokens"] or 0)
             for r in rows]
    return sorted(stats, key=lambda k: (-k.tokens, -k.requests, k.name))[:TOP_KEYS]


def _errors(logs: QuerySet[RequestLog]) -> list[ErrorStats]:
    failed = logs.filter(FAILED)
    groups = (failed.values("outcome", "error_type", "upstream_name")
              .annotate(count=Count("pk"), last_seen=Max("started")).order_by("-count", "-last_seen")[:TOP_ERRORS])
    errors = []
    for group in groups:
        newest = (failed.filter(outcome=group["outcome"], error_type=group["error_type"],
                                upstream_name=group["upstream_name"])
                  .order_by("-started").values_list("error_message", flat=True).first())
        errors.append(ErrorStats(outcome=group["outcome"], error_type=group["error_type"],
                                 upstream=group["upstream_name"], count=group["count"],
                                 last_seen=group["last_seen"], message=newest or ""))
    return errors


def overview(window: Window, now: datetime | None = None) -> Overview:
    """Return everything the overview page draws for ``window``."""
    now = now or wall_now()
    logs = _in_window(window, now)
    ttfbs, sampled = _ttfb_sample(logs)
    return Overview(totals=_totals(window, logs, ttfbs), since=now - window.span, until=now,
                    buckets=traffic(window, now), upstreams=_upstreams(logs, ttfbs), keys=_keys(logs),
                    errors=_errors(logs), sampled=sampled)


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
