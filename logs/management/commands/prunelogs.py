"""``manage.py prunelogs``: delete request log rows and stored responses past their retention (run it daily)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.timezone import now

from logs.models import Recording, RequestLog
from logs.pages.filters import parse_age
from state.models import StoredResponse


class Command(BaseCommand):
    help = ("Delete request log rows older than --older-than (30d, 12h, 2w...); without it, older than "
            "GATEWAY_LOG_RETENTION_DAYS days (default 30; 0 keeps every row). Stored responses older than "
            "GATEWAY_RESPONSE_RETENTION_DAYS days (default 30; 0 keeps them) go too.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", metavar="AGE", help="e.g. 30d, 12h, 90m or 2w")
        parser.add_argument("--dry-run", action="store_true", help="only count the rows that would go")

    def handle(self, *args: Any, **options: Any) -> None:
        self.prune_logs(options)
        self.prune_responses(dry_run=options["dry_run"])

    def prune_responses(self, *, dry_run: bool) -> None:
        days = settings.GATEWAY_RESPONSE_RETENTION_DAYS
        if not days:
            self.stdout.write("GATEWAY_RESPONSE_RETENTION_DAYS is 0: every stored response is kept.")
            return
        cutoff = now() - timedelta(days=days)
        if dry_run:
            count = StoredResponse.objects.filter(created__lt=cutoff).count()
            self.stdout.write(f"Would delete {count} stored response(s) created before {cutoff:%Y-%m-%d %H:%M} UTC.")
            return
        count = StoredResponse.objects.prune(cutoff)
        self.stdout.write(f"Deleted {count} stored response(s) created before {cutoff:%Y-%m-%d %H:%M} UTC.")

    def prune_logs(self, options: dict[str, Any]) -> None:
        if options["older_than"]:
            try:
                age = parse_age(options["older_than"])
            except ValueError as exc:
                raise CommandError(f"--older-than: {exc}") from None
        elif settings.GATEWAY_LOG_RETENTION_DAYS:
            age = timedelta(days=settings.GATEWAY_LOG_RETENTION_DAYS)
        else:
            self.stdout.write("GATEWAY_LOG_RETENTION_DAYS is 0: every row is kept, nothing was deleted.")
            return
        if age <= timedelta(0):
            raise CommandError("--older-than must be more than 0")
        cutoff = now() - age
        if options["dry_run"]:
            count = RequestLog.objects.filter(started__lt=cutoff).count()
            self.stdout.write(f"Would delete {count} request log row(s) started before {cutoff:%Y-%m-%d %H:%M} UTC.")
            return
        count = RequestLog.objects.prune(cutoff)
        recordings = Recording.objects.prune(cutoff)
        self.stdout.write(f"Deleted {count} request log row(s) and {recordings} flight recording(s) started before "
                          f"{cutoff:%Y-%m-%d %H:%M} UTC.")
