"""The gateway's compaction items: a summary sealed for the client that asked, opened when it comes back.

``taken_in`` resolves the compaction items of a request's history before it is routed: the
gateway's own become the summary they carry (a user message, bridge/history/compaction.py);
one it cannot open is refused with a 400 naming it; another server's (OpenAI's) goes on
only to an upstream that keeps state (it may be its own), and is otherwise left out, which
the audit row says: never sent as garbage, never dropped without a word.

``encrypted_content`` is opaque to Codex, which sends it back verbatim; it must be opaque to
everyone else too, and only this gateway's keys may open it, only for the client key it was
made for. A sealed item is ``cgw1.`` (the version) and a Fernet token (AES-128-CBC and
HMAC-SHA256) of ``{"k": the client key's fingerprint, "s": the summary, "m": the model,
"t": when}``, under keys derived from GATEWAY_ENCRYPTION_KEY's (the first seals, all open:
rotation works as for upstream keys) with a label of their own, so a sealing key is never
an API-key key. Items beyond MAX_SEALED characters are not opened at all.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import time
from collections.abc import Sequence
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from bridge.errors import InvalidRequestError
from bridge.history import compaction
from upstreams.models import ClientKey

VERSION = "cgw1."
MAX_SEALED = 512 * 1024  # characters of encrypted_content: a summary is at most a few thousand tokens
_LABEL = b"codex-gateway/compaction-seal/v1:"


class Unsealable(ValueError):
    """A compaction item that says it is ours but that we cannot open for this key: why, in words for the client."""


def is_ours(content: str) -> bool:
    """Whether an ``encrypted_content`` claims to be this gateway's (another server's is left to that server)."""
    return content.startswith(VERSION)


def seal(summary: str, key: ClientKey | None, model: str) -> str:
    """Return the ``encrypted_content`` that carries ``summary`` for ``key``."""
    payload = orjson.dumps({"k": fingerprint(key), "s": summary, "m": model, "t": int(time.time())})
    return VERSION + _keyring(tuple(settings.GATEWAY_ENCRYPTION_KEYS)).encrypt(payload).decode("ascii")


def unseal(content: str, key: ClientKey | None) -> str:
    """Return the summary a sealed item carries; raise ``Unsealable`` for one altered, too big, or another key's."""
    if len(content) > MAX_SEALED:
        raise Unsealable(f"its encrypted_content is longer than {MAX_SEALED} characters")
    try:
        payload = orjson.loads(_keyring(tuple(settings.GATEWAY_ENCRYPTION_KEYS)).decrypt(
            content[len(VERSION):].encode("ascii")))
    except (InvalidToken, UnicodeError, orjson.JSONDecodeError):
        raise Unsealable("it was altered, or sealed by another gateway") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("s"), str):
        raise Unsealable("it was altered, or sealed by another gateway")
    if payload.get("k") != fingerprint(key):
        raise Unsealable("it was sealed for another client key")
    return str(payload["s"])


def taken_in(body: dict[str, Any], key: ClientKey | None, *, foreign_kept: bool, notes: list[str]) -> dict[str, Any]:
    """Return ``body`` with its compaction items resolved (itself when it has none); notes say what was left out."""
    items = body.get("input")
    if not isinstance(items, list) or not any(_is_compaction(item) for item in items):
        return body
    resolved: list[Any] = []
    foreign = 0
    for position, item in enumerate(items):
        if not _is_compaction(item):
            resolved.append(item)
            continue
        content = item.get("encrypted_content")
        if isinstance(content, str) and is_ours(content):
            try:
                resolved.append(compaction.summary_message(unseal(content, key)))
            except Unsealable as exc:
                raise InvalidRequestError(
                    f"input[{position}] is a compaction item this gateway cannot open: {exc}.",
                    param=f"input[{position}].encrypted_content", code="invalid_encrypted_content") from None
        elif foreign_kept:
            resolved.append(item)
        else:
            foreign += 1
    if foreign:
        notes.append(f"{foreign} compaction item(s) made by another server left out: this upstream cannot read "
                     "them (only an upstream that keeps state, such as the one that made them, can)")
    return {**body, "input": resolved}


def _is_compaction(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type") == compaction.ITEM


def fingerprint(key: ClientKey | None) -> str:
    """Who a sealed item belongs to: a digest of the client key's stored hash ("-" for anonymous requests)."""
    return hashlib.sha256(key.hashed.encode()).hexdigest()[:16] if key is not None else "-"


@functools.lru_cache(maxsize=8)
def _keyring(keys: Sequence[str]) -> MultiFernet:
    return MultiFernet([Fernet(_sealing_key(key)) for key in keys])


def _sealing_key(key: str) -> bytes:
    """The sealing key derived from one of GATEWAY_ENCRYPTION_KEY's Fernet keys."""
    return base64.urlsafe_b64encode(hashlib.sha256(_LABEL + base64.urlsafe_b64decode(key)).digest())
