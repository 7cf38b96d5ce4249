from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from upstreams.management.budgets import add_budget_arguments, budget_fields
from upstreams.models import Team


class Command(BaseCommand):
    help = ("Create a team or change its budget (keys join it with createapikey --team or in the admin); "
            "with no options, show it.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the team's name")
        add_budget_arguments(parser)
        parser.add_argument("--no-budget", action="store_true", help="remove its token and dollar budgets")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name:
            raise CommandError("the team needs a name")
        fields = budget_fields(options)
        if options["no_budget"]:
            fields.update(token_budget=None, usd_budget=None)
        team, created = Team.objects.get_or_create(name=name, defaults=fields)
        if not created and fields:
            for field, value in fields.items():
                setattr(team, field, value)
            team.save()
        tokens = f"{team.token_budget:,} tokens" if team.token_budget is not None else "no token limit"
        usd = f"${team.usd_budget:,.2f}" if team.usd_budget is not None else "no dollar limit"
        verb = "Created" if created else ("Changed" if fields else "Team")
        self.stdout.write(f"{verb} {team}: {tokens}, {usd}, {team.get_budget_period_display()}; "
                          f"{team.keys.count()} keys.")
