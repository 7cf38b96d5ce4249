"""Upstream API keys at rest: Fernet tokens under a list of keys, newest first.

Pure (cryptography only, no Django): settings parse ``GATEWAY_ENCRYPTION_KEY`` with
``parse_keys``; ``upstreams.fields.EncryptedTextField`` encrypts and decrypts with the result.
"""
from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

# Stored values start with this, so a plain value (a row from before encryption) is told
# apart from a token and still read; ``0002_encrypt_api_keys`` encrypts those rows.
PREFIX = "fernet:"
# A label keeps the derived key distinct from anything else ever hashed from SECRET_KEY.
_DERIVATION_LABEL = b"codex-gateway/upstream-api-keys/v1:"


class DecryptionError(ValueError):
    """A stored token that none of the configured keys opens."""


def derive_key(secret_key: str) -> str:
    """Return the Fernet key derived from ``SECRET_KEY``.

    Used when ``GATEWAY_ENCRYPTION_KEY`` is unset, so a development gateway encrypts
    without any setup; SHA-256 gives exactly the 32 bytes a Fernet key holds.
    """
    digest = hashlib.sha256(_DERIVATION_LABEL + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def parse_keys(raw: str, secret_key: str) -> list[str]:
    """Return the encryption keys from ``GATEWAY_ENCRYPTION_KEY``: the first encrypts, all decrypt.

    The key derived from ``SECRET_KEY`` always comes last: setting ``GATEWAY_ENCRYPTION_KEY``
    for the first time then keeps the rows written before readable until ``rotatekeys``
    re-encrypts them. Raises ValueError naming a bad key by position, never by its text.
    """
    keys = [part.strip() for part in raw.split(",") if part.strip()]
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ValueError(
                f"key #{position} is not a Fernet key (32 url-safe base64-encoded bytes; "
                "make one with Fernet.generate_key())"
            ) from None
    derived = derive_key(secret_key)
    return [*keys, derived] if derived not in keys else keys


@functools.lru_cache(maxsize=8)
def _keyring(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def is_encrypted(stored: str) -> bool:
    return stored.startswith(PREFIX)


def encrypt(plain: str, keys: Sequence[str]) -> str:
    """Return the stored form of ``plain``, encrypted with the first key; "" stays "" (no key set)."""
    if not plain:
        return plain
    return PREFIX + _keyring(tuple(keys)).encrypt(plain.encode()).decode("ascii")


def decrypt(stored: str, keys: Sequence[str]) -> str:
    """Return the plain text of a stored value; a value without the prefix is a legacy plain one."""
    if not is_encrypted(stored):
        return stored
    try:
        return _keyring(tuple(keys)).decrypt(stored[len(PREFIX):].encode("ascii")).decode()
    except (InvalidToken, UnicodeError):
        raise DecryptionError(
            "a stored upstream API key cannot be decrypted with GATEWAY_ENCRYPTION_KEY "
            "(was the key that encrypted it dropped, or SECRET_KEY changed?)"
        ) from None
