"""SIGKILL with streams in flight (issue 12): the next process writes each of them as ``interrupted``, once.

Rows used to be written only when a request ended, so a killed process took the rows of
everything it was serving with it (0 of 50). Each request now leaves a start record in
its process's journal (logs/audit/writer.py, logs/audit/journal.py); the next gateway to start on
the machine finds the dead process's journal and writes what it holds.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import httpx

from logs.models import Outcome, RequestLog
from tests.conftest import wait_for_logs
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream

STREAMS = 50
FINISHED = 20


def test_streams_in_flight_at_a_sigkill_appear_as_interrupted_after_a_restart(
        start_gateway: Callable[..., Gateway], active_key: str, scripted: MockUpstream, chat_upstream: Upstream,
        tmp_path: Path) -> None:
    env = {"GATEWAY_JOURNAL_DIR": str(tmp_path / "journal"), "GATEWAY_ROUTING_TTL": "60"}
    first = start_gateway(**env)
    headers = {"authorization": f"Bearer {active_key}"}
    body = {"model": "mock-model", "input": "hi", "stream": True}
    scripted.script({"chunks": [{"text": "done"}, {"finish": "stop"}]})
    finished = [httpx.post(f"{first.url}/v1/responses", json={**body, "stream": False}, headers=headers, timeout=30)
                for _ in range(FINISHED)]
    assert [a.status_code for a in finished] == [200] * FINISHED
    wait_for_logs(FINISHED)

    scripted.script({"chunks": [{"text": "first"}, {"text": " never"}, {"finish": "stop"}], "gate": True})
    began = threading.Barrier(STREAMS + 1, timeout=30)
    ids: list[str] = []

    def stream() -> None:
        try:
            with httpx.stream("POST", f"{first.url}/v1/responses", json=body, headers=headers, timeout=60) as answer:
                ids.append(answer.headers["x-request-id"])
                parts = answer.iter_raw()
                next(parts)  # the first events: the stream is under way
                began.wait()
                for _ in parts:
                    pass
        except httpx.HTTPError:
            pass  # the process is gone

    threads = [threading.Thread(target=stream) for _ in range(STREAMS)]
    for thread in threads:
        thread.start()
    began.wait()
    first.process.kill()
    first.process.wait(10)
    for thread in threads:
        thread.join(30)
    scripted.release()
    assert RequestLog.objects.count() == FINISHED  # nothing of the 50 yet

    second = start_gateway(**env)  # its start writes what the dead process's journal holds
    rows = wait_for_logs(FINISHED + STREAMS, timeout=30)
    second.settle()  # nothing left to write: a second write of any of them would have been
    rows = list(RequestLog.objects.order_by("started"))
    interrupted = [row for row in rows if row.outcome == Outcome.INTERRUPTED]
    assert len(rows) == FINISHED + STREAMS
    assert sorted(row.request_id for row in interrupted) == sorted(ids) and len(ids) == STREAMS
    for row in interrupted:  # what the start and route records held
        assert (row.key_name, row.model, row.upstream_name, row.endpoint, row.stream) == (
            "alice", "mock-model", "chat-mock", "responses", True)
        assert row.finished >= row.started and row.duration_ms >= 0 and row.error_type == "interrupted"
    assert "0 finished, 50 interrupted" in second.log()
    assert not list((tmp_path / "journal").glob(f"*-{first.process.pid}-*"))  # the dead journal is gone
