"""Redaction: credentials are scrubbed from text, headers and every log record."""
from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from plumbing.redact import REDACTED, RedactingFilter, redact_headers, redact_text
from tests.servers import ROOT

KEY = "sk-proj-Abc123Def456Ghi789Jkl"

TEXT_CASES = [
    pytest.param("Authorization: Bearer abc.def-ghi", "Authorization: [redacted]", id="authorization-header"),
    pytest.param("authorization=Basic dXNlcjpwYXNz", "authorization=[redacted]", id="basic-credentials"),
    pytest.param("[('authorization', 'Bearer abc')]", "[('authorization', 'Bearer [redacted]')]",
                 id="bearer-in-header-pairs"),
    pytest.param('{"api-key": "k1", "x-api-key": "k2"}', '{"api-key": "[redacted]", "x-api-key": "[redacted]"}',
                 id="api-key-headers-in-json"),
    pytest.param("X-Api-Key: k3 next", "X-Api-Key: [redacted] next", id="x-api-key-header-line"),
    pytest.param("GET /v1/models?api_key=k4&limit=2", "GET /v1/models?api_key=[redacted]&limit=2", id="query-string"),
    pytest.param(f"upstream said: bad key {KEY}.", "upstream said: bad key [redacted].", id="sk-token-anywhere"),
    pytest.param("sk-cgw-" + "x" * 43, "[redacted]", id="client-key"),
    pytest.param("sk-short and task-manager-thing-long-name", "sk-short and task-manager-thing-long-name",
                 id="short-or-embedded-sk-is-kept"),
    pytest.param("model qwen3-coder answered 200", "model qwen3-coder answered 200", id="plain-text-unchanged"),
]


@pytest.mark.parametrize(("text", "expected"), TEXT_CASES)
def test_redact_text_replaces_credentials_and_nothing_else(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(("text", "expected"), TEXT_CASES)
def test_redact_text_applied_twice_changes_nothing_more(text: str, expected: str) -> None:
    assert redact_text(redact_text(text)) == expected


def test_redact_text_removes_known_secrets_of_any_shape() -> None:
    """An upstream key without a recognisable shape is still removed when the caller knows it."""
    assert redact_text("denied: key 9f8e7d6c5b4a", known=["9f8e7d6c5b4a"]) == f"denied: key {REDACTED}"


def test_redact_text_ignores_known_secrets_too_short_to_replace_safely() -> None:
    assert redact_text("a b c", known=["", "b"]) == "a b c"


def test_redact_headers_hides_credential_headers_whatever_their_case() -> None:
    headers = {"Authorization": "Bearer x", "api-key": "y", "X-API-Key": "z", "Cookie": "sessionid=1",
               "Content-Type": "application/json", "X-Note": f"used {KEY}"}
    assert redact_headers(headers) == {"Authorization": REDACTED, "api-key": REDACTED, "X-API-Key": REDACTED,
                                       "Cookie": REDACTED, "Content-Type": "application/json",
                                       "X-Note": f"used {REDACTED}"}


def test_redact_headers_accepts_pairs() -> None:
    assert redact_headers([("authorization", "Bearer x"), ("accept", "*/*")]) == {"authorization": REDACTED,
                                                                                  "accept": "*/*"}


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through a handler that carries the filter, as the root handler does."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.redact")
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def test_log_filter_scrubs_a_bearer_token_passed_as_an_argument(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.warning("calling upstream with Authorization: Bearer %s (%d tries)", "tok.abc-123", 2)
    assert stream.getvalue() == "calling upstream with Authorization: [redacted] (2 tries)\n"


def test_log_filter_scrubs_an_sk_token_in_the_message(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.error(f"upstream rejected {KEY}")
    assert stream.getvalue() == "upstream rejected [redacted]\n"


def test_log_filter_scrubs_header_dicts_extras_and_tracebacks(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    handler = logger.handlers[0]
    handler.setFormatter(logging.Formatter("%(message)s %(fields)s"))
    try:
        raise RuntimeError(f"bad key {KEY}")
    except RuntimeError:
        logger.exception("headers %r", {"x-api-key": "k5"}, extra={"fields": {"authorization": "Bearer k6"}})
    output = stream.getvalue()
    assert "k5" not in output and "k6" not in output and KEY not in output
    assert output.startswith("headers {'x-api-key': '[redacted]'} {'authorization': '[redacted]'}")
    assert "RuntimeError: bad key [redacted]" in output


def test_log_filter_scrubs_the_arguments_of_a_record_whose_format_is_broken() -> None:
    """logging reports a broken format by printing msg and args as they are: those must be scrubbed already."""
    record = logging.LogRecord("tests", logging.WARNING, __file__, 1, "one %s two %s", (KEY,), None)
    assert RedactingFilter().filter(record) is True
    assert (record.msg, record.args) == ("one %s two %s", (REDACTED,))


@pytest.mark.processes
def test_live_logging_config_scrubs_every_logger_including_django() -> None:
    """settings.LOGGING puts the filter on the root handler and routes Django's records through it, once."""
    code = ("import django, logging; django.setup(); "
            f"logging.getLogger('gateway.audit').warning('Authorization: Bearer %s', {KEY!r}); "
            f"logging.getLogger('django.request').error('upstream key %s', {KEY!r})")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "DJANGO_SETTINGS_MODULE": "gatewaysite.settings", "DEBUG": "true",
                                 "LOG_LEVEL": "INFO"})
    assert result.returncode == 0, result.stderr
    assert KEY not in result.stderr
    assert result.stderr.count("Authorization: [redacted]") == 1
    assert result.stderr.count("upstream key [redacted]") == 1
