"""The spent and held totals of every budget in its current period: in Redis, atomic across processes.

Each account (a key's or a team's budget in one period) is a hash of what it spent (``t``
tokens, ``u`` billionths of a dollar) and what requests in flight hold (``rt``, ``ru``),
beside a sorted set of the holds themselves, each scored by when it lapses. Three Lua
scripts, each atomic: ``reserve`` refuses when an account has nothing left (spent + held
reaches its limit) and otherwise holds the request's estimate on all of its accounts at
once; ``settle`` adds what the request spent and lets its hold go; ``load`` starts an
account from the database's total, only if no other process did first.

The database is the truth: an account Redis does not have (a new period, a Redis that
restarted empty) is loaded from the rows' totals before anything is held on it. A hold
whose request's process died lapses after GATEWAY_BUDGET_HOLD seconds. A settle that finds
no account (Redis lost it) is left to the rows; one that finds a rebuilt account adds what
was spent, but has no hold there to let go (``ZREM`` says so).

While Redis is away (the shared cache's breaker, plumbing/sharedstate.py), each process
keeps the same totals itself (``LocalLedger``), read from the database and read again
every GATEWAY_BUDGET_REFRESH seconds, so budgets still hold within what other processes
spent since; the accounts it touched then are dropped from Redis when it answers again, to
be rebuilt from the rows. Without Redis at all (the SQLite demo: one process), the local
ledger is the only one, and exact.
"""
from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from django.conf import settings

from api.budgets.pipe import Pipe, Script
from plumbing import sharedstate
from upstreams.models import Period

logger = logging.getLogger("gateway")
HOLDER = secrets.token_hex(6)  # this process, in its holds' names: unique across processes and hosts
EXPIRY_SLACK = 2 * 86400  # an account outlives its period by this long: late settles still find it

# HINCRBY by minus a decimal string ("-0" is no integer to Redis; a Lua number past 1e14 prints as 1e+14).
_LESS = """
local function less(hash, field, amount)
  if amount ~= '0' then redis.call('HINCRBY', hash, field, '-' .. amount) end
end
"""

_RESERVE = Script(_LESS + """
local n = #KEYS / 2
local missing = {}
for i = 1, n do
  if redis.call('EXISTS', KEYS[2 * i - 1]) == 0 then missing[#missing + 1] = i end
end
if #missing > 0 then return {'load', unpack(missing)} end
for i = 1, n do
  local hash, holds = KEYS[2 * i - 1], KEYS[2 * i]
  local lapsed = redis.call('ZRANGEBYSCORE', holds, '-inf', ARGV[1])
  for _, member in ipairs(lapsed) do
    local t, u = string.match(member, ':(%d+):(%d+)$')
    less(hash, 'rt', t)
    less(hash, 'ru', u)
  end
  if #lapsed > 0 then redis.call('ZREMRANGEBYSCORE', holds, '-inf', ARGV[1]) end
  local h = redis.call('HMGET', hash, 't', 'u', 'rt', 'ru')
  local tokens, nanos = tonumber(ARGV[4 + 2 * i]), tonumber(ARGV[5 + 2 * i])
  if tokens >= 0 and tonumber(h[1]) + tonumber(h[3]) >= tokens then
    return {'spent', i, 'tokens', tonumber(h[1]) < tokens and 1 or 0}
  end
  if nanos >= 0 and tonumber(h[2]) + tonumber(h[4]) >= nanos then
    return {'spent', i, 'usd', tonumber(h[2]) < nanos and 1 or 0}
  end
end
for i = 1, n do
  local hash, holds = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('HINCRBY', hash, 'rt', ARGV[4])
  redis.call('HINCRBY', hash, 'ru', ARGV[5])
  redis.call('ZADD', holds, ARGV[2], ARGV[3])
  local ttl = redis.call('TTL', hash)
  if ttl > 0 then redis.call('EXPIRE', holds, ttl) end
end
return {'held'}
""")

_SETTLE = Script(_LESS + """
for i = 1, #KEYS / 2 do
  local hash, holds = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('EXISTS', hash) == 1 then
    redis.call('HINCRBY', hash, 't', ARGV[2])
    redis.call('HINCRBY', hash, 'u', ARGV[3])
    if redis.call('ZREM', holds, ARGV[1]) == 1 then
      less(hash, 'rt', ARGV[4])
      less(hash, 'ru', ARGV[5])
    end
  end
end
return 1
""")

_LOAD = Script("""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 't', ARGV[1], 'u', ARGV[2], 'rt', 0, 'ru', 0)
if tonumber(ARGV[3]) > 0 then redis.call('EXPIREAT', KEYS[1], ARGV[3]) end
return 1
""")


@dataclass(frozen=True, slots=True)
class Account:
    """One budget a request counts against: a key's or a team's (``kind``, ``pk``) in its current period.

    ``tokens`` and ``nanos`` (billionths of a dollar) are the limits; None: not limited.
    ``name``: its hash in Redis, ``holds`` its sorted set of holds (``Account.of`` names them).
    """

    kind: str
    pk: int
    period: Period
    tokens: int | None
    nanos: int | None
    name: str
    holds: str

    @classmethod
    def of(cls, kind: str, pk: int, period: Period, tokens: int | None, nanos: int | None) -> Account:
        name = f"cgw:budget:{kind[0]}{pk}:{period.tag}"
        return cls(kind, pk, period, tokens, nanos, name, f"{name}:holds")

    @property
    def expires(self) -> int:
        """Unix seconds when the period ends (0: never, a ``total``)."""
        return int(self.period.end.timestamp()) if self.period.end is not None else 0


@dataclass(slots=True)
class Hold:
    """What one request holds on its accounts until it ends: settled once, with what it spent."""

    accounts: list[Account]
    tokens: int
    nanos: int
    member: str  # its entry in each account's holds: "<id>:<tokens>:<nanos>"
    local: bool  # held by this process's ledger (Redis was away, or there is none)


@dataclass(frozen=True, slots=True)
class Spent:
    """The refusal: ``account`` (the index of) has nothing left of its ``what`` (tokens or usd).

    ``held``: what is left is held by requests in flight (they may leave some of it).
    """

    account: int
    what: str
    held: bool = False


Totals = Callable[[list[Account]], Awaitable[list[tuple[int, int]]]]  # spent (tokens, nanos) per account, from rows


@dataclass(slots=True)
class _Entry:
    spent_tokens: int
    spent_nanos: int
    loaded: float  # monotonic
    holds: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # member: tokens, nanos, lapses (unix)


class LocalLedger:
    """The same totals kept by this process alone: the only ledger without Redis, the fallback while it is away.

    ``refresh``: seconds after which an account is read from the database again (None: never).
    """

    def __init__(self, refresh: float | None) -> None:
        self.refresh = refresh
        self.entries: dict[str, _Entry] = {}

    def missing(self, accounts: list[Account]) -> list[Account]:
        now = time.monotonic()
        return [a for a in accounts if (entry := self.entries.get(a.name)) is None
                or (self.refresh is not None and now - entry.loaded > self.refresh)]

    def load(self, account: Account, tokens: int, nanos: int) -> None:
        """Start (or restart) an account from the rows' totals; the holds in flight stay held."""
        old = self.entries.get(account.name)
        self.entries[account.name] = _Entry(tokens, nanos, time.monotonic(), old.holds if old else {})
        if len(self.entries) > 100_000:  # accounts of past periods: forget the oldest
            for name in list(self.entries)[:50_000]:
                del self.entries[name]

    def reserve(self, accounts: list[Account], hold: Hold, lapses: float) -> Spent | None:
        now = time.time()
        entries = [self.entries[a.name] for a in accounts]
        for index, (account, entry) in enumerate(zip(accounts, entries, strict=True)):
            for member in [m for m, (_, _, until) in entry.holds.items() if until <= now]:
                del entry.holds[member]
            held_tokens = sum(t for t, _, _ in entry.holds.values())
            held_nanos = sum(n for _, n, _ in entry.holds.values())
            if account.tokens is not None and entry.spent_tokens + held_tokens >= account.tokens:
                return Spent(index, "tokens", held=entry.spent_tokens < account.tokens)
            if account.nanos is not None and entry.spent_nanos + held_nanos >= account.nanos:
                return Spent(index, "usd", held=entry.spent_nanos < account.nanos)
        for entry in entries:
            entry.holds[hold.member] = (hold.tokens, hold.nanos, lapses)
        return None

    def settle(self, hold: Hold, tokens: int, nanos: int) -> None:
        for account in hold.accounts:
            entry = self.entries.get(account.name)
            if entry is not None:
                entry.spent_tokens += tokens
                entry.spent_nanos += nanos
                entry.holds.pop(hold.member, None)


class Ledger:
    """Redis's ledger when the gateway has one (LocalLedger otherwise, and while Redis is away)."""

    def __init__(self) -> None:
        self.local = LocalLedger(refresh=None)
        self.fallback = LocalLedger(refresh=settings.GATEWAY_BUDGET_REFRESH)
        # The Redis keys of accounts Redis missed a settle of (hash and holds): dropped when it answers again.
        self.dirty: set[str] = set()
        self._pipe: Pipe | None = None
        self.numbers = itertools.count()

    @staticmethod
    def shared() -> bool:
        return bool(settings.REDIS_URL)

    @property
    def pipe(self) -> Pipe:
        if self._pipe is None:
            self._pipe = Pipe(settings.REDIS_URL)
        return self._pipe

    async def reserve(self, accounts: list[Account], tokens: int, nanos: int, totals: Totals) -> Hold | Spent:
        """Hold ``tokens`` and ``nanos`` on every account, or say which one has nothing left."""
        hold = Hold(accounts, tokens, nanos, f"{HOLDER}.{next(self.numbers):x}:{tokens}:{nanos}", local=False)
        lapses = time.time() + settings.GATEWAY_BUDGET_HOLD
        if self.shared():
            try:
                return await self._reserve_shared(hold, lapses, totals)
            except Exception as exc:  # Redis is away: the fallback, loud once (the breaker's log)
                if not isinstance(exc, sharedstate.SharedStateUnavailable):
                    logger.warning("budgets kept by this process, Redis failed: %s", type(exc).__name__)
                self.dirty.update(_keys(accounts))
                return await self._reserve_local(self.fallback, hold, lapses, totals)
        return await self._reserve_local(self.local, hold, lapses, totals)

    async def _reserve_local(self, ledger: LocalLedger, hold: Hold, lapses: float, totals: Totals) -> Hold | Spent:
        hold.local = True
        missing = ledger.missing(hold.accounts)
        if missing:
            for account, (tokens, nanos) in zip(missing, await totals(missing), strict=True):
                ledger.load(account, tokens, nanos)
        return ledger.reserve(hold.accounts, hold, lapses) or hold

    async def _reserve_shared(self, hold: Hold, lapses: float, totals: Totals) -> Hold | Spent:
        if self.dirty:  # accounts Redis missed settles of while it was away: rebuilt from the rows
            dropped = list(self.dirty)
            await self.pipe.command("DEL", *dropped)  # forgotten only once Redis has dropped them
            self.dirty.difference_update(dropped)
        limits = [-1 if limit is None else limit for a in hold.accounts for limit in (a.tokens, a.nanos)]
        args = [repr(time.time()), repr(lapses), hold.member, hold.tokens, hold.nanos, *limits]
        for _ in range(3):  # each round loads what another process had not loaded yet
            answer = [part.decode() if isinstance(part, bytes) else part
                      for part in await self.pipe.run(_RESERVE, _keys(hold.accounts), args)]
            if answer[0] == "held":
                return hold
            if answer[0] == "spent":
                return Spent(int(answer[1]) - 1, answer[2], held=bool(answer[3]))
            missing = [hold.accounts[int(index) - 1] for index in answer[1:]]
            for account, (tokens, nanos) in zip(missing, await totals(missing), strict=True):
                expires = account.expires + EXPIRY_SLACK if account.expires else 0
                await self.pipe.run(_LOAD, [account.name], [tokens, nanos, expires])
        raise RuntimeError("budget accounts could not be loaded into Redis")

    def settle(self, hold: Hold, tokens: int, nanos: int) -> Awaitable[None] | None:
        """Add what the request spent and let its hold go; an awaitable when Redis has to be told."""
        if hold.local:
            (self.fallback if self.shared() else self.local).settle(hold, tokens, nanos)
            if self.shared():
                self.dirty.update(_keys(hold.accounts))
            return None
        return self._settle_shared(hold, tokens, nanos)

    async def _settle_shared(self, hold: Hold, tokens: int, nanos: int) -> None:
        try:
            await self.pipe.run(_SETTLE, _keys(hold.accounts), [hold.member, tokens, nanos, hold.tokens, hold.nanos],
                                soon=False)
        except Exception as exc:
            self.dirty.update(_keys(hold.accounts))
            if not isinstance(exc, sharedstate.SharedStateUnavailable):
                logger.warning("a budget settle missed Redis (%s); its accounts are rebuilt from the rows",
                               type(exc).__name__)


def _keys(accounts: list[Account]) -> list[str]:
    return [name for a in accounts for name in (a.name, a.holds)]


LEDGER = Ledger()
