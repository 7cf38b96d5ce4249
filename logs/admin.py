"""The request log in the admin: read-only, filtered and searchable (the fuller UI is /logs/)."""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from logs.models import RequestLog


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    list_display = ["started", "request_id", "key_name", "endpoint", "model", "upstream_name", "mode",
                    "status", "outcome", "ttfb_ms", "duration_ms", "input_tokens", "output_tokens"]
    list_filter = ["outcome", "mode", "endpoint", "stream", "upstream_name", "status"]
    search_fields = ["request_id", "model", "key_name", "error_message"]
    date_hierarchy = "started"
    list_per_page = 100

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
