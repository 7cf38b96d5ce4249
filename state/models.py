"""What the gateway keeps between requests: stored responses, conversations and their items (issue 11).

Storage grows with a conversation, not with its square: a response keeps only its own
input (the new items of its request) and its output, and points at the response it
continued. The history of a chain is read back with one recursive query (``chain``).
Item and response bodies are encrypted at rest (the upstream keys' Fernet keys).
"""
from __future__ import annotations

import base64
import secrets
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from django.conf import settings
from django.db import connection, models, transaction
from django.utils.timezone import now

from bridge.background import LIVE_STATUSES
from upstreams import crypto
from upstreams.fields import EncryptedTextField
from upstreams.models import ClientKey


class Side(models.TextChoices):
    INPUT = "input"
    OUTPUT = "output"


@dataclass(frozen=True, slots=True)
class ResponseToStore:
    """A response to store: the Response object, who made it, what it continued, its own input items."""

    response: dict[str, Any]
    key: ClientKey | None
    previous: StoredResponse | None
    inputs: list[dict[str, Any]]
    request_id: str
    events: list[dict[str, Any]] | None = None  # a background response's stream, for clients that resume it


class Chain(NamedTuple):
    """A stored response, the items of its whole history, and the id of the chain's first response (its session)."""

    head: StoredResponse
    items: list[dict[str, Any]]
    root: str


class StoredResponseManager(models.Manager["StoredResponse"]):
    def for_key(self, response_id: str, key: ClientKey | None) -> StoredResponse | None:
        """Return the stored response ``response_id`` if ``key`` owns it (None for anonymous requests' own)."""
        return self.filter(pk=response_id, key=key).first()

    def store(self, response: dict[str, Any], *, key: ClientKey | None, previous: StoredResponse | None,
              inputs: list[dict[str, Any]], request_id: str) -> StoredResponse:
        """Write a finished response, its own input items and its output items, in one transaction."""
        [stored] = self.store_many([ResponseToStore(response, key, previous, inputs, request_id)])
        return stored

    def store_many(self, finished: list[ResponseToStore]) -> list[StoredResponse]:
        """Write finished responses and their items in one transaction: two statements, however many.

        Many streams end at once under load; one commit for all of them is what keeps
        storing cheap. A statement and a commit per response were a third of the gateway's
        samples at 50 streams on SQLite (py-spy), and a stored bridged stream took 1.31x
        the CPU of one with ``store: false``; batched (api/stored/keeper.py's StoreWriter), 1.11x
        (median of 3 paired bench runs each, 2026-12-01).
        """
        responses: list[StoredResponse] = []
        items: list[StoredItem] = []
        for one in finished:
            stored = _row(one)
            outputs = [item for item in one.response.get("output") or [] if isinstance(item, dict)]
            items += [StoredItem(response=stored, key=one.key, item_id=str(item.get("id", ""))[:128], side=side,
                                 position=n, body=_dumps(item))
                      for n, (side, item) in enumerate([*((Side.INPUT, i) for i in one.inputs),
                                                        *((Side.OUTPUT, o) for o in outputs)])]
            responses.append(stored)
        with transaction.atomic():
            # A background response's row exists from the start (status queued): it is finished
            # in place. Any other id already taken is refused, never overwritten: it may be
            # another key's (an upstream that repeats ids).
            self.bulk_create([r for r in responses if not r.background])
            self.bulk_create([r for r in responses if r.background], update_conflicts=True, unique_fields=["id"],
                             update_fields=["status", "model", "body", "events"])
            StoredItem.objects.bulk_create(items)
        return responses

    def queue(self, one: ResponseToStore, runner: str) -> StoredResponse:
        """Write a background response as it starts (status queued), before its upstream is asked."""
        stored = _row(one, background=True, runner=runner, heartbeat=now())
        stored.save(force_insert=True)
        return stored

    def progress(self, response: dict[str, Any]) -> None:
        """Record that a background response's upstream started answering (what a poll then reads)."""
        live = self.filter(pk=response["id"], status__in=LIVE_STATUSES)
        live.update(status=response["status"], body=_dumps(response))

    def beat(self, runner: str) -> int:
        """Say that the process ``runner`` still answers its background responses; return how many."""
        return self.filter(runner=runner, status__in=LIVE_STATUSES).update(heartbeat=now())

    def lose(self, stale_before: datetime, response_id: str | None = None) -> list[str]:
        """Mark failed the background responses whose process stopped beating before ``stale_before``.

        A process that died (SIGKILL, a crash, a lost host) cannot say so itself: its
        responses would be ``in_progress`` forever. Returns the ids it marked.
        """
        rows = self.filter(status__in=LIVE_STATUSES, background=True, heartbeat__lt=stale_before)
        if response_id is not None:
            rows = rows.filter(pk=response_id)
        lost = []
        for stored in rows:
            body = {**stored.to_dict(), "status": "failed",
                    "error": {"code": "background_lost",
                              "message": "The gateway process answering this response stopped before it finished; "
                                         "send the request again."}}
            if self.filter(pk=stored.pk, status__in=LIVE_STATUSES).update(status="failed", body=_dumps(body)):
                lost.append(stored.pk)
        return lost

    def chain(self, response_id: str, key: ClientKey | None) -> Chain | None:
        """Return the stored response ``response_id``, its whole history (oldest first), its chain's first id.

        The history is the input and output of each response of the chain, from the first
        one to ``response_id`` itself. None when the response is not this key's, or when a
        response of its history is gone (deleted or pruned): a history with a hole would be
        answered from silently, and wrongly.
        """
        head = self.for_key(response_id, key)
        if head is None:
            return None
        sql = f"""{_CHAIN}
            SELECT c.id, c.depth, i.body FROM chain c LEFT JOIN {StoredItem._meta.db_table} i ON i.response_id = c.id
            ORDER BY c.depth, i.position
        """
        with connection.cursor() as cursor:
            cursor.execute(sql, [head.pk])
            rows = cursor.fetchall()
        depths = {depth for _, depth, _ in rows}
        if depths != set(range(head.depth + 1)):
            return None
        keys = settings.GATEWAY_ENCRYPTION_KEYS
        root = next(str(pk) for pk, depth, _ in rows if depth == 0)
        return Chain(head, [orjson.loads(crypto.decrypt(body, keys)) for _, _, body in rows if body is not None], root)

    def lineage(self, response_id: str) -> list[tuple[str, str, int]]:
        """Return ``(id, request_id, depth)`` of the response and of those it continued, newest first (staff's view)."""
        with connection.cursor() as cursor:
            cursor.execute(f"{_CHAIN} SELECT c.id, r.request_id, c.depth FROM chain c "
                           f"JOIN {StoredResponse._meta.db_table} r ON r.id = c.id ORDER BY c.depth DESC",
                           [response_id])
            return [(str(pk), str(request_id), int(depth)) for pk, request_id, depth in cursor.fetchall()]

    def prune(self, before: datetime, batch: int = 1000) -> int:
        """Delete the responses created before ``before`` (their items go with them); return how many went."""
        deleted = 0
        while True:
            ids = list(self.filter(created__lt=before).order_by("created").values_list("pk", flat=True)[:batch])
            if not ids:
                return deleted
            self.filter(pk__in=ids).delete()
            deleted += len(ids)


class StoredResponse(models.Model):
    id = models.CharField(max_length=128, primary_key=True)  # the Response object's own id (resp_...)
    key = models.ForeignKey(ClientKey, null=True, blank=True, on_delete=models.CASCADE)
    # What this response continued (previous_response_id). A pruned or deleted one leaves NULL
    # here, and ``depth`` then tells that the history has a hole.
    previous = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL)
    depth = models.PositiveIntegerField(default=0)  # responses before this one in its chain
    request_id = models.CharField(max_length=128, blank=True)  # its audit row in the request log
    status = models.CharField(max_length=16)
    model = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(default=now)
    body = EncryptedTextField()  # the Response object, as GET /v1/responses/{id} returns it
    # Background responses (api/background/): the stream, kept for clients that resume it
    # once it is over; the process answering it (its channel) and when it last said so.
    background = models.BooleanField(default=False)
    events = EncryptedTextField(blank=True, default="")
    runner = models.CharField(max_length=200, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)

    objects = StoredResponseManager()

    class Meta:
        indexes = [
            models.Index(fields=["created"]),  # prune: WHERE created < ?
            models.Index(fields=["status", "heartbeat"]),  # lost background responses, swept every heartbeat
        ]

    def __str__(self) -> str:
        return self.id

    def to_dict(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.body)
        return value

    @property
    def running(self) -> bool:
        """Whether this is a background response still being answered."""
        return self.background and self.status in LIVE_STATUSES

    def stream(self) -> list[dict[str, Any]]:
        """Return a finished background response's events (none for another, or one whose process died)."""
        if not self.events:
            return []
        value: list[dict[str, Any]] = orjson.loads(zlib.decompress(base64.b64decode(self.events)))
        return value


class StoredItemQuerySet(models.QuerySet["StoredItem"]):
    def by_item_id(self, ids: list[str], key: ClientKey | None) -> dict[str, dict[str, Any]]:
        """Return the key's stored items with these ids (the latest of each: clients resend items), by id."""
        found: dict[str, dict[str, Any]] = {}
        for item in self.filter(key=key, item_id__in=ids).order_by("response__created", "position"):
            found[item.item_id] = item.to_dict()
        return found


class Item(models.Model):
    """An input or output item as the API lists it back: its id, its owner, its JSON (encrypted)."""

    key = models.ForeignKey(ClientKey, null=True, blank=True, on_delete=models.CASCADE)  # the owner, for references
    item_id = models.CharField(max_length=128)  # the item's own id (msg_..., fc_...); not unique: clients resend
    body = EncryptedTextField()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.item_id

    def to_dict(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.body)
        return value


class StoredItem(Item):
    response = models.ForeignKey(StoredResponse, on_delete=models.CASCADE, related_name="items")
    side = models.CharField(max_length=8, choices=Side.choices)
    position = models.PositiveIntegerField()  # order within its response: its input, then its output

    objects = StoredItemQuerySet.as_manager()

    class Meta:
        ordering = ["response", "position"]
        indexes = [
            models.Index(fields=["key", "item_id"]),  # item_reference: WHERE key = ? AND item_id IN (...)
            models.Index(fields=["response", "side", "position"]),  # input_items of one response, in order
        ]



class ConversationManager(models.Manager["Conversation"]):
    def for_key(self, conversation_id: str, key: ClientKey | None) -> Conversation | None:
        return self.filter(pk=conversation_id, key=key).first()

    def start(self, key: ClientKey | None, metadata: dict[str, str], items: list[dict[str, Any]]) -> Conversation:
        """Create a conversation with its first items, in one transaction."""
        conversation = Conversation(id=f"conv_{secrets.token_hex(24)}", key=key)
        conversation.set_metadata(metadata)
        with transaction.atomic():
            conversation.save(force_insert=True)
            conversation.add(items)
        return conversation


class Conversation(models.Model):
    id = models.CharField(max_length=128, primary_key=True)  # conv_...
    key = models.ForeignKey(ClientKey, null=True, blank=True, on_delete=models.CASCADE)
    metadata = EncryptedTextField(default="{}")  # JSON: up to 16 string pairs, the client's own words
    created = models.DateTimeField(default=now)

    objects = ConversationManager()

    def __str__(self) -> str:
        return self.id

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "conversation", "created_at": int(self.created.timestamp()),
                "metadata": orjson.loads(self.metadata)}

    def set_metadata(self, metadata: dict[str, str]) -> None:
        self.metadata = _dumps(metadata)

    def add(self, items: list[dict[str, Any]]) -> list[ConversationItem]:
        """Append ``items`` in order (ids ascending: the table's own sequence keeps the order)."""
        return ConversationItem.objects.bulk_create(
            ConversationItem(conversation=self, key=self.key, item_id=str(item["id"])[:128], body=_dumps(item))
            for item in items)

    def history(self) -> list[dict[str, Any]]:
        """Return every item, oldest first: what a response in this conversation sees before its input."""
        return [item.to_dict() for item in self.items.order_by("pk")]


class ConversationItem(Item):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="items")

    class Meta:
        indexes = [models.Index(fields=["conversation", "item_id"])]  # GET/DELETE one item of a conversation


# A response and every response it continued: one query for a chain of any length (a
# recursive CTE, on SQLite and PostgreSQL alike); ``%s`` is the newest response's id.
_CHAIN = """
    WITH RECURSIVE chain(id, previous_id, depth) AS (
        SELECT id, previous_id, depth FROM state_storedresponse WHERE id = %s
        UNION ALL
        SELECT r.id, r.previous_id, r.depth FROM state_storedresponse r JOIN chain c ON r.id = c.previous_id
    )
"""


def _row(one: ResponseToStore, **fields: Any) -> StoredResponse:
    """Return the row of ``one`` (unsaved), as ``store_many`` and ``queue`` both write it; ``fields`` override."""
    return StoredResponse(**{
        "id": one.response["id"], "key": one.key, "previous": one.previous,
        "depth": one.previous.depth + 1 if one.previous else 0, "request_id": one.request_id[:128],
        "status": str(one.response.get("status", ""))[:16], "model": str(one.response.get("model", ""))[:200],
        "body": _dumps(one.response), "background": one.events is not None,
        "events": _pack(one.events) if one.events is not None else "", **fields})


def _pack(events: list[dict[str, Any]]) -> str:
    """Return a stream's events compressed (as text, for the encrypted field).

    Every delta repeats its item's id and each lifecycle event a whole Response: kept as
    JSON, a 1,000-delta answer's events took 198 KB beside its 6 KB Response; zlib makes
    that 4.5 KB (43x) for 0.8 ms of CPU, once per background response.
    """
    return base64.b64encode(zlib.compress(orjson.dumps(events))).decode()


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
