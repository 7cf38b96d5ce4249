"""Send API requests straight to their view, past the middleware the admin and the UI need.

Django's stock middleware is sync: under ASGI each of its hooks costs a hop to the one
thread that runs sync code, about a dozen per request, and that thread becomes the queue
every request waits in (bench/: 69 req/s for chat passthrough at concurrency 50, against
286 for a bare relay). The API views need none of it: they take no cookies, no session
and no CSRF token, and they answer every error themselves (bridge/decorators.py).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.urls import Resolver404, resolve

from bridge.decorators import error_response
from bridge.errors import InvalidRequestError

API_PREFIX = "/v1/"


class ApiFastPath:
    """First in MIDDLEWARE: resolve ``/v1/...`` and await its async view directly."""

    async_capable = True
    sync_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info.startswith(API_PREFIX):
            try:
                match = resolve(request.path_info)
            except Resolver404:
                error = InvalidRequestError(f"Unknown API path: {request.path_info}", code="unknown_url", status=404)
                return error_response(error)
            response = await match.func(request, *match.args, **match.kwargs)
            # What SecurityMiddleware would have added to an API answer.
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            return response
        return await self.get_response(request)
