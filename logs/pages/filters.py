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

from logs.models import FAULT_OF_OUTCOME, Fault, Outcome, RequestLog, RequestLogDict, Transport, outcomes_of

FAILED = "failed"  # any outcome but ok: "what failed?"
NONE = "-"  # the upstream, key, model or error filter's value for rows without one
UPSTREAM_FAILURES = {FAILED, Outcome.UPSTREAM_ERROR}  # the outcomes a failover's failed try matches
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


# The filters whose value must be one of a few: a value that is not is reported, and ignored.
_CHECKS = {
    "outcome": lambda value: "" if value in dict(OUTCOME_CHOICES) else f"unknown outcome {value!r}",
    "status": lambda value: "" if _STATUS.match(value) else f"{value!r} is not a status like 502 or 5xx",
    "transport": lambda value: "" if value in Transport.values else f"unknown transport {value!r} (http or websocket)",
    "fault": lambda value: "" if value in Fault.values else f"unknown fault {value!r} ({', '.join(Fault.values)})",
}


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
    failover: str = ""  # "1": only requests that failed over (moved from one upstream to another)
    transport: str = ""  # "http" or "websocket"
    session: str = ""  # a client session (Codex's thread id): its requests
    kind: str = ""  # a request kind: turn, compaction, prewarm
    fault: str = ""  # whose failure: upstream, refused, disconnected, gateway (logs.models.Fault)
    error: str = ""  # an error code exactly, as the row's error_type ("-": none)
    reached: str = ""  # "1": only requests that reached an upstream
    tokens: str = ""  # "none": only answered requests whose upstream reported no tokens
    # Parsed from the above; a value that does not parse is reported and ignored.
    start: datetime | None = field(default=None, compare=False)
    end: datetime | None = field(default=None, compare=False)
    errors: dict[str, str] = field(default_factory=dict, compare=False)

    PARAMS = ("outcome", "status", "upstream", "model", "key", "since", "until", "q", "failover", "transport",
              "session", "kind", "fault", "error", "reached", "tokens")

    @classmethod
    def from_query(cls, query: Mapping[str, str], now: datetime | None = None) -> LogFilter:
        """Read the filters from query parameters, ignoring (and reporting) values that make no sense."""
        now = now or wall_now()
        given = {name: str(query.get(name, "") or "").strip() for name in cls.PARAMS}
        errors = {name: why(given[name]) for name, why in _CHECKS.items() if given[name] and why(given[name])}
        bounds: dict[str, datetime | None] = {"since": None, "until": None}
        for name in bounds:
            if given[name]:
                try:
                    bounds[name] = parse_when(given[name], now)
                except ValueError as exc:
                    errors[name] = str(exc)
        for name in errors:
            if name in _CHECKS:
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
        """Return ``logs`` narrowed to the rows these filters match.

        With an upstream chosen, the outcome is the one *there*: a request that failed over
        from it failed there (an upstream failure), whatever came after. An error code
        belongs to the upstream a row names, so with ``error`` only that upstream counts.
        """
        logs = logs.filter(self._where_outcome())
        if self.status:
            low, high = self._status_range()
            logs = logs.filter(status__gte=low, status__lte=high)
        if self.failover:
            logs = logs.exclude(failed_over="")
        if self.reached:
            logs = logs.exclude(upstream_name="")
        if self.tokens:
            logs = logs.filter(outcome=Outcome.OK, input_tokens__isnull=True, output_tokens__isnull=True) \
                .exclude(upstream_name="")
        return self._plain(self._texts(logs))

    def _where_outcome(self) -> Q:
        """The outcome and fault filters, at the chosen upstream when there is one (see ``apply``)."""
        wanted = Q()
        if self.outcome == FAILED:
            wanted &= ~Q(outcome=Outcome.OK)
        elif self.outcome:
            wanted &= Q(outcome=self.outcome)
        if self.fault:
            wanted &= Q(outcome__in=outcomes_of(self.fault))
        if self.error:
            wanted &= Q(error_type="" if self.error == NONE else self.error)
        if not self.upstream:
            return wanted
        if self.upstream == NONE:
            return wanted & Q(upstream_name="")
        here = Q(upstream_name=self.upstream) & wanted
        if self.error or self.outcome not in {"", *UPSTREAM_FAILURES} or self.fault not in {"", Fault.UPSTREAM}:
            return here
        return here | Q(failed_over__contains=f",{self.upstream},")

    def _plain(self, logs: QuerySet[RequestLog]) -> QuerySet[RequestLog]:
        """The filters that compare one field: transport, model (as asked or sent), key, session, kind, time."""
        if self.transport:
            logs = logs.filter(transport=self.transport)
        if self.model:
            model = "" if self.model == NONE else self.model
            logs = logs.filter(Q(model=model) | Q(upstream_model=model)) if model else logs.filter(model="")
        if self.key:
            logs = logs.filter(key_name="" if self.key == NONE else self.key)
        if self.session:
            logs = logs.filter(session_id=self.session)
        if self.kind:
            logs = logs.filter(request_kind=self.kind)
        return logs

    def _texts(self, logs: QuerySet[RequestLog]) -> QuerySet[RequestLog]:
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
        return (self._outcome_matches(row) and self._status_matches(row) and self._flags_match(row)
                and self._plain_matches(row) and self._time_matches(row) and self._text_matches(row))

    def _outcome_matches(self, row: RequestLogDict) -> bool:
        """The outcome, fault and error, at the chosen upstream (``_where_outcome``'s rule)."""
        if self.upstream == NONE:
            return row["upstream_name"] == "" and self._own_outcome_matches(row)
        if not self.upstream or row["upstream_name"] == self.upstream:
            return self._own_outcome_matches(row)
        moved = f",{self.upstream}," in row.get("failed_over", "")
        return moved and not self.error and self.outcome in {"", *UPSTREAM_FAILURES} \
            and self.fault in {"", Fault.UPSTREAM}

    def _own_outcome_matches(self, row: RequestLogDict) -> bool:
        outcome = row["outcome"]
        if (self.outcome == FAILED and outcome == Outcome.OK) or self.outcome not in {"", FAILED, outcome}:
            return False
        fault = FAULT_OF_OUTCOME.get(Outcome(outcome)) if outcome in Outcome.values else None
        return (not self.fault or fault == self.fault) and \
            (not self.error or row["error_type"] == ("" if self.error == NONE else self.error))

    def _status_matches(self, row: RequestLogDict) -> bool:
        if not self.status:
            return True
        low, high = self._status_range()
        return row["status"] is not None and low <= row["status"] <= high

    def _flags_match(self, row: RequestLogDict) -> bool:
        """Failed over, reached an upstream, answered without tokens."""
        untokened = row["outcome"] == Outcome.OK and bool(row["upstream_name"]) \
            and row["input_tokens"] is None and row["output_tokens"] is None
        return ((not self.failover or bool(row.get("failed_over"))) and (not self.reached or bool(row["upstream_name"]))
                and (not self.tokens or untokened))

    def _plain_matches(self, row: RequestLogDict) -> bool:
        """The filters that compare a field as it is: transport, model (as asked or sent), key, session, kind."""
        model = "" if self.model == NONE else self.model
        model_ok = not self.model or (model in (row["model"], row["upstream_model"]) if model else row["model"] == "")
        return ((not self.transport or row.get("transport", Transport.HTTP) == self.transport) and model_ok
                and (not self.key or row["key_name"] == ("" if self.key == NONE else self.key))
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

