"""The request log's filters: query parameters in, a queryset filter and a row predicate out.

One definition serves the list page, the CSV export and the live tail, so a row pushed
over the socket is exactly a row the page would have listed (issue 5, "Pages").
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import now as wall_now

from logs.models import Outcome, RequestLog, RequestLogDict, Transport

FAILED = "failed"  # any outcome but ok: "what failed?"
# Labelled with the values themselves: the badges in the list show those.
OUTCOME_CHOICES = [(FAILED, "any failure"), *((value, value) for value in Outcome.values)]
_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_STATUS = re.compile(r"^(\d{3}|[1-5]xx)$", re.IGNORECASE)


def parse_age(text: str) -> timedelta:
    """Return the span ``text`` names: ``90s``, ``15m``, ``1h``, ``30d`` or ``2w``.

    Raises ValueError with a message fit for the page or the command line.
    """
    match = _AGE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an age like 15m, 1h, 30d or 2w")
    return timedelta(**{_AGE_UNITS[match[2].lower()]: int(match[1])})


def parse_when(text: str, now: datetime) -> datetime:
    """Return the moment ``text`` names: an age before ``now`` (``1h``) or a date/time, UTC unless it says.

    Relative ages keep a bookmark meaningful: ``?since=1h`` is always the last hour.
    """
    text = text.strip()
    if _AGE.match(text):
        return now - parse_age(text)
    moment = parse_datetime(text.replace(" ", "T", 1))
    if moment is None:
        day = parse_date(text)
        if day is None:
            raise ValueError(f"{text!r} is not a time: use 1h, 2025-06-01 or 2025-06-01 14:30")
        moment = datetime(day.year, day.month, day.day)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class LogFilter:
    """The filters of one page view, as given (``query_string`` rebuilds the bookmarkable URL)."""

    outcome: str = ""
    status: str = ""
    upstream: str = ""
    model: str = ""
    key: str = ""
    since: str = ""
    until: str = ""
    q: str = ""
    failover: str = ""  # "1": only requests that failed over (or tried more than one upstream)
    transport: str = ""  # "http" or "websocket"
    session: str = ""  # a client session (Codex's thread id): its requests
    kind: str = ""  # a request kind: turn, compaction, prewarm
    # Parsed from the above; a value that does not parse is reported and ignored.
    start: datetime | None = field(default=None, compare=False)
    end: datetime | None = field(default=None, compare=False)
    errors: dict[str, str] = field(default_factory=dict, compare=False)

    PARAMS = ("outcome", "status", "upstream", "model", "key", "since", "until", "q", "failover", "transport",
              "session", "kind")

    @classmethod
    def from_query(cls, query: Mapping[str, str], now: datetime | None = None) -> LogFilter:
        """Read the filters from query parameters, ignoring (and reporting) values that make no sense."""
        now = now or wall_now()
        given = {name: str(query.get(name, "") or "").strip() for name in cls.PARAMS}
        errors: dict[str, str] = {}
        if given["outcome"] and given["outcome"] not in dict(OUTCOME_CHOICES):
            errors["outcome"] = f"unknown outcome {given['outcome']!r}"
        if given["status"] and not _STATUS.match(given["status"]):
            errors["status"] = f"{given['status']!r} is not a status like 502 or 5xx"
        if given["transport"] and given["transport"] not in Transport.values:
            errors["transport"] = f"unknown transport {given['transport']!r} (http or websocket)"
        bounds: dict[str, datetime | None] = {"since": None, "until": None}
        for name in bounds:
            if given[name]:
                try:
                    bounds[name] = parse_when(given[name], now)
                except ValueError as exc:
                    errors[name] = str(exc)
        for name in errors:
            if name in ("outcome", "status", "transport"):
                given[name] = ""
        return cls(**given, start=bounds["since"], end=bounds["until"], errors=errors)

    @property
    def active(self) -> bool:
        return any(getattr(self, name) for name in self.PARAMS)

    def query_string(self, **changes: str) -> str:
        """Return these filters as a query string, with ``changes`` applied (empty values are left out)."""
        values = {name: getattr(self, name) for name in self.PARAMS} | changes
        return urlencode({name: value for name, value in values.items() if value})

    def apply(self, logs: QuerySet[RequestLog]) -> QuerySet[RequestLog]:
        """Return ``logs`` narrowed to the rows these filters match."""
        if self.outcome == FAILED:
            logs = logs.exclude(outcome=Outcome.OK)
        elif self.outcome:
            logs = logs.filter(outcome=self.outcome)
        if self.status:
            low, high = self._status_range()
            logs = logs.filter(status__gte=low, status__lte=high)
        if self.upstream:  # the upstream that answered, or one that was tried and failed
            logs = logs.filter(Q(upstream_name=self.upstream) | Q(failed_over__contains=f",{self.upstream},"))
        if self.failover:
            logs = logs.exclude(failed_over="")
        if self.transport:
            logs = logs.filter(transport=self.transport)
        if self.model:
            logs = logs.filter(Q(model=self.model) | Q(upstream_model=self.model))
        if self.key:
            logs = logs.filter(key_name=self.key)
        if self.session:
            logs = logs.filter(session_id=self.session)
        if self.kind:
            logs = logs.filter(request_kind=self.kind)
        if self.start:
            logs = logs.filter(started__gte=self.start)
        if self.end:
            logs = logs.filter(started__lt=self.end)
        if self.q:
            logs = logs.filter(Q(request_id__icontains=self.q) | Q(model__icontains=self.q)
                               | Q(error_type__icontains=self.q) | Q(error_message__icontains=self.q))
        return logs

    def matches(self, row: RequestLogDict) -> bool:
        """Whether ``apply`` would keep ``row``: the live tail's test for each finished request (filter by filter)."""
        return (self._outcome_matches(row) and self._status_matches(row) and self._upstream_matches(row)
                and self._plain_matches(row) and self._time_matches(row) and self._text_matches(row))

    def _outcome_matches(self, row: RequestLogDict) -> bool:
        if self.outcome == FAILED:
            return bool(row["outcome"] != Outcome.OK)
        return not self.outcome or row["outcome"] == self.outcome

    def _status_matches(self, row: RequestLogDict) -> bool:
        if not self.status:
            return True
        low, high = self._status_range()
        return row["status"] is not None and low <= row["status"] <= high

    def _upstream_matches(self, row: RequestLogDict) -> bool:
        """The upstream that answered or one tried that failed; ``failover``: only requests that failed over."""
        if self.upstream and row["upstream_name"] != self.upstream \
                and f",{self.upstream}," not in row.get("failed_over", ""):
            return False
        return not self.failover or bool(row.get("failed_over"))

    def _plain_matches(self, row: RequestLogDict) -> bool:
        """The filters that compare a field as it is: transport, model (as asked or sent), key, session, kind."""
        return ((not self.transport or row.get("transport", Transport.HTTP) == self.transport)
                and (not self.model or self.model in (row["model"], row["upstream_model"]))
                and (not self.key or row["key_name"] == self.key)
                and (not self.session or row.get("session_id", "") == self.session)
                and (not self.kind or row.get("request_kind", "") == self.kind))

    def _time_matches(self, row: RequestLogDict) -> bool:
        started = datetime.fromisoformat(row["started"])
        return not ((self.start and started < self.start) or (self.end and started >= self.end))

    def _text_matches(self, row: RequestLogDict) -> bool:
        if not self.q:
            return True
        needle = self.q.casefold()
        haystack = (row["request_id"], row["model"], row["error_type"], row["error_message"])
        return any(needle in text.casefold() for text in haystack)

    def _status_range(self) -> tuple[int, int]:
        if self.status[1:].lower() == "xx":
            return int(self.status[0]) * 100, int(self.status[0]) * 100 + 99
        return int(self.status), int(self.status)

