"""The client keys: a secret shown once and kept hashed, what the key may use, and until when.

The API finds a key through the routing copy (upstreams/routing.py); ``ClientKey.objects.for_secret``
is the database's side of that lookup.
"""
from __future__ import annotations

import fnmatch
import hashlib
import hmac
import secrets
from datetime import datetime

from django.db import models
from django.utils.timezone import now

from upstreams.models.spend import Budgeted, Team
from upstreams.models.upstream import PATTERN_SPLIT

KEY_PREFIX = "sk-cgw-"
VISIBLE_KEY_CHARS = 12


class ClientKeyManager(models.Manager["ClientKey"]):
    def create_key(self, name: str, **fields: object) -> tuple[ClientKey, str]:
        """Create a key and return it with its secret, which is not stored and never shown again."""
        key = self.model(name=name, **fields)
        secret = self.issue(key)
        key.save()
        return key, secret

    def issue(self, key: ClientKey) -> str:
        """Give an unsaved ``key`` a new secret (its prefix and hash) and return the secret."""
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key.prefix, key.hashed = secret[:VISIBLE_KEY_CHARS], hash_secret(secret)
        return secret

    def for_secret(self, secret: str) -> ClientKey | None:
        return _match(self.filter(prefix=secret[:VISIBLE_KEY_CHARS], active=True).select_related("team"), secret)

    def any_for_secret(self, secret: str) -> ClientKey | None:
        """The key ``secret`` belongs to, active or revoked (with its team: its budget applies too)."""
        return _match(self.filter(prefix=secret[:VISIBLE_KEY_CHARS]).select_related("team"), secret)

    def revoked_for_secret(self, secret: str) -> ClientKey | None:
        """The revoked key ``secret`` belongs to, if any: its name goes on the refused request's audit row."""
        return _match(self.filter(prefix=secret[:VISIBLE_KEY_CHARS], active=False).select_related("team"), secret)


def hash_secret(secret: str) -> str:
    # Keys are 256 random bits: a fast hash is enough, no key stretching needed.
    return hashlib.sha256(secret.encode()).hexdigest()


def _match(candidates: models.QuerySet[ClientKey] | list[ClientKey], secret: str) -> ClientKey | None:
    hashed = hash_secret(secret)
    for key in candidates:
        if hmac.compare_digest(key.hashed, hashed):
            return key
    return None


class ClientKey(Budgeted):
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=VISIBLE_KEY_CHARS, editable=False)
    hashed = models.CharField(max_length=64, unique=True, editable=False)
    active = models.BooleanField(default=True)
    rate_limit = models.CharField(
        max_length=32, blank=True, help_text="e.g. 600/m or 10/s; empty uses GATEWAY_RATE_LIMIT."
    )
    # Scope: until when the key works, and (last) the models it may use; a model outside it is
    # answered as one that does not exist.
    expires = models.DateTimeField(
        null=True, blank=True, help_text="From this moment (UTC) the key is refused as expired; empty: never.")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="keys",
                             help_text="Its requests count against the team's budget too.")
    reserve_tokens = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Output tokens a budget holds for a request that sets no limit of its own (max_output_tokens) "
                  "until it ends; empty: GATEWAY_BUDGET_RESERVE.")
    created = models.DateTimeField(default=now)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)
    # Last: from here on the name ``models`` means this field, not django.db.models.
    models = models.TextField(
        "models", blank=True,
        help_text="Model names or globs the key may use, separated by spaces, commas or lines (claude-* qwen3); "
                  "empty: every model.")

    objects = ClientKeyManager()

    class Meta:
        # The auth lookup: WHERE prefix = ? AND active.
        indexes = [models.Index(fields=["prefix"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def team_name(self) -> str:
        """Its team's name, "" for none (no query without a team; keys are read with theirs)."""
        return self.team.name if self.team_id is not None and self.team is not None else ""

    def allows(self, model: str) -> bool:
        """Whether the key's scope takes ``model`` (the name the client asks for)."""
        patterns = [p for p in PATTERN_SPLIT.split(self.models.strip()) if p]
        return not patterns or any(fnmatch.fnmatchcase(model, pattern) for pattern in patterns)

    def expired(self, at: datetime) -> bool:
        return self.expires is not None and at >= self.expires
