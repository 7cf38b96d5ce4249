"""Rate limits per client key: parsing ``600/m`` and the fixed-window arithmetic (pure).

The counter itself lives in Django's cache (api/http/limits.py), so every worker that shares
the cache (Redis) shares one budget.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour|d|day)s?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` requests per ``seconds``."""

    count: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds}s"


def parse_rate(text: str) -> Rate | None:
    """Return the rate ``text`` names (``600/m``, ``10/s``, ``1000/5m``), None for empty; raise ValueError if bad."""
    if not text or not text.strip():
        return None
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"not a rate: {text!r} (write it like 600/m, 10/s or 1000/5m)")
    count, multiple, unit = int(match[1]), int(match[2] or 1), match[3][0].lower()
    if count <= 0 or multiple <= 0:
        raise ValueError(f"a rate needs positive numbers: {text!r}")
    return Rate(count, multiple * _UNIT_SECONDS[unit])


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether one request fits the budget, and the headers that tell the client where it stands."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the window resets

    def headers(self) -> dict[str, str]:
        headers = {"x-ratelimit-limit": str(self.limit), "x-ratelimit-remaining": str(self.remaining),
                   "x-ratelimit-reset": str(self.reset)}
        if not self.allowed:
            headers["retry-after"] = str(self.reset)
        return headers


def window(rate: Rate, now: float) -> tuple[int, int]:
    """Return the current window's number and the seconds left in it (at least 1)."""
    number = int(now // rate.seconds)
    left = math.ceil((number + 1) * rate.seconds - now)
    return number, max(left, 1)


def verdict(rate: Rate, count: int, now: float) -> Verdict:
    """Judge the ``count``-th request of the current window."""
    _, left = window(rate, now)
    return Verdict(allowed=count <= rate.count, limit=rate.count, remaining=max(rate.count - count, 0), reset=left)
