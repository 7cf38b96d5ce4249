"""``manage.py probe NAME``: what the upstream's server can do, and the settings that fit it."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from upstreams.models import Upstream
from upstreams.probe.capabilities import applied, probe_capabilities


class Command(BaseCommand):
    help = "Check a configured upstream against its live server: models, Chat streaming, tools, /v1/responses."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the upstream's name, as in the admin")
        parser.add_argument("--apply", action="store_true", help="set the recommended settings on the upstream")

    def handle(self, *args: Any, **options: Any) -> None:
        upstream = Upstream.objects.filter(name=options["name"]).first()
        if upstream is None:
            names = ", ".join(Upstream.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"no upstream named {options['name']!r} (there are: {names})")
        report = probe_capabilities(upstream)
        self.stdout.write("\n".join(report.lines()))
        if options["apply"]:
            changed = applied(upstream, report)
            said = ", ".join(f"{name} = {value}" for name, value in changed.items())
            self.stdout.write(f"Applied: {said}." if changed else "Applied: nothing to change.")
