"""The request log's move from the upstreams app to the logs app keeps its table and its rows.

upstreams 0004 and logs 0001 change the migration state only: the model changes app, the
table ``upstreams_requestlog`` stays. A row written before the move, with the historical
model, must be read after it by ``logs.models.RequestLog`` as it was.
"""
from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from logs.models import RequestLog

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_THE_MOVE = [("upstreams", "0003_request_log_ui"), ("logs", None)]
STARTED = datetime(2026, 11, 30, 9, 15, 0, tzinfo=UTC)
ROW: dict[str, Any] = {
    "request_id": "req_before_the_move", "started": STARTED, "finished": datetime(2026, 11, 30, 9, 15, 2, tzinfo=UTC),
    "key_name": "alice", "client_ip": "10.0.0.7", "endpoint": "responses", "model": "codex-model",
    "upstream_name": "local-llama", "upstream_model": "llama-3.1-8b", "mode": "bridge", "stream": True,
    "status": 200, "upstream_status": 200, "outcome": "ok", "error_type": "", "error_message": "",
    "connected_ms": 12.5, "ttfb_ms": 40.25, "duration_ms": 2000.0, "input_tokens": 120, "output_tokens": 34,
    "reasoning_tokens": 5, "cached_tokens": 64, "tool_calls": 2, "request_bytes": 512, "response_bytes": 4096,
    "passed_headers": {"retry-after": "3"}, "request_body": '{"model": "codex-model"}',
    "response_body": "event: response.completed",
}


def migrate(targets: list[tuple[str, str | None]]) -> MigrationExecutor:
    """Migrate to ``targets`` with a fresh executor (its graph read anew); return it."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection)


def leaves() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def test_it_moves_the_request_log_to_the_logs_app_with_its_rows() -> None:
    """A row written with the historical ``upstreams.RequestLog`` is read by ``logs.models.RequestLog``, as written."""
    try:
        executor = migrate(BEFORE_THE_MOVE)
        old_apps = executor.loader.project_state(BEFORE_THE_MOVE[:1]).apps
        OldRequestLog = old_apps.get_model("upstreams", "RequestLog")
        OldUpstream = old_apps.get_model("upstreams", "Upstream")
        assert OldRequestLog._meta.db_table == "upstreams_requestlog"
        with pytest.raises(LookupError):
            old_apps.get_model("logs", "RequestLog")  # not moved yet: this is the state before
        upstream = OldUpstream.objects.create(name="local-llama", base_url="http://127.0.0.1:8080/v1")
        OldRequestLog.objects.create(upstream_id=upstream.pk, **ROW)

        migrate(leaves())

        row = RequestLog.objects.get(request_id=ROW["request_id"])
        assert {name: getattr(row, name) for name in ROW} == ROW
        assert row.upstream_id == upstream.pk and row.upstream.name == "local-llama"
        assert row.client_key is None
        assert RequestLog.objects.count() == 1
    finally:
        migrate(leaves())  # whatever failed above, the next test gets the schema it expects


def test_it_keeps_the_table_and_its_rows_when_rolled_back_to_before_the_move() -> None:
    """Migrating back undoes the state only: the same table, its indexes and its rows, for the old model."""
    RequestLog.objects.create(**ROW)
    try:
        executor = migrate(BEFORE_THE_MOVE)
        tables = connection.introspection.table_names()
        assert "upstreams_requestlog" in tables and "logs_requestlog" not in tables
        with connection.cursor() as cursor:
            indexes = set(connection.introspection.get_constraints(cursor, "upstreams_requestlog"))
        assert {"upstreams_r_started_407449_idx", "upstreams_r_outcome_a70bc1_idx",
                "upstreams_r_upstrea_32832c_idx", "upstreams_r_client__451d3b_idx"} <= indexes
        OldRequestLog = executor.loader.project_state(BEFORE_THE_MOVE[:1]).apps.get_model("upstreams", "RequestLog")
        row = OldRequestLog.objects.get(request_id=ROW["request_id"])
        assert {name: getattr(row, name) for name in ROW} == ROW
    finally:
        migrate(leaves())
    assert RequestLog.objects.get(request_id=ROW["request_id"]).tool_calls == ROW["tool_calls"]
    assert "logs_requestlog" not in connection.introspection.table_names()


def test_it_has_a_migration_for_every_model_change() -> None:
    """``makemigrations --check`` exits (SystemExit) when a model change has no migration."""
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    assert "No changes detected" in out.getvalue()


def test_it_recounts_old_rows_so_only_a_move_to_another_upstream_is_a_failover() -> None:
    """Before 0008 a row's own failed try was in ``failed_over``: its only upstream failing read as a failover."""
    before = [("logs", "0007_request_kind_session_notes")]
    dead = {"upstream": "ghost", "at": "127.0.0.1:9", "code": "upstream_unavailable", "status": 502, "ms": 1.0}
    moved = {**dead, "upstream": "primary"}
    try:
        executor = migrate(before)
        OldRequestLog = executor.loader.project_state(before).apps.get_model("logs", "RequestLog")
        common = {"started": STARTED, "endpoint": "responses", "outcome": "upstream_error"}
        OldRequestLog.objects.create(request_id="req_only_ghost", upstream_name="ghost", attempts=[dead],
                                     failed_over=",ghost,", **common)
        OldRequestLog.objects.create(request_id="req_moved", upstream_name="ghost", attempts=[moved, dead],
                                     failed_over=",primary,ghost,", **common)
        OldRequestLog.objects.create(request_id="req_plain", upstream_name="llama", **common)

        migrate(leaves())

        assert dict(RequestLog.objects.values_list("request_id", "failed_over")) == {
            "req_only_ghost": "", "req_moved": ",primary,", "req_plain": ""}
        assert RequestLog.objects.get(request_id="req_moved").attempts == [moved, dead]  # the story stays whole
    finally:
        migrate(leaves())
