from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from plumbing import listen
from upstreams.mock.scenarios import DEMO, SCENARIOS
from upstreams.mock.server import MockUpstream


class Command(BaseCommand):
    help = ("Serve a mock Chat Completions upstream (the founding experiments, docs/responses-bridge.md §6) on "
            "loopback, under daphne.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--scenario", default="text", choices=sorted([*SCENARIOS, DEMO]))
        parser.add_argument("--port", type=int, default=9100)
        parser.add_argument("--host", default="127.0.0.1")

    def handle(self, *args: Any, **options: Any) -> None:
        # Imported here: daphne installs the Twisted asyncio reactor on import.
        from daphne.server import Server

        try:
            app = MockUpstream(options["scenario"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        host, port = options["host"], options["port"]
        self.stdout.write(f"mock upstream '{options['scenario']}' on http://{host}:{port}/v1", ending="\n")
        self.stdout.flush()
        Server(
            application=app,
            endpoints=[listen.endpoint(host, port)],  # the gateway's backlog: bursts reach it too
            verbosity=0,
        ).run()
