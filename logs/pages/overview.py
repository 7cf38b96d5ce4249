"""The overview page (``/logs/stats/``) and its JSON: totals, traffic, failures, upstreams and keys of a window.

Each request counts once for each upstream it reached, with its outcome there: the upstream
the row names has the row's outcome, and each upstream it failed over from has an upstream
failure (docs/audit.md §2). Each figure carries the list link of the rows it counts.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Max, Q, QuerySet

from logs.models import FAULT_OF_OUTCOME, Outcome, RequestLog
from logs.pages.stats import FAILED, REACHED, Bucket, Scope, Totals, Window, percentile, totals_of, traffic, ttfb_sample
from logs.pages.usage import NO_KEY, KeyUsage, per_key

TOP_KEYS = 20
TOP_ERRORS = 20


@dataclass(frozen=True)
class UpstreamStats:
    name: str
    requests: int  # requests that reached it: answered by it, failed there, or failed over from it
    failed: int  # upstream failures there: its own, and the tries that failed over to another
    failovers: int  # requests that failed there and moved to another upstream
    error_rate: float
    p50_ttfb: float | None
    p95_ttfb: float | None
    link: str = ""
    failed_link: str = ""


@dataclass(frozen=True)
class ErrorStats:
    outcome: str
    fault: str
    error_type: str
    upstream: str
    key: str
    model: str
    count: int
    last_seen: datetime
    message: str  # the newest one
    link: str = ""


@dataclass(frozen=True)
class Overview:
    totals: Totals
    since: datetime
    until: datetime
    buckets: list[Bucket]
    upstreams: list[UpstreamStats]
    keys: list[KeyUsage]  # most tokens first
    errors: list[ErrorStats]
    sampled: bool  # percentiles came from the newest PERCENTILE_SAMPLE rows only


def upstream_stats(scope: Scope, logs: QuerySet[RequestLog], ttfbs: dict[str, list[float]]) -> list[UpstreamStats]:
    """Each upstream's requests and upstream failures there: once per upstream a request reached.

    The upstream a row names counts it with the row's outcome; each upstream it failed over
    from counts it once more, as a failure: that error rate shows what its clients never saw.
    """
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # requests, failed, failovers
    for row in logs.filter(REACHED).values("upstream_name").annotate(
            requests=Count("pk"), failures=Count("pk", filter=Q(outcome=Outcome.UPSTREAM_ERROR))).order_by():
        counts[row["upstream_name"]][:2] = [row["requests"], row["failures"]]
    for moved in logs.exclude(failed_over="").values_list("failed_over", flat=True):
        for name in filter(None, moved.split(",")):
            for n in range(3):
                counts[name][n] += 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1][0], item[0]))
    return [UpstreamStats(name=name, requests=requests, failed=failed, failovers=failovers,
                          error_rate=failed / requests, p50_ttfb=percentile(ttfbs.get(name, []), 50),
                          p95_ttfb=percentile(ttfbs.get(name, []), 95), link=scope.link(upstream=name),
                          failed_link=scope.link(upstream=name, outcome=Outcome.UPSTREAM_ERROR))
            for name, (requests, failed, failovers) in ranked]


ERROR_COLUMNS = ("outcome", "error_type", "upstream_name", "key_name", "model")


def _errors(scope: Scope, logs: QuerySet[RequestLog]) -> list[ErrorStats]:
    """The failures, grouped by outcome, error, upstream, key and model: most frequent first, newest message each."""
    failed = logs.filter(FAILED)
    groups = (failed.values(*ERROR_COLUMNS).annotate(count=Count("pk"), last_seen=Max("started"))
              .order_by("-count", "-last_seen")[:TOP_ERRORS])
    errors = []
    for group in groups:
        same = failed.filter(**{name: group[name] for name in ERROR_COLUMNS})
        newest = same.order_by("-started").values_list("error_message", flat=True).first()
        outcome = group["outcome"]
        fault = FAULT_OF_OUTCOME.get(Outcome(outcome)) if outcome in Outcome.values else None
        errors.append(ErrorStats(
            outcome=outcome, fault=str(fault or ""), error_type=group["error_type"], upstream=group["upstream_name"],
            key=group["key_name"], model=group["model"], count=group["count"], last_seen=group["last_seen"],
            message=newest or "",
            link=scope.link(outcome=outcome, error=group["error_type"] or NO_KEY, upstream=group["upstream_name"]
                            or NO_KEY, key=group["key_name"] or NO_KEY, model=group["model"] or NO_KEY)))
    return errors


def overview(window: Window, now: datetime | None = None) -> Overview:
    """Return everything the overview page draws for ``window``."""
    scope = Scope.of(window, now)
    logs = scope.rows()
    ttfbs, sampled = ttfb_sample(logs)
    return Overview(totals=totals_of(scope, logs, ttfbs), since=scope.since, until=scope.until,
                    buckets=traffic(window, scope.until), upstreams=upstream_stats(scope, logs, ttfbs),
                    keys=per_key(scope, logs)[:TOP_KEYS], errors=_errors(scope, logs), sampled=sampled)


def _plain(value: Any) -> Any:
    """Return ``value`` as JSON takes it: dataclasses as objects, times as ISO 8601."""
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def as_json(view: Overview) -> dict[str, Any]:
    """Return the overview as ``/logs/stats/?format=json`` serves it: every figure, with the link of its rows."""
    data: dict[str, Any] = _plain(view)
    window = view.totals.window
    data["window"] = {"name": window.name, "label": window.label, "seconds": window.span.total_seconds(),
                      "bucket_seconds": window.bucket.total_seconds()}
    data["totals"].pop("window", None)
    for key, usage in zip(data["keys"], view.keys, strict=True):
        key["tokens"], key["page"] = usage.tokens, usage.page
    return data
