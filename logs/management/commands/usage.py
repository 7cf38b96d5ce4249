"""``manage.py usage``: what each key (and team) used since a day, and its budget this period, as a plain table."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet
from django.utils.dateparse import parse_date
from django.utils.timezone import now

from logs.models import RequestLog
from logs.pages.spend import spend_of
from logs.pages.usage import SUMS
from upstreams.models import Budgeted, ClientKey, Team, usd

COLUMNS = ["key", "team", "requests", "input tokens", "output tokens", "cost USD", "budget", "used this period",
           "left"]
NUMERIC = {"requests", "input tokens", "output tokens", "cost USD"}


def _since(text: str | None, at: datetime) -> datetime:
    """``--since``'s day at 00:00 UTC; without it, the 1st of this month."""
    if not text:
        return at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    try:
        day = parse_date(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise CommandError(f"--since {text!r} is not a day like 2025-06-01")
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


class Command(BaseCommand):
    help = ("Print each client key's requests, tokens and cost since --since (default: the 1st of this month, UTC), "
            "and its budget: used and left in the budget's current period. Teams follow their keys, as "
            "'(team)' lines.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--key", metavar="NAME", help="only this key")
        parser.add_argument("--team", metavar="NAME", help="only this team's keys, and the team")
        parser.add_argument("--since", metavar="YYYY-MM-DD", help="count requests from this day, 00:00 UTC")

    def handle(self, *args: Any, **options: Any) -> None:
        at = now()
        since = _since(options["since"], at)
        keys = ClientKey.objects.select_related("team").order_by("name", "pk")
        teams = Team.objects.order_by("name")
        if options["team"]:
            teams = teams.filter(name=options["team"])
            if not teams:
                raise CommandError(f"No team is named {options['team']!r}.")
            keys = keys.filter(team__name=options["team"])
        if options["key"]:
            keys = keys.filter(name=options["key"])
            if not keys:
                raise CommandError(f"No key is named {options['key']!r}.")
            teams = teams.none()
        rows = RequestLog.objects.filter(started__gte=since, started__lte=at)
        lines = self._lines(keys, rows, "client_key_id", at) + self._lines(teams, rows, "team_id", at)
        self.stdout.write(f"Since {since:%Y-%m-%d %H:%M} UTC, until {at:%Y-%m-%d %H:%M} UTC.")
        self.stdout.write(_table(lines) if lines else "No keys.")

    def _lines(self, owners: QuerySet[Any], rows: QuerySet[RequestLog], by: str, at: datetime) -> list[list[str]]:
        """A line per owner (keys or teams): its figures in ``rows``, its budget this period."""
        listed = list(owners)
        figures = {row[by]: row for row in rows.filter(**{f"{by}__in": [o.pk for o in listed]})
                   .values(by).annotate(**SUMS).order_by()}
        return [_line(owner, figures.get(owner.pk, {}), at) for owner in listed]


def _line(owner: Budgeted, row: dict[str, Any], at: datetime) -> list[str]:
    cost = usd(row.get("cost"))
    if row.get("unpriced"):
        cost += f" ({row['unpriced']} unpriced)"
    if isinstance(owner, Team):
        key, team = "(team)", owner.name
    else:
        assert isinstance(owner, ClientKey)
        key, team = owner.name, owner.team_name or "-"
    spent = spend_of(owner, at)
    return [key, team, f"{row.get('requests') or 0:,}", f"{row.get('input_tokens') or 0:,}",
            f"{row.get('output_tokens') or 0:,}", cost, spent.limit_text, spent.used_text(), spent.left_text()]


def _table(lines: list[list[str]]) -> str:
    """The lines under COLUMNS, each column as wide as its widest cell; numbers to the right."""
    widths = [max(len(cell) for cell in column) for column in zip(COLUMNS, *lines, strict=True)]
    out = []
    for cells in (COLUMNS, *lines):
        out.append("  ".join(cell.rjust(width) if name in NUMERIC else cell.ljust(width)
                             for name, cell, width in zip(COLUMNS, cells, widths, strict=True)).rstrip())
    return "\n".join(out)
