from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date

from plumbing.ratelimit import parse_rate
from upstreams.management.budgets import add_budget_arguments, budget_fields
from upstreams.models import ClientKey, Team


class Command(BaseCommand):
    help = "Create a client API key and print it once, on the last line (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="who or what the key is for")
        parser.add_argument("--rate-limit", default="", help="e.g. 600/m; empty uses GATEWAY_RATE_LIMIT")
        parser.add_argument("--models", default="", help="the models it may use, names or globs ('claude-* qwen3'); "
                                                        "default: every model")
        parser.add_argument("--expires", default="", help="YYYY-MM-DD: refused as expired from that day, "
                                                         "00:00 UTC; default: never")
        parser.add_argument("--team", default="", help="the team it belongs to (created if there is none): its "
                                                       "requests count against the team's budget too")
        add_budget_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name:
            raise CommandError("the key needs a name")
        try:
            parse_rate(options["rate_limit"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        expires = None
        if options["expires"]:
            try:
                day = parse_date(options["expires"])
            except ValueError:
                day = None
            if day is None:
                raise CommandError(f"--expires {options['expires']!r} is not a date like 2027-01-31")
            expires = datetime(day.year, day.month, day.day, tzinfo=UTC)
        budget = budget_fields(options)
        team = None
        if options["team"].strip():
            team, created = Team.objects.get_or_create(name=options["team"].strip())
            if created:
                self.stderr.write(f"Created team {team} (no budget of its own: manage.py team {team} --help).")
        key, secret = ClientKey.objects.create_key(name, rate_limit=options["rate_limit"],
                                                   models=options["models"].strip(), expires=expires, team=team,
                                                   **budget)
        self.stderr.write(f"Created client key {key}. Store it now: it is not shown again.")
        self.stdout.write(secret)
