"""daphne's access log without query strings: a key pasted into a URL must not land on stdout.

daphne writes its NCSA-style access log itself (``daphne.access.AccessLogGenerator``), to
stdout, outside Python's logging and so outside the redacting filter
(plumbing/redact.py). The gateway takes no parameter worth logging in a query string
(pagination cursors at most), and a client that puts its key there (``?api_key=sk-...``)
would have it written in clear. So the query is cut from every access-log line: the path
stays, followed by ``?…`` when there was one.
"""
from __future__ import annotations

from typing import Any


def without_query(path: str) -> str:
    """Return ``path`` with its query string replaced by ``?…``."""
    head, sep, _ = path.partition("?")
    return f"{head}?…" if sep else path


# What this patch wraps (checked by plumbing/patches/__init__.py before anything is patched).
TARGETS = (("daphne.access", "AccessLogGenerator", ("__call__",)),)


def install() -> None:
    """Make daphne's access log leave query strings out (only when daphne serves this process)."""
    from daphne.access import AccessLogGenerator

    if getattr(AccessLogGenerator, "_gateway_quiet", False):
        return
    logged = AccessLogGenerator.__call__

    def call(self: AccessLogGenerator, protocol: str, action: str, details: dict[str, Any]) -> None:
        if isinstance(details.get("path"), str):
            details = {**details, "path": without_query(details["path"])}
        logged(self, protocol, action, details)

    AccessLogGenerator.__call__ = call
    AccessLogGenerator._gateway_quiet = True
