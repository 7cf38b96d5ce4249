"""Probes and metrics for operators: ``/healthz`` (liveness), ``/readyz`` (database and Redis), ``/metrics``.

Served through Django's handler like the admin (gatewaysite/urls.py), not by the API app:
they take no client key and leave no audit row.
"""
from __future__ import annotations

import hmac

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from api.http.errors import error_response
from bridge.errors import AuthenticationError
from plumbing import metrics
from upstreams.routing import ROUTING


async def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus metrics: open, unless GATEWAY_METRICS_TOKEN asks scrapers for that bearer token."""
    token = settings.GATEWAY_METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            response = error_response(AuthenticationError("/metrics needs 'Authorization: Bearer <token>' "
                                                          "(GATEWAY_METRICS_TOKEN)."))
            response["www-authenticate"] = 'Bearer realm="metrics"'
            return response
    body, content_type = metrics.render()
    return HttpResponse(body, content_type=content_type)


async def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


async def readyz(request: HttpRequest) -> HttpResponse:
    checks: dict[str, str] = {}
    try:
        await sync_to_async(_ping_database)()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    if settings.REDIS_URL:
        from django.core.cache import cache

        try:
            await cache.aset("readyz", "1", 5)
            checks["redis"] = "ok" if await cache.aget("readyz") == "1" else "error: no value"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    stale = ROUTING.stale_for
    if stale is not None:  # serving from the last good copy: known keys work, new ones get 503
        checks["routing"] = f"degraded: copy {stale:.0f}s old (database unavailable)"
    ready = all(v == "ok" for v in checks.values())
    status = "ok" if ready else ("degraded" if stale is not None else "unavailable")
    return JsonResponse({"status": status, "checks": checks}, status=200 if ready else 503)


def _ping_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
