"""The request log UI: the list with its filters and live tail, one request's detail, the overview, CSV, usage.

Staff only (issue 5): anonymous visitors go to the admin login, others get 403.
"""
from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.safestring import SafeString
from django.utils.timezone import now as wall_now

from logs.models import Fault, Recording, RequestLog, Transport
from logs.pages import charts, overview, spend, stats, usage
from logs.pages.curl import as_curl
from logs.pages.filters import OUTCOME_CHOICES, LogFilter
from logs.recording.fixtures import Recorded
from state.models import StoredResponse
from upstreams.models import ClientKey, Team, Upstream

PER_PAGE = 50
SUMMARY_WINDOWS = ("hour", "day")  # the list's summary: the last hour and day
CSV_FIELDS = ["started", "finished", "request_id", "key_name", "client_ip", "endpoint", "model", "upstream_name",
              "upstream_model", "mode", "transport", "stream", "status", "upstream_status", "outcome", "error_type",
              "error_message", "connected_ms", "ttfb_ms", "duration_ms", "input_tokens", "output_tokens",
              "reasoning_tokens", "cached_tokens", "tool_calls", "request_bytes", "response_bytes", "request_kind",
              "session_id", "notes", "presented_key", "failed_over", "attempts"]
# Spreadsheets run a cell that starts with one of these as a formula; request ids and error
# messages come from clients and upstreams, so such cells are quoted (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# What logs/_row.html reads: any other field would cost one query per row.
KINDS = ["turn", "compaction", "prewarm"]  # Codex's request kinds (logs/audit/client.py), offered as a filter
LIST_COLUMNS = ["started", "request_id", "key_name", "endpoint", "transport", "model", "upstream_model",
                "upstream_name", "mode", "status", "outcome", "error_type", "error_message", "ttfb_ms", "duration_ms",
                "input_tokens", "output_tokens", "request_kind", "session_id", "failed_over", "attempts",
                "presented_key"]


def staff_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Let staff through; send anonymous visitors to the admin login and refuse everyone else."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not request.user.is_staff:
            raise PermissionDenied("The request log is for staff only.")
        return view(request, *args, **kwargs)

    return wrapper


def _choices(filters: LogFilter) -> dict[str, list[Any]]:
    """Return the values the filter form offers: configured upstreams and keys, recent models."""
    day_ago = wall_now() - timedelta(days=1)
    recent = RequestLog.objects.filter(started__gte=day_ago).exclude(model="")
    models = list(recent.order_by("model").values_list("model", flat=True).distinct()[:200])
    upstreams = sorted(set(Upstream.objects.values_list("name", flat=True)) | {filters.upstream} - {""})
    keys = sorted(set(ClientKey.objects.values_list("name", flat=True)) | {filters.key} - {""})
    return {"models": models, "upstreams": upstreams, "keys": keys, "transports": list(Transport.values),
            "kinds": KINDS, "faults": Fault.choices}


@staff_required
def log_list(request: HttpRequest) -> HttpResponse:
    filters = LogFilter.from_query(request.GET)
    logs = filters.apply(RequestLog.objects.only(*LIST_COLUMNS))
    page = Paginator(logs, PER_PAGE).get_page(request.GET.get("page"))
    summary = _summary()
    sparkline = charts.traffic(stats.traffic(stats.WINDOWS["hour"]), width=300, height=44, compact_axis=True)
    return render(request, "logs/list.html", {
        "page": page, "filters": filters, "summary": summary, "sparkline": sparkline,
        "outcomes": OUTCOME_CHOICES, "choices": _choices(filters), "section": "list",
    })


def _summary() -> list[stats.Totals]:
    return [stats.totals(stats.WINDOWS[name]) for name in SUMMARY_WINDOWS]


@staff_required
def log_summary(request: HttpRequest) -> HttpResponse:
    """The list's summary table alone: the live tail reloads it as rows arrive, so its counts stay current."""
    return render(request, "logs/_summary.html", {"summary": _summary()})


@staff_required
def log_detail(request: HttpRequest, request_id: str) -> HttpResponse:
    log = get_object_or_404(RequestLog, request_id=request_id)
    stored = StoredResponse.objects.filter(request_id=log.request_id).only("id", "status", "depth").first()
    curl = as_curl(log, request.build_absolute_uri("/"))
    recording = Recording.objects.for_log(log)
    return render(request, "logs/detail.html", {
        "recording": recording,
        "curl": curl[0] if curl else None, "curl_whole": bool(curl and curl[1]),
        "log": log, "timeline": charts.timeline(log), "capture_on": settings.GATEWAY_LOG_BODIES,
        "stored": stored, "lineage": StoredResponse.objects.lineage(stored.pk)[1:] if stored else [],
        "headers": sorted(log.passed_headers.items()) if isinstance(log.passed_headers, dict) else [],
        "section": "list",
    })


@staff_required
def log_session(request: HttpRequest, session_id: str) -> HttpResponse:
    """One client session (Codex's thread): its requests in order, with tokens, timings and compactions."""
    turns = list(RequestLog.objects.filter(session_id=session_id).order_by("started"))
    if not turns:
        raise Http404("No request of this session is in the log.")
    return render(request, "logs/session.html", {
        "session_id": session_id, "turns": turns, "summary": stats.session_summary(turns), "section": "list",
    })


@staff_required
def log_recording(request: HttpRequest, request_id: str) -> HttpResponse:
    """The request's flight recording as a test fixture (``manage.py exportfixture`` writes the same file)."""
    log = get_object_or_404(RequestLog, request_id=request_id)
    recording = Recording.objects.for_log(log)
    if recording is None:
        raise Http404("This request was not recorded.")
    recorded = Recorded.from_row(recording)
    return HttpResponse(recorded.fixture_bytes(), content_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="{recorded.file_name}"'})


@staff_required
def log_stats(request: HttpRequest) -> HttpResponse:
    """The overview of a window; ``?format=json``: the same figures for scripts, each with its rows' link."""
    window = stats.window_named(request.GET.get("window"))
    view = overview.overview(window)
    if request.GET.get("format") == "json":
        return JsonResponse(overview.as_json(view), json_dumps_params={"ensure_ascii": False})
    return render(request, "logs/stats.html", {
        "overview": view, "window": window, "windows": stats.WINDOWS.values(),
        "traffic": charts.traffic(view.buckets), "ttfb": charts.ttfb(view.upstreams),
        "tokens": charts.tokens(view.keys), "section": "stats",
        "traffic_legend": charts.legend(("bar-ok", "succeeded"), ("bar-failed", "failed")),
        "ttfb_legend": charts.legend(("bar-p50", "p50"), ("bar-p95", "p95")),
        "tokens_legend": charts.legend(("bar-input", "input"), ("bar-output", "output")),
        "sample_size": stats.PERCENTILE_SAMPLE,
    })


@staff_required
def log_key(request: HttpRequest, name: str) -> HttpResponse:
    """One client key's use: its figures over each window, its cost and budget, its tokens over time, its models.

    Served at /logs/keys/<name>/ and /logs/usage/keys/<name>/ alike.
    """
    window = stats.window_named(request.GET.get("window") or "day")
    at = wall_now()
    page = usage.key_page(name, window, at)
    key = ClientKey.objects.filter(name=name).select_related("team").order_by("-pk").first()
    if not page.windows[-1].requests and key is None:
        raise Http404("No key of this name, and no request from one in the last 30 days.")
    return render(request, "logs/key.html", {
        "page": page, "window": window, "windows": stats.WINDOWS.values(), "section": "usage",
        "chart": _token_chart(page), "key": key, "spend": spend.spend_of(key, at) if key else None,
    })


def _token_chart(page: usage.KeyPage) -> SafeString:
    return charts.traffic([stats.Bucket(bar.start, bar.tokens, bar.failed) for bar in page.buckets], unit="tokens")


@staff_required
def log_team(request: HttpRequest, name: str) -> HttpResponse:
    """One team's use, as a key's page shows a key's (the rows that counted against the team), and its keys' spend."""
    team = get_object_or_404(Team, name=name)
    window = stats.window_named(request.GET.get("window") or "day")
    at = wall_now()
    page = usage.team_page(team.pk, team.name, window, at)
    return render(request, "logs/team.html", {
        "page": page, "window": window, "windows": stats.WINDOWS.values(), "section": "usage",
        "chart": _token_chart(page), "team": team, "spend": spend.spend_of(team, at),
        "keys": spend.key_spenders(stats.Scope.of(window, at), at, team),
    })


def _spenders(request: HttpRequest) -> tuple[stats.Window, stats.Scope, list[spend.Spender], list[spend.Spender]]:
    """The usage page's (and its CSV's) window, and its keys and teams."""
    window = stats.window_named(request.GET.get("window") or "month")
    at = wall_now()
    scope = stats.Scope.of(window, at)
    return window, scope, spend.key_spenders(scope, at), spend.team_spenders(scope, at)


@staff_required
def log_usage(request: HttpRequest) -> HttpResponse:
    """Every key's and team's requests, tokens and cost in a window, beside its budget this period."""
    window, scope, keys, teams = _spenders(request)
    total = usage.usage_of(scope, "", scope.rows().aggregate(**usage.SUMS), linked=False)
    return render(request, "logs/usage.html", {
        "window": window, "windows": stats.WINDOWS.values(), "scope": scope, "total": total, "keys": keys,
        "teams": teams, "section": "usage",
    })


@staff_required
def log_usage_csv(request: HttpRequest) -> HttpResponse:
    """The usage page as CSV: a line per key, then per team (``kind``), the window's figures and this period's spend."""
    window, _scope, keys, teams = _spenders(request)
    name = f"usage-{window.name}-{wall_now():%Y%m%d-%H%M%S}.csv"
    response = HttpResponse(content_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})
    writer = csv.writer(response)
    writer.writerow(spend.CSV_FIELDS)
    for spender in (*keys, *teams):
        writer.writerow([_cell(value) for value in spend.csv_row(spender)])
    return response


class _Echo:
    """A file whose write returns the line: csv.writer then yields text without a buffer."""

    def write(self, value: str) -> str:
        return value


def _cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, float):
        return round(value, 1)
    if isinstance(value, list):  # the attempts: each failed try's upstream, address, error code, status and time
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else value


async def _csv_rows(logs: Any) -> AsyncIterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_FIELDS)
    # values(), not values_list(): Django 5.2's aiterator() runs a values_list() query in the
    # event loop's thread and raises SynchronousOnlyOperation.
    async for row in logs.values(*CSV_FIELDS).aiterator(chunk_size=2000):
        yield writer.writerow([_cell(row[name]) for name in CSV_FIELDS])


@staff_required
def log_csv(request: HttpRequest) -> StreamingHttpResponse:
    """Stream every row the filters match, newest first: an export is not limited to one page."""
    filters = LogFilter.from_query(request.GET)
    logs = filters.apply(RequestLog.objects.order_by("-started"))
    name = f"request-log-{wall_now():%Y%m%d-%H%M%S}.csv"
    return StreamingHttpResponse(_csv_rows(logs), content_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="{name}"'})
