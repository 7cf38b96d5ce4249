"""A request's budgets: checked and held before it is routed, settled with what it spent when it ends.

``admit`` runs before any upstream is chosen (api/pipeline/plan.py): the key's budget and
its team's, each in its current period, must have something left (spent + held below the
limit), and the request then holds its estimate on both until it ends: its body's size in
tokens (4 bytes a token) plus the output it may write (``max_output_tokens``, or the key's
reserve, or GATEWAY_BUDGET_RESERVE), in tokens and in dollars at its model's price. What
admission overshoots a budget by is bounded by what is in flight: a request is let in
only while spent + held is below the limit, so the total ends below the limit plus that
request's own use, plus whatever the requests in flight spend beyond their holds.

Spent up (spent alone reaches the limit): 429 ``usage_limit_reached`` until the period
resets, or ``insufficient_quota`` for a ``total``. Held up (what is left is held by requests
in flight, which may leave some of it): asked again for a quarter of a second, then 429
``budget_held`` with a short Retry-After, which clients retry.

``settle`` (the request's answer calls it as its row is settled, api/http/answers.py) adds
what it spent, as its row says (tokens, cost), and lets the hold go. A stream already
running is never cut for a budget.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from api.budgets.ledger import LEDGER, Account, Hold, Spent
from bridge.errors import BridgeError, QuotaExceededError, RateLimitError, UsageLimitError
from logs.audit.exchange import Exchange
from logs.audit.writer import WRITER
from logs.models import RequestLog
from plumbing import dbthread, metrics
from upstreams.models import Budgeted, ClientKey, usd
from upstreams.routing import ROUTING

logger = logging.getLogger("gateway")
NANOS = Decimal(1_000_000_000)
BYTES_PER_TOKEN = 4
OUTPUT_LIMITS = ("max_output_tokens", "max_completion_tokens", "max_tokens")
# Refused only for what requests in flight hold: asked again after each pause (0.26 s in all), since
# a request that just ended settles a moment after its client has read the end; then 429 budget_held.
GRACE = (0.005, 0.01, 0.02, 0.04, 0.08, 0.1)
ADJECTIVES = {"day": "daily", "week": "weekly", "month": "monthly"}
HELD_RETRY = 2  # seconds: Retry-After of a budget_held refusal
_settling: set[asyncio.Task[None]] = set()  # settles under way (kept from the garbage collector)


@functools.cache
def _clock(path: str) -> Callable[[], float]:
    clock: Callable[[], float] = import_string(path)
    return clock


def now() -> datetime:
    """The budgets' clock (GATEWAY_BUDGET_CLOCK: unix seconds), in UTC."""
    return datetime.fromtimestamp(_clock(settings.GATEWAY_BUDGET_CLOCK)(), UTC)


def nanos(dollars: Decimal | None) -> int | None:
    return None if dollars is None else int(Decimal(dollars) * NANOS)


def _owners(key: ClientKey) -> list[tuple[str, Budgeted]]:
    team = key.team if key.team_id else None
    return [(kind, owner) for kind, owner in (("key", key), ("team", team)) if owner is not None and owner.has_budget]


def accounts_for(key: ClientKey, at: datetime) -> list[tuple[Budgeted, Account]]:
    """The budgets a request of ``key`` counts against at ``at``: the key's and its team's, where set."""
    return [(owner, Account.of(kind, owner.pk, owner.period(at), owner.token_budget, nanos(owner.usd_budget)))
            for kind, owner in _owners(key)]


def estimate(exchange: Exchange, body: dict[str, Any], key: ClientKey) -> tuple[int, int]:
    """What a request holds: its body's size in tokens plus the output it may write; in tokens and nanodollars."""
    asked = next((body[name] for name in OUTPUT_LIMITS if isinstance(body.get(name), int)), None)
    output = asked if asked is not None else (key.reserve_tokens or settings.GATEWAY_BUDGET_RESERVE)
    input_tokens = math.ceil(exchange.request_bytes / BYTES_PER_TOKEN)
    price = ROUTING.price(exchange.model)
    cost = price.cost(input_tokens, 0, output) if price is not None else Decimal(0)
    return input_tokens + output, int(cost * NANOS)


async def admit(exchange: Exchange, key: ClientKey | None, body: dict[str, Any]) -> None:
    """Hold the request's estimate on its budgets, or refuse it (429) with nothing sent upstream."""
    if key is None:
        return
    at = now()
    found = accounts_for(key, at)
    if not found:
        return
    tokens, cost = estimate(exchange, body, key)
    for pause in (*GRACE, None):
        verdict = await LEDGER.reserve([account for _, account in found], tokens, cost, _totals)
        if isinstance(verdict, Hold):
            exchange.hold = verdict
            return
        if not verdict.held or pause is None:
            break
        await asyncio.sleep(pause)  # a request that just ended may not have settled yet
    assert isinstance(verdict, Spent)
    owner, account = found[verdict.account]
    metrics.budget_refused_total.labels(key=key.name, team=key.team_name or "-", budget=account.kind).inc()
    raise _refusal(owner, account, verdict, at)


def _refusal(owner: Budgeted, account: Account, spent: Spent, at: datetime) -> BridgeError:
    """The 429 a spent budget answers: usage_limit_reached until its period resets, insufficient_quota for good."""
    whose = "this key" if account.kind == "key" else f"the team '{owner}'"
    limit = f"{owner.token_budget:,} tokens" if spent.what == "tokens" else usd(owner.usd_budget)
    period = account.period
    if spent.held:
        return RateLimitError(f"The rest of the budget of {whose} ({limit}) is held by requests in flight; "
                              "retry in a moment.", code="budget_held", headers={"retry-after": str(HELD_RETRY)})
    whose = whose[0].upper() + whose[1:]
    if period.end is None:
        return QuotaExceededError(f"{whose} has used its total budget of {limit}; ask the gateway's "
                                  f"administrators for more.")
    resets = int(period.end.timestamp())
    return UsageLimitError(f"{whose} has used its {ADJECTIVES[period.kind]} budget of {limit}; it resets at "
                           f"{period.end:%Y-%m-%d %H:%M} UTC.", resets_at=resets,
                           retry_after=math.ceil(period.end.timestamp() - at.timestamp()))


async def _totals(accounts: list[Account]) -> list[tuple[int, int]]:
    """What each account spent, from the rows (the truth): read when the ledger does not have it.

    The rows this process has settled but not yet written count too, taken before the
    database is read and left out of what it reads: a budget rebuilt the moment after a
    request ended still counts that request, once.
    """
    unwritten = WRITER.unwritten_rows()
    return await dbthread.run(_spent_in_rows, accounts, unwritten)


def _spent_in_rows(accounts: list[Account], unwritten: list[dict[str, Any]]) -> list[tuple[int, int]]:
    totals = []
    excluding = {str(row["request_id"]) for row in unwritten}
    for account in accounts:
        start, end = account.period.start, account.period.end
        field, owner = ("client_key_id", {"key_id": account.pk}) if account.kind == "key" else \
            ("team_id", {"team_id": account.pk})
        tokens, dollars = RequestLog.objects.spending(**owner, since=start, until=end, excluding=excluding)
        for row in unwritten:
            if row.get(field) == account.pk and (start is None or start <= row["started"]) and (
                    end is None or row["started"] < end):
                tokens += (row.get("input_tokens") or 0) + (row.get("output_tokens") or 0)
                dollars += Decimal(row.get("cost") or 0)
        totals.append((tokens, int(dollars * NANOS)))
    return totals


def settle(exchange: Exchange) -> None:
    """Add what the request spent to its budgets and let its hold go (once; its row is settled already)."""
    hold, exchange.hold = exchange.hold, None
    if hold is None:
        return
    pending = LEDGER.settle(hold, exchange.spent_tokens, int(exchange.cost * NANOS))
    if pending is not None:
        task = asyncio.ensure_future(pending)
        _settling.add(task)
        task.add_done_callback(_settling.discard)


async def settled() -> None:
    """Return once every settle under way has reached the ledger (a drain waits for them)."""
    if _settling:
        await asyncio.gather(*list(_settling), return_exceptions=True)
