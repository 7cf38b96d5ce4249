"""``manage.py rotatekeys``: re-encrypt what is kept encrypted (upstream keys, stored responses) with the newest key.

It lives in the state app, the highest of the apps whose rows it rewrites.
"""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from state.models import Conversation, ConversationItem, StoredItem, StoredResponse
from upstreams.crypto import DecryptionError
from upstreams.models import Upstream

BATCH = 500
# Every encrypted column of the state app, by model.
ENCRYPTED = ((StoredResponse, ["body", "events"]), (StoredItem, ["body"]), (Conversation, ["metadata"]),
             (ConversationItem, ["body"]))


class Command(BaseCommand):
    help = (
        "Re-encrypt every upstream API key, stored response and conversation with the first key of "
        "GATEWAY_ENCRYPTION_KEY (plain keys from before encryption are encrypted too). To rotate: "
        "1) make a key: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'; "
        "2) put it first, GATEWAY_ENCRYPTION_KEY=NEW,OLD, and restart every gateway process; "
        "3) run rotatekeys; "
        "4) drop OLD from GATEWAY_ENCRYPTION_KEY and restart again."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        count = stored = 0
        try:
            # All or nothing: a key that cannot be read leaves every row as it was.
            with transaction.atomic():
                for upstream in Upstream.objects.select_for_update().exclude(api_key="").order_by("pk"):
                    upstream.save(update_fields=["api_key"])
                    count += 1
                for model, fields in ENCRYPTED:
                    for row in model.objects.select_for_update().order_by("pk").iterator(chunk_size=BATCH):
                        row.save(update_fields=fields)
                        stored += 1
        except DecryptionError as exc:
            raise CommandError(f"{exc}. Nothing was changed: list the old key in GATEWAY_ENCRYPTION_KEY too.") from None
        self.stdout.write(f"Re-encrypted {count} upstream key(s) and {stored} stored response and conversation "
                          "row(s) with the first key of GATEWAY_ENCRYPTION_KEY.")
