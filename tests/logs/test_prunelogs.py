"""Retention: ``manage.py prunelogs`` deletes old request log rows, by flag or by setting."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils.timezone import now

from logs.models import Recording, RequestLog
from tests.servers import ROOT

pytestmark = pytest.mark.django_db


@pytest.fixture
def ages() -> None:
    """Rows 1, 10, 29, 31 and 90 days old."""
    for days in (1, 10, 29, 31, 90):
        RequestLog.objects.create(request_id=f"req_{days}d", started=now() - timedelta(days=days), endpoint="responses",
                                  outcome="ok")


def left() -> list[str]:
    return sorted(RequestLog.objects.values_list("request_id", flat=True))


def prune(*args: str) -> str:
    out = io.StringIO()
    call_command("prunelogs", *args, stdout=out)
    return out.getvalue()


def test_prunelogs_deletes_rows_older_than_the_flag(ages: None) -> None:
    assert prune("--older-than", "20d").startswith("Deleted 3 request log row(s)")
    assert left() == ["req_10d", "req_1d"]


def test_prunelogs_deletes_the_flight_recordings_of_the_rows_it_deletes(ages: None) -> None:
    for days in (10, 31):
        Recording.objects.create(request_id=f"req_{days}d", started=now() - timedelta(days=days), upstream_name="u",
                                 endpoint="responses", dialect="chat", client_request="{}", upstream_request="{}",
                                 upstream_body=b"", client_body=b"")
    assert "and 1 flight recording(s)" in prune("--older-than", "20d")
    assert list(Recording.objects.values_list("request_id", flat=True)) == ["req_10d"]


def test_prunelogs_defaults_to_the_retention_setting(ages: None) -> None:
    assert prune().startswith("Deleted 2 request log row(s)")  # GATEWAY_LOG_RETENTION_DAYS=30
    with override_settings(GATEWAY_LOG_RETENTION_DAYS=5):
        prune()
    assert left() == ["req_1d"]


def test_prunelogs_keeps_everything_when_retention_is_zero(ages: None) -> None:
    with override_settings(GATEWAY_LOG_RETENTION_DAYS=0):
        assert "nothing was deleted" in prune()
    assert len(left()) == 5


def test_prunelogs_deletes_in_batches(ages: None) -> None:
    assert RequestLog.objects.prune(now() - timedelta(days=2), batch=2) == 4
    assert left() == ["req_1d"]


def test_a_dry_run_only_counts(ages: None) -> None:
    assert prune("--older-than", "2w", "--dry-run").startswith("Would delete 3 request log row(s)")
    assert len(left()) == 5


@pytest.mark.parametrize("age", ["30", "thirty days", "0d", "-3d"])
def test_prunelogs_refuses_an_age_it_cannot_read(age: str) -> None:
    with pytest.raises(CommandError):
        prune("--older-than", age)


@pytest.mark.processes
def test_a_negative_retention_stops_the_start() -> None:
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "GATEWAY_LOG_RETENTION_DAYS": "-1"})
    assert result.returncode != 0 and "GATEWAY_LOG_RETENTION_DAYS must be >= 0" in result.stderr
