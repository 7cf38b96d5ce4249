"""The request log in the admin: its entry leads to /logs/, and the upstream list shows each upstream's health.

One request log, not two viewers; and the figures staff need when something fails are on the
list they look at first (the upstreams app sits below the request log, so they are added here).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

from logs.models import Outcome, RequestLog
from logs.pages.overview import UpstreamStats, upstream_stats
from logs.pages.stats import WINDOWS, Scope, ttfb_sample
from upstreams.admin import UpstreamAdmin
from upstreams.models import Upstream


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    """Listed on the admin's index (staff look for it there); its list and its rows open /logs/'s pages.

    The admin's own changelist was a second, poorer viewer of the same rows: no timeline, no
    failover, no sessions, no live tail.
    """

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The request log's list, /logs/."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(reverse("logs:list"))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The row's page on /logs/ (/logs/<request_id>/)."""
        log = self.get_object(request, unquote(object_id))
        if log is None:
            raise Http404("No request log with this id.")
        if not self.has_view_permission(request, log):
            raise PermissionDenied
        return HttpResponseRedirect(log.get_absolute_url())


@dataclass(frozen=True)
class Health:
    """An upstream's last 24 hours as its admin row shows them (logs.pages.overview's figures)."""

    stats: UpstreamStats | None
    last_error: RequestLog | None
    last_code: str


class UpstreamHealthAdmin(UpstreamAdmin):
    """The upstream list with the request log's figures: where staff look when something fails.

    Its requests and error rate over the last 24 hours (counted as the overview counts them,
    failovers away from it included) and its last error, each linked to the rows behind it.
    Worked out once per page, for the upstreams on it.
    """

    list_display = ["name", "enabled", "health", "last_error", "mode", "priority", "base_url", "models"]

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        scope = Scope.of(WINDOWS["day"])
        logs = scope.rows()
        figures = {s.name: s for s in upstream_stats(scope, logs, ttfb_sample(logs)[0])}
        for upstream in changelist.result_list:
            failed_here = Q(upstream_name=upstream.name, outcome=Outcome.UPSTREAM_ERROR) | Q(
                failed_over__contains=f",{upstream.name},")
            last = logs.filter(failed_here).order_by("-started").only(
                "request_id", "started", "upstream_name", "error_type", "attempts").first()
            code = ""
            if last is not None:
                code = last.error_type if last.upstream_name == upstream.name else next(
                    (str(a.get("code")) for a in last.attempts if a.get("upstream") == upstream.name), "")
            upstream.health = Health(figures.get(upstream.name), last, code)
        return changelist

    @admin.display(description="Last 24 h")
    def health(self, obj: Upstream) -> str:
        """Requests that reached it and its upstream error rate, linked to those rows; its cool-down, if any."""
        health: Health | None = getattr(obj, "health", None)
        cooling = self.cooling_down(obj)
        cooled = format_html('<br><span class="errornote">cooling down: {}</span>', cooling) if cooling != "—" else ""
        if health is None or health.stats is None:
            return format_html("—{}", cooled)
        stats = health.stats
        rate = format_html('<br><a href="{}">{} failed</a>', stats.failed_link,
                           f"{stats.error_rate * 100:.1f}%") if stats.failed else mark_safe("<br>no failures")
        return format_html('<a href="{}">{} request{}</a>{}{}', stats.link, stats.requests,
                           pluralize(stats.requests), rate, cooled)

    @admin.display(description="Last error")
    def last_error(self, obj: Upstream) -> str:
        health: Health | None = getattr(obj, "health", None)
        if health is None or health.last_error is None:
            return "—"
        row = health.last_error
        code = health.last_code or "error"
        return format_html('<a href="{}" title="{}: {}"><code>{}</code><br>{} ago</a>', row.get_absolute_url(),
                           code, row.started.isoformat(), code if len(code) <= 22 else code[:21] + "…",
                           timesince(row.started, depth=1))


admin.site.unregister(Upstream)
admin.site.register(Upstream, UpstreamHealthAdmin)
