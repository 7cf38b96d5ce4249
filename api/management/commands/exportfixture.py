"""``manage.py exportfixture REQUEST_ID``: write a flight recording as a test fixture, to replay without the server."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from logs.recording.fixtures import FIXTURES, NoRecording, Recorded, recorded_by_id


class Command(BaseCommand):
    help = (f"Write a recorded exchange as a JSON fixture (default {FIXTURES}/REQUEST_ID.json; '-' prints it). "
            "tests/api/test_recorded_fixtures.py replays every fixture there and checks the stream the client "
            "gets: attach the file to a bug report, or add it to the suite with the fix.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("request_id", help="the x-request-id of the recorded request")
        parser.add_argument("--out", help="where to write it ('-': standard output)")

    def handle(self, *args: Any, **options: Any) -> None:
        recorded = _by_id(options["request_id"])
        data = recorded.fixture_bytes()
        if options["out"] == "-":
            self.stdout.write(data.decode())
            return
        path = Path(options["out"]) if options["out"] else FIXTURES / recorded.file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.stdout.write(f"Wrote {path} ({len(data)} bytes). Replay it: manage.py replay --fixture {path}")


def _by_id(request_id: str) -> Recorded:
    try:
        return recorded_by_id(request_id)
    except NoRecording as exc:
        raise CommandError(str(exc)) from None
