"""``manage.py replay REQUEST_ID``: run a flight recording through today's translator and show what differs."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandError, CommandParser

from api.replay import replay
from logs.recording.fixtures import NoRecording, Recorded, recorded_by_id


class Command(BaseCommand):
    help = ("Replay a recorded exchange (set 'record the next exchanges' on its upstream in the admin first) "
            "through today's gateway: the upstream request it would build, and what the client would be sent, "
            "each against what was recorded. Exit status 1 when they differ.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("request_id", nargs="?", help="the x-request-id of the recorded request")
        parser.add_argument("--fixture", type=Path, help="replay a fixture file (manage.py exportfixture) instead")
        parser.add_argument("--show", action="store_true", help="also print what the client would be sent today")
        parser.add_argument("--accept", action="store_true",
                            help="with --fixture: write what today's gateway sends into the fixture (after a fix)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["fixture"] is not None:
            try:
                recorded = Recorded.from_fixture(orjson.loads(options["fixture"].read_bytes()))
            except (OSError, orjson.JSONDecodeError, KeyError, ValueError) as exc:
                raise CommandError(f"{options['fixture']}: not a recording fixture ({exc})") from None
        elif options["request_id"]:
            recorded = _by_id(options["request_id"])
        else:
            raise CommandError("give a REQUEST_ID, or --fixture FILE")
        result = asyncio.run(replay(recorded))
        for line in result.lines():
            self.stdout.write(line)
        if options["show"]:
            self.stdout.write(result.replayed.decode("utf-8", "replace"))
        if options["accept"] and options["fixture"] is not None and not result.same:
            options["fixture"].write_bytes(recorded.accepting(result.sent, result.replayed).fixture_bytes())
            self.stdout.write(f"Accepted: {options['fixture']} now holds what today's gateway sends.")
            return
        if not result.same:
            raise SystemExit(1)


def _by_id(request_id: str) -> Recorded:
    try:
        return recorded_by_id(request_id)
    except NoRecording as exc:
        raise CommandError(str(exc)) from None
