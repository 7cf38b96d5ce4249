from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date

from plumbing.ratelimit import parse_rate
from upstreams.models import ClientKey


class Command(BaseCommand):
    help = "Create a client API key and print it once, on the last line (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="who or what the key is for")
        parser.add_argument("--rate-limit", default="", help="e.g. 600/m; empty uses GATEWAY_RATE_LIMIT")
        parser.add_argument("--models", default="", help="the models it may use, names or globs ('claude-* qwen3'); "
                                                        "default: every model")
        parser.add_argument("--expires", default="", help="YYYY-MM-DD: refused as expired from that day, "
                                                         "00:00 UTC; default: never")

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
        key, secret = ClientKey.objects.create_key(name, rate_limit=options["rate_limit"],
                                                   models=options["models"].strip(), expires=expires)
        self.stderr.write(f"Created client key {key}. Store it now: it is not shown again.")
        self.stdout.write(secret)
