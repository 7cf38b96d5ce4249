"""The site's front door, outside /logs/: ``GET /`` and ``/favicon.ico``.

Without them ``/`` fell through to the API's JSON 404 and every browser's ``/favicon.ico`` was
a 404 too. Staff who open the bare host want the request log; anyone else (a browser, curl, a
client pointed at the host without ``/v1``) is told where the API is.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_safe

ICON = Path(__file__).resolve().parent.parent / "static" / "logs" / "favicon.svg"
API = {
    "service": "codex-gateway",
    "api": "/v1",
    "endpoints": ["POST /v1/responses", "POST /v1/chat/completions", "GET /v1/models"],
    "request_log": "/logs/",
    "health": "/healthz",
}


@require_safe
def home(request: HttpRequest) -> HttpResponseBase:
    """Staff go to the request log; others learn where the API is, as HTML for a browser and JSON for a client."""
    if request.user.is_authenticated and request.user.is_staff:
        return redirect("logs:list")
    if "text/html" in request.headers.get("Accept", ""):
        response: HttpResponseBase = render(request, "logs/home.html", {"api": API})
    else:
        response = JsonResponse(API)
    patch_vary_headers(response, ["Accept"])
    return response


@cache
def _icon() -> bytes:
    return ICON.read_bytes()


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """The icon browsers ask every site for (the pages link the same SVG from static files)."""
    return HttpResponse(_icon(), content_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})
