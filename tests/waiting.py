"""Waiting in tests for something to happen: ``until``.

A test that polls by hand repeats a deadline loop and, on a timeout, fails with whatever
its last assertion said; here one loop waits for any condition and names it when it times
out. A test that must show that "nothing more happened" does not sleep first (slow when the
machine is fast, wrong when it is slow): it waits for a barrier that comes after whatever
must not happen, such as ``Gateway.settle()`` (tests/servers.py: nothing left in flight or
to write) or a log line that says the step before it is done.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
TIMEOUT = 10.0
INTERVAL = 0.02


class WaitTimeout(AssertionError):
    """What a test waited for did not happen in time."""


def until(condition: Callable[[], T], what: str, timeout: float = TIMEOUT, interval: float = INTERVAL) -> T:
    """Return ``condition()``'s first truthy value, asked every ``interval``; fail naming ``what`` after ``timeout``.

    The condition is asked once more at the deadline, so a slow machine never fails a test
    that only needed the last look.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"waited {timeout:g}s for {what}; last seen: {value!r}")
        time.sleep(interval)
