from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from plumbing.ratelimit import parse_rate
from upstreams.models import ClientKey


class Command(BaseCommand):
    help = "Create a client API key and print it once, on the last line (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="who or what the key is for")
        parser.add_argument("--rate-limit", default="", help="e.g. 600/m; empty uses GATEWAY_RATE_LIMIT")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name:
            raise CommandError("the key needs a name")
        try:
            parse_rate(options["rate_limit"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        key, secret = ClientKey.objects.create_key(name, rate_limit=options["rate_limit"])
        self.stderr.write(f"Created client key {key}. Store it now: it is not shown again.")
        self.stdout.write(secret)
