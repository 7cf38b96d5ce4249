"""ASGI entry point: ``daphne gatewaysite.asgi:application``.

HTTP goes to Django; the ProtocolTypeRouter leaves room for WebSockets (the live log tail).
"""
from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatewaysite.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402  (needs Django set up)
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from gatewaysite.limits import BodyLimitMiddleware  # noqa: E402
from gatewaysite.shutdown import graceful  # noqa: E402
from upstreams.bootstrap import on_server_start  # noqa: E402

on_server_start()

# Admin static files: Django's async handler, only for STATIC_URL paths. WhiteNoise's
# middleware is sync-only and would push every API request through sync adapters.
http_app = ASGIStaticFilesHandler(django_asgi_app)
application = ProtocolTypeRouter({"http": BodyLimitMiddleware(http_app, settings.GATEWAY_MAX_BODY_BYTES)})
application = graceful(application)  # SIGTERM: finish in-flight requests, write their rows, exit
