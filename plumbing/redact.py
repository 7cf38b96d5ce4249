"""Scrub secrets from text, headers and log records before they are written anywhere.

Pure (no Django): ``RedactingFilter`` sits on the root log handler (gatewaysite/settings.py
LOGGING); ``redact_headers`` and ``redact_text`` are for anything that stores what a client
or an upstream sent (docs/audit.md §4: bodies are stored only redacted).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key", "cookie", "set-cookie"})
# Shorter known secrets are not replaced verbatim: replacing every "abc" would mangle the text.
MIN_KNOWN_SECRET = 8

_VALUE = r"[^\s\"',;&}]+"
_PATTERNS = [
    # A header in a dump, a curl line or a repr: `Authorization: Bearer x`, `"api-key": "x"`, `?api_key=x`.
    re.compile(rf"\b((?:proxy-)?authorization|(?:x-)?api[-_]key)([\"']?\s*[:=]\s*[\"']?)"
               rf"(?:(?:bearer|basic|token)\s+)?{_VALUE}", re.IGNORECASE),
    # A credential on its own, e.g. a repr of header pairs: ('authorization', 'Bearer x').
    re.compile(rf"\b(bearer|basic)(\s+){_VALUE}", re.IGNORECASE),
]
# OpenAI-style keys wherever they appear: sk-..., sk-proj-..., sk-cgw-... (20 characters or more).
_KEY_TOKEN = re.compile(r"\bsk-[A-Za-z0-9_-]{17,}")


def redact_text(text: str, known: Iterable[str] = ()) -> str:
    """Return ``text`` with credentials replaced by ``[redacted]``.

    ``known`` are secrets to remove verbatim whatever their shape (an upstream's own key);
    the patterns catch header values and ``sk-`` keys. Redacting twice changes nothing.
    """
    for secret in known:
        if len(secret) >= MIN_KNOWN_SECRET:
            text = text.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(rf"\1\2{REDACTED}", text)
    return _KEY_TOKEN.sub(REDACTED, text)


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Return the headers with credential headers' values replaced and others scrubbed of keys."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {name: REDACTED if name.lower() in SECRET_HEADERS else redact_text(value) for name, value in pairs}


def _scrub(value: object) -> object:
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, (int, float)):
        return value  # %d and %f need numbers, and numbers hold no secrets
    try:
        shown = {str(value), repr(value)}
    except Exception:
        return value
    if any(redact_text(text) != text for text in shown):
        return redact_text(str(value))  # an object whose text holds a secret is logged as its scrubbed text
    return value


def _scrub_extra(value: object) -> object:
    # Only text and dicts (a JSON formatter's ``fields``): other extras, such as Django's
    # ``request``, are objects handlers use, not text they print.
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {name: REDACTED if str(name).lower() in SECRET_HEADERS else _scrub(item) for name, item in value.items()}
    return value


# Attributes every record has; anything else came from ``extra=`` and may be printed by a formatter.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Scrub every record's message, arguments, traceback and extras; never drop a record.

    On the root handler rather than on loggers: a logger's filters miss records that
    propagate from its children, a handler's see them all.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            # A broken format: the handler reports it with msg and args, so scrub those.
            record.msg = _scrub(record.msg)
            if isinstance(record.args, Mapping):
                record.args = {name: _scrub(arg) for name, arg in record.args.items()}
            elif isinstance(record.args, tuple):
                record.args = tuple(_scrub(arg) for arg in record.args)
        else:
            # Scrub the formatted text, not msg and args apart: a pattern could eat a %s
            # placeholder ("api-key: %s") and break the formatting.
            record.msg, record.args = redact_text(message), ()
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set, so the scrubbed text is what they print.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        for name in vars(record).keys() - _RECORD_ATTRIBUTES:
            setattr(record, name, _scrub_extra(getattr(record, name)))
        return True
