"""Model fields: ``EncryptedTextField`` keeps a secret encrypted in the database, plain in Python."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Expression

from upstreams import crypto


class EncryptedTextField(models.TextField):
    """Text stored as a prefixed Fernet token (``fernet:...``); model code reads and writes plain text.

    Code using ``upstream.api_key`` needs no change, and a database dump or leak shows only
    tokens. Tokens are randomised, so the column cannot be filtered on, except for "" (no key).
    """

    def from_db_value(self, value: str | None, expression: Expression, connection: BaseDatabaseWrapper) -> str | None:
        if value is None:
            return value
        return crypto.decrypt(value, settings.GATEWAY_ENCRYPTION_KEYS)

    def to_python(self, value: Any) -> str | None:
        # Deserialization (loaddata) hands over the token that value_to_string dumped.
        value = super().to_python(value)
        if value is None or not crypto.is_encrypted(value):
            return value
        try:
            return crypto.decrypt(value, settings.GATEWAY_ENCRYPTION_KEYS)
        except crypto.DecryptionError as exc:
            raise ValidationError(str(exc), code="undecryptable") from None

    def get_prep_value(self, value: Any) -> Any:
        # Field's, not TextField's: that one calls to_python, which would decrypt a value
        # that merely looks like a token instead of storing it as given.
        value = models.Field.get_prep_value(self, value)
        if value is None:
            return value
        return crypto.encrypt(str(value), settings.GATEWAY_ENCRYPTION_KEYS)

    def value_to_string(self, obj: models.Model) -> str:
        # dumpdata writes tokens, never plain keys, to backups and fixtures.
        return crypto.encrypt(str(self.value_from_object(obj) or ""), settings.GATEWAY_ENCRYPTION_KEYS)
