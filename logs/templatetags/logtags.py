"""Template filters of the request log pages: durations, counts, statuses and outcomes, short and readable."""
from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal

from django import template

from logs.models import Outcome
from upstreams.models import usd as dollars

register = template.Library()

OUTCOME_CLASSES = {Outcome.OK: "ok", Outcome.UPSTREAM_ERROR: "bad", Outcome.GATEWAY_ERROR: "bad",
                   Outcome.REJECTED: "warn", Outcome.CLIENT_DISCONNECTED: "muted"}


@register.filter
def ms(value: float | None) -> str:
    """Return a duration in milliseconds as ``87 ms``, ``1.24 s`` or ``—``."""
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.1f} ms"
    if value < 1000:
        return f"{value:.0f} ms"
    return f"{value / 1000:.2f} s"


@register.filter
def compact(value: int | float | None) -> str:
    """Return a count as ``950``, ``12.3k`` or ``4.1M``: token totals get long."""
    if value is None:
        return "—"
    for size, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:g}" if isinstance(value, float) else str(value)


@register.filter
def percent(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 100:.1f}%"


@register.filter
def outcome_class(outcome: str) -> str:
    """Return the CSS class of an outcome's badge: ok, bad, warn or muted."""
    return OUTCOME_CLASSES.get(Outcome(outcome), "muted") if outcome in Outcome.values else "muted"


@register.filter
def status_class(status: int | None) -> str:
    if status is None:
        return "muted"
    return "ok" if status < 400 else "warn" if status < 500 else "bad"


@register.filter
def pretty_body(text: str) -> str:
    """Return a captured body indented when it is JSON, as it was otherwise (SSE streams, cut bodies)."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


@register.filter
def zip_windows(values: Iterable[object], windows: Iterable[object]) -> list[tuple[object, object]]:
    """Pair each of a key's figures with the window it is of (both in the windows' order)."""
    return list(zip(values, windows, strict=False))


@register.filter
def bar_size(span: timedelta) -> str:
    """Name a chart bar's span: ``minute``, ``15 minutes``, ``6 hours``, ``day``."""
    minutes = int(span.total_seconds() // 60)
    for size, unit in ((1440, "day"), (60, "hour"), (1, "minute")):
        if minutes % size == 0:
            count = minutes // size
            return unit if count == 1 else f"{count} {unit}s"
    return f"{span.total_seconds():g} seconds"


@register.filter
def names(failed_over: str) -> str:
    """Return a row's ``failed_over`` (``,a,b,``) as ``a, b``."""
    return ", ".join(name for name in failed_over.split(",") if name)


@register.filter
def usd(amount: object) -> str:
    """US dollars as the pages write them (upstreams.models.usd)."""
    return dollars(amount if isinstance(amount, int | Decimal) else None)
