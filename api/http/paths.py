"""Which paths the API answers: ``/v1/...``, the same without ``/v1``, and a JSON 404 for the rest.

A client configured with ``base_url = "http://host:8000"`` (no ``/v1``) sends
``/responses``: Django answered it with 3 KB of HTML, which Codex printed as its error
(issue 13). Those paths are served as their ``/v1`` twins, and a path nothing serves gets
an OpenAI-shaped 404 that lists the paths that exist. The list is read from
``api/urls.py``, the one place they are written.
"""
from __future__ import annotations

import re
from functools import cache

from django.conf import settings
from django.urls import Resolver404, get_resolver, resolve

API_PREFIX = "/v1/"
API_URLCONF = "api.urls"  # the one list of the API's paths
# The first segment of each API path: what a path without /v1 may start with.
_ROOTS = ("responses", "chat", "conversations", "models")
# What Django serves itself: the pages, the probes, static files.
_PAGES = ("/admin", "/logs", "/healthz", "/readyz", "/metrics", "/ws/")


def api_path(path: str) -> str | None:
    """Return the ``/v1/`` path that serves ``path``, or None when it is not an API path."""
    if path.startswith(API_PREFIX):
        return path
    root = path[1:].split("/", 1)[0]
    return f"/v1{path}" if root in _ROOTS else None


def unserved(path: str) -> bool:
    """Whether nothing at all serves ``path`` (not the API, not Django's pages or static files)."""
    if path.startswith(_PAGES) or path.startswith("/" + settings.STATIC_URL.lstrip("/")):
        return False
    for candidate in (path, path.rstrip("/") + "/"):  # Django's APPEND_SLASH redirects the second
        try:
            resolve(candidate)
            return False
        except Resolver404:
            continue
    return True


@cache
def served_paths() -> tuple[str, ...]:
    """The API's paths as a client writes them: ``/v1/responses/{response_id}``...

    Read from the API's URL conf by its name, as Django includes it (``include("api.urls")``),
    not imported: it imports the views, which import this module.
    """
    patterns = get_resolver(API_URLCONF).url_patterns
    paths = [re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern)) for pattern in patterns]
    return tuple(f"/{p}" for p in paths if p.startswith("v1/"))


def unknown_path_message(path: str) -> str:
    return f"Unknown API path: {path}. The gateway serves: {', '.join(served_paths())}."
