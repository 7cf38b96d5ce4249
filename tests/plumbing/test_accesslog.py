"""The access log's paths: the query string goes, the path stays."""
from __future__ import annotations

import io

import pytest
from daphne.access import AccessLogGenerator

from plumbing.patches.accesslog import install as quiet_query_strings
from plumbing.patches.accesslog import without_query


@pytest.mark.parametrize(("path", "logged"), [("/v1/models", "/v1/models"), ("/v1/models?api_key=sk-x", "/v1/models?…"),
                                              ("/logs/?q=a?b", "/logs/?…"), ("/?", "/?…")])
def test_without_query(path: str, logged: str) -> None:
    assert without_query(path) == logged


def test_daphnes_access_log_lines_leave_the_query_out() -> None:
    quiet_query_strings()
    quiet_query_strings()  # once is enough: a second call changes nothing
    stream = io.StringIO()
    AccessLogGenerator(stream)("http", "complete", {"path": "/v1/x?key=sk-secret-123456789012345", "status": 200,
                                                    "method": "GET", "client": "127.0.0.1:1", "size": 2})
    assert '"GET /v1/x?…" 200 2' in stream.getvalue() and "sk-secret" not in stream.getvalue()
