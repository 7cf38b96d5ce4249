"""The request log in the admin: its entry on the admin's index leads to /logs/ (one request log, not two viewers)."""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from logs.models import RequestLog


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
