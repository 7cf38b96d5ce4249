"""SIGTERM and SIGINT under daphne: the drain (plumbing/shutdown.py) instead of Twisted's immediate stop.

Twisted's handlers call ``reactor.stop()`` at once, and daphne then cancels every
application: streams die with the event loop and their audit rows are never written.
Once the reactor runs (Twisted installs its handlers in its "during startup" phase;
``callWhenRunning`` runs after), its handlers are replaced: the first signal closes the
listening sockets and starts the drain, a second one cuts what is left in flight.
"""
from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType
from typing import Any

from plumbing.shutdown import Shutdown

logger = logging.getLogger("gateway.shutdown")
# What this patch relies on (checked by plumbing/patches/__init__.py before anything is patched).
TARGETS = (("twisted.internet.asyncioreactor", "AsyncioSelectorReactor",
            ("callWhenRunning", "callFromThread", "stop", "getReaders", "sigTerm", "sigInt")),
           ("twisted.internet.tcp", "Port", ("stopListening",)))


def install(shutdown: Shutdown, grace: float) -> None:
    """Take over SIGTERM/SIGINT once daphne's reactor runs (daphne installed the asyncio reactor: safe to import)."""
    from twisted.internet import reactor

    reactor.callWhenRunning(_take_over_signals, reactor, shutdown, grace)


def _take_over_signals(reactor: Any, shutdown: Shutdown, grace: float) -> None:
    """Replace Twisted's SIGTERM/SIGINT handlers with the drain, where Twisted installed them.

    Only Twisted's own handlers are replaced: daphne's runserver with the autoreloader
    runs the reactor in a thread without signal handlers, and a debugger's SIGINT stays.
    """

    def on_signal(number: int, frame: FrameType | None) -> None:
        # Signal handlers run between bytecodes: hand over to the reactor's thread.
        reactor.callFromThread(_signalled, reactor, shutdown, number, grace)

    for number, twisted_handler in ((signal.SIGTERM, reactor.sigTerm), (signal.SIGINT, reactor.sigInt)):
        if signal.getsignal(number) == twisted_handler:
            signal.signal(number, on_signal)


def _signalled(reactor: Any, shutdown: Shutdown, number: int, grace: float) -> None:
    name = signal.Signals(number).name
    if shutdown.draining:
        logger.warning("%s again: ending the %d request(s) in flight now", name, shutdown.in_flight)
        shutdown.ending = asyncio.ensure_future(shutdown.end_in_flight())
        return
    logger.warning("%s received", name)
    shutdown.begin()
    _stop_listening(reactor)
    shutdown.task = asyncio.ensure_future(shutdown.run(grace, lambda: _stop(reactor)))


def _stop(reactor: Any) -> None:
    from twisted.internet.error import ReactorNotRunning

    try:
        reactor.stop()
    except ReactorNotRunning:  # something else stopped it meanwhile
        pass


def _stop_listening(reactor: Any) -> None:
    """Close daphne's listening sockets, so new connections are refused rather than queued."""
    from twisted.internet.interfaces import IListeningPort

    for reader in reactor.getReaders():
        if IListeningPort.providedBy(reader):
            reader.stopListening()
