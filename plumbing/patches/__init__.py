"""What daphne, Twisted and autobahn lack for production, patched in: every monkeypatch of the gateway is here.

    accesslog     daphne's access log without query strings (a key pasted into a URL stays out of stdout)
    backpressure  an ASGI send() that waits while the client is not reading (HTTP and WebSocket)
    intake        the body limit answered before the body is read, and a deadline for request headers
    signals       SIGTERM starts the drain (plumbing/shutdown.py) instead of stopping the reactor at once
    websocket     upgrade refusals with the API's status and body; messages as large as a request body

A patch replaces methods of classes it does not own, and an upgrade could silently take
back-pressure, the body limit or the header deadline away: so ``install()`` first checks
that the installed daphne, Twisted and autobahn are the versions these patches were
tested with (TESTED, pinned in requirements.txt) and refuses to start otherwise, naming
them. ``GATEWAY_ALLOW_UNTESTED_SERVER=true`` starts anyway (a warning is logged), for
someone who has checked a new version; even then, a method a patch wraps that is no longer
there stops the start (each patch lists its ``TARGETS``).
"""
from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version

from django.core.exceptions import ImproperlyConfigured

from plumbing.patches import accesslog, backpressure, intake, signals, websocket
from plumbing.patches.intake import Hook
from plumbing.shutdown import Shutdown

logger = logging.getLogger("gateway")

# The versions every patch here was written and tested against (requirements.txt pins them).
TESTED = {"daphne": "4.2.3", "Twisted": "26.10.0", "autobahn": "26.11.1"}
PATCHES = (accesslog, backpressure, intake, signals, websocket)
Target = tuple[str, str, tuple[str, ...]]


def untested(installed: Callable[[str], str] = version) -> list[str]:
    """Return ``"name X (tested: Y)"`` for each server package whose installed version is not the tested one."""
    found = []
    for name, tested in TESTED.items():
        try:
            actual = installed(name)
        except PackageNotFoundError:
            actual = "not installed"
        if actual != tested:
            found.append(f"{name} {actual} (tested: {tested})")
    return found


def missing(targets: Iterable[Target]) -> list[str]:
    """Return ``module.Class.method`` for each method a patch wraps that is not there."""
    gone = []
    for module_name, class_name, names in targets:
        try:
            owner = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            gone.append(f"{module_name}.{class_name}")
            continue
        gone += [f"{module_name}.{class_name}.{name}" for name in names if not hasattr(owner, name)]
    return gone


def check(allow_untested: bool, installed: Callable[[str], str] = version) -> None:
    """Refuse to start (ImproperlyConfigured) with untested versions of the server packages, or without targets."""
    versions = untested(installed)
    if versions and not allow_untested:
        raise ImproperlyConfigured(
            f"The gateway's patches to its ASGI server were tested with other versions: {', '.join(versions)}. "
            "Install the versions in requirements.txt (pip install -r requirements.txt), or, once you have "
            "checked the new ones, start with GATEWAY_ALLOW_UNTESTED_SERVER=true.")
    if versions:
        logger.warning("starting with untested server packages (GATEWAY_ALLOW_UNTESTED_SERVER=true): %s",
                       ", ".join(versions))
    gone = missing(target for patch in PATCHES for target in patch.TARGETS)
    if gone:
        raise ImproperlyConfigured(f"The installed server packages no longer have what the gateway patches: "
                                   f"{', '.join(gone)}. Install the versions in requirements.txt.")


def install(*, max_body_bytes: int, header_timeout: float, on_refused: Hook, shutdown: Shutdown, grace: float,
            allow_untested: bool) -> None:
    """Check the server packages, then patch them all (only when daphne serves this process)."""
    check(allow_untested)
    accesslog.install()
    backpressure.install()
    intake.install(max_body_bytes, header_timeout, on_refused)
    websocket.install(max_body_bytes)
    signals.install(shutdown, grace)
