"""Fernet tokens for upstream keys at rest: prefix, key list, legacy values, SECRET_KEY derivation."""
from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from upstreams.crypto import PREFIX, DecryptionError, decrypt, derive_key, encrypt, parse_keys

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def test_encrypt_gives_a_prefixed_token_that_never_repeats() -> None:
    """Fernet tokens carry a random IV: two saves of one key differ, so equal keys do not show as equal rows."""
    first, second = encrypt("sk-live-1", [NEW]), encrypt("sk-live-1", [NEW])
    assert first.startswith(PREFIX) and second.startswith(PREFIX)
    assert first != second and "sk-live-1" not in first
    assert decrypt(first, [NEW]) == decrypt(second, [NEW]) == "sk-live-1"


def test_empty_key_is_stored_empty() -> None:
    """An upstream without a key keeps "" so `if upstream.api_key` still means "has a key"."""
    assert encrypt("", [NEW]) == "" and decrypt("", [NEW]) == ""


def test_first_key_encrypts_and_every_key_decrypts() -> None:
    token = encrypt("sk-live-1", [OLD])
    assert decrypt(token, [NEW, OLD]) == "sk-live-1"
    assert decrypt(encrypt("sk-live-1", [NEW, OLD]), [NEW]) == "sk-live-1"


def test_unprefixed_legacy_value_reads_as_plain_text() -> None:
    """Rows written before encryption still work until the migration or rotatekeys encrypts them."""
    assert decrypt("sk-legacy-plain", [NEW]) == "sk-legacy-plain"


def test_token_of_a_dropped_key_raises_without_showing_the_token() -> None:
    token = encrypt("sk-live-1", [OLD])
    with pytest.raises(DecryptionError) as caught:
        decrypt(token, [NEW])
    assert token[len(PREFIX):] not in str(caught.value) and OLD not in str(caught.value)


def test_derived_key_is_a_stable_fernet_key_per_secret_key() -> None:
    key = derive_key("s3cret")
    Fernet(key)  # a valid key: 32 url-safe base64 bytes
    assert key == derive_key("s3cret") and key != derive_key("other")


def test_parse_keys_keeps_order_and_appends_the_derived_key() -> None:
    """The derived key comes last, so rows written before GATEWAY_ENCRYPTION_KEY was set stay readable."""
    assert parse_keys(f" {NEW} , {OLD},", "s3cret") == [NEW, OLD, derive_key("s3cret")]
    assert parse_keys("", "s3cret") == [derive_key("s3cret")]
    assert parse_keys(derive_key("s3cret"), "s3cret") == [derive_key("s3cret")]


def test_parse_keys_names_a_bad_key_by_position_not_by_text() -> None:
    with pytest.raises(ValueError, match="key #2") as caught:
        parse_keys(f"{NEW},not-a-fernet-key", "s3cret")
    assert "not-a-fernet-key" not in str(caught.value)
