"""ASGI entry point: ``daphne gatewaysite.asgi:application``; composition only.

HTTP goes to the API app (/v1/, api/http/app.py) or Django (everything else); WebSockets to the
request log's live tail (staff sessions, same-origin pages only: host and port). Around both: the body
limit and the SIGTERM drain (plumbing/); under daphne, plumbing/patches/ is installed first.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatewaysite.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

from api.background import run  # noqa: E402
from api.budgets import admission as budgets  # noqa: E402
from api.http.app import ApiApp, is_api  # noqa: E402
from api.http.paths import api_path  # noqa: E402
from api.http.refusals import record_refusal  # noqa: E402
from api.socket import ResponsesSocket  # noqa: E402
from logs.audit import writer  # noqa: E402
from logs.pages.live import LogTailConsumer  # noqa: E402
from logs.recording import recorder  # noqa: E402
from plumbing import patches  # noqa: E402
from plumbing.asgitypes import Receive, Scope, Send  # noqa: E402
from plumbing.limits import BodyLimitMiddleware  # noqa: E402
from plumbing.origin import SameOriginWebSockets  # noqa: E402
from plumbing.shutdown import SHUTDOWN, ShutdownMiddleware, graceful  # noqa: E402
from upstreams.bootstrap import on_server_start  # noqa: E402

on_server_start()
if settings.GATEWAY_JOURNAL_DIR:  # and write what dead processes left in theirs
    writer.WRITER.open_journal(Path(settings.GATEWAY_JOURNAL_DIR))
if "daphne.server" in sys.modules:  # served by daphne: what daphne does itself, made fit for production
    patches.install(max_body_bytes=settings.GATEWAY_MAX_BODY_BYTES, header_timeout=settings.GATEWAY_HEADER_TIMEOUT,
                    on_refused=record_refusal, shutdown=SHUTDOWN, grace=settings.GATEWAY_SHUTDOWN_GRACE,
                    allow_untested=settings.GATEWAY_ALLOW_UNTESTED_SERVER)

# Admin static files: Django's async handler, only for STATIC_URL paths. WhiteNoise's
# middleware is sync-only and would push every API request through sync adapters.
http_app = ASGIStaticFilesHandler(django_asgi_app)
# The live tail's socket is checked like the pages: the Origin must be one of ALLOWED_HOSTS (no
# other site's page can open it with the staff member's cookie), then the session must be staff's.
live_tail = SameOriginWebSockets(AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter([
    path("ws/logs/", LogTailConsumer.as_asgi()),
]))))
# /v1/ is served by ApiApp, past Django's request handler (see api/http/app.py).
api_http = BodyLimitMiddleware(ApiApp(http_app), settings.GATEWAY_MAX_BODY_BYTES)
# The Responses WebSocket (/v1/responses, or /responses) takes an API key, not a session: each
# response.create is answered by the same API app, counted by the drain like any request.
responses_socket = ResponsesSocket.as_asgi(api=ShutdownMiddleware(api_http, SHUTDOWN, refuses_itself=is_api))


async def websocket_app(scope: Scope, receive: Receive, send: Send) -> None:
    if api_path(scope["path"]) == "/v1/responses":
        return await responses_socket(scope, receive, send)
    return await live_tail(scope, receive, send)


application = ProtocolTypeRouter({
    "http": api_http,
    "websocket": websocket_app,
})
# SIGTERM: finish in-flight requests, write their audit rows, exit. The API refuses its own
# requests while draining, so that each refused one still leaves its audit row.

BACKGROUND_WAIT = 2.0  # seconds; the flush as a whole has 10 (plumbing/shutdown.py's AUDIT_WAIT)


async def flush() -> None:
    """What a drain waits for once the requests are done: background responses, budgets, audit rows, recordings.

    Background responses get a short while more (they ran through the grace too), then end
    as failed (shutting_down), stored, so that no client polls one that never ends. The
    budgets' last settles reach Redis before the process goes (api/budgets/admission.py).
    """
    await run.end_all(timeout=BACKGROUND_WAIT)
    await budgets.settled()
    await writer.close()
    await recorder.wait_saved()


application = graceful(application, flush=flush, refuses_itself=is_api)
