from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from upstreams.management.budgets import dollars
from upstreams.models import Price


class Command(BaseCommand):
    help = ("Set what a model costs, in US dollars per million tokens (a name as clients ask for it, or a glob): "
            "every request's audit row records its cost at the price of its time; dollar budgets count it.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", help="a model name (gpt-5.1-codex) or a glob (claude-*)")
        parser.add_argument("--input", required=True, help="USD per million input tokens")
        parser.add_argument("--output", required=True, help="USD per million output tokens (reasoning included)")
        parser.add_argument("--cached-input", default=None,
                            help="USD per million input tokens read from the prompt cache; default: the input price")
        parser.add_argument("--delete", action="store_true", help="remove the model's price instead")

    def handle(self, *args: Any, **options: Any) -> None:
        pattern = options["model"].strip()
        if options["delete"]:
            deleted = Price.objects.filter(pattern=pattern).delete()[0]
            self.stdout.write(f"Removed the price of {pattern}." if deleted else f"{pattern} had no price.")
            return
        fields = {"input": dollars(options["input"], "--input"), "output": dollars(options["output"], "--output"),
                  "cached_input": (dollars(options["cached_input"], "--cached-input")
                                   if options["cached_input"] is not None else None)}
        price, created = Price.objects.update_or_create(pattern=pattern, defaults=fields)
        cached = f", cached input ${price.cached_input}" if price.cached_input is not None else ""
        self.stdout.write(f"{'Set' if created else 'Changed'} the price of {pattern}: input ${price.input}, "
                          f"output ${price.output}{cached} per million tokens.")
