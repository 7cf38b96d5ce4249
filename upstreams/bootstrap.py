"""What the server does once at start: sync the env-configured upstream, warn about risky settings."""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError

from upstreams.models import Upstream

logger = logging.getLogger(__name__)

DEFAULT_UPSTREAM = "default"


def sync_env_upstream() -> Upstream | None:
    """Create or update the ``default`` upstream from ``UPSTREAM_*``; idempotent.

    Only the fields the environment names are written, so admin edits to the others
    (priority, compatibility switches) survive restarts.
    """
    if not settings.UPSTREAM_BASE_URL:
        return None
    upstream, created = Upstream.objects.update_or_create(
        name=DEFAULT_UPSTREAM,
        defaults={
            "base_url": settings.UPSTREAM_BASE_URL,
            "api": settings.UPSTREAM_API,
            "api_key": settings.UPSTREAM_API_KEY,
            "enabled": True,
        },
    )
    logger.info("%s upstream %r from UPSTREAM_BASE_URL", "created" if created else "updated", upstream.name)
    return upstream


def on_server_start() -> None:
    if settings.GATEWAY_ALLOW_ANONYMOUS:
        logger.warning("GATEWAY_ALLOW_ANONYMOUS is on: requests without a client key are served")
    try:
        sync_env_upstream()
    except DatabaseError as exc:
        # A server started before `migrate` must still come up and answer /healthz.
        logger.error("could not sync the env upstream (run `manage.py migrate`): %s", exc)
