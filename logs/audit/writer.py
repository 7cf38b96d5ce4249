"""Audit rows written in batches by one background task per process, through a local journal (docs/audit.md §3).

The writer is handed each finished row (``add``) and writes batches of them in one database
trip, then to the live tail (logs/audit/tail.py); while the database is away rows wait, in
memory and in the journal (logs/audit/journal.py); the next process to start on the host
writes what a dead one left (``recover``). ``close()`` waits for the rows in flight
(shutdown, tests).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError

from logs.audit.journal import Journal, Orphan, Position, orphans
from logs.audit.tail import broadcast
from logs.models import Outcome, RequestLog
from plumbing import dbthread, metrics

logger = logging.getLogger("gateway.audit")
# While the database is away, rows wait: retried after 0.5 s, then twice as long each time
# up to 5 s. In memory at most GATEWAY_AUDIT_MEMORY_ROWS (about 2 KB each without bodies);
# past that, in the journal only, read back from it once the database returns. Without a
# journal (GATEWAY_JOURNAL_DIR empty), MAX_KEPT_UNJOURNALED, then the oldest are dropped, counted.
RETRY_FIRST, RETRY_MAX = 0.5, 5.0
MAX_KEPT_UNJOURNALED = 100_000
MARK_EVERY = 1.0  # seconds between two "written up to here" marks in the journal
INTERRUPTED_MESSAGE = "The gateway process serving this request ended (killed or crashed) before it finished."


class Journaled(Protocol):
    """What the writer journals of a request as it goes (an ``Exchange``)."""

    number: int  # in this process's journal (0: not journaled)
    pinned: list[int]  # the journal segments of its records, kept until it finishes
    finished: bool

    def start_record(self) -> dict[str, Any]: ...

    def route_record(self) -> dict[str, Any]: ...


class AuditWriter:
    """Write audit rows in batches, from one background task per process, through a local journal.

    Every ORM call under ASGI waits in the one database thread's queue; a row per request
    made that queue the bottleneck under load (bench/). Rows queue here and go out in
    batches of up to BATCH rows, one database trip each, then to the live tail.

    With a journal (``open_journal``), each request also leaves three small records in it
    as it goes (started, routed, finished: one ``write()`` each, 2-5 µs), and each
    batch written one more: so a row survives a database outage past the memory bound,
    and a SIGKILL, whether it was in flight or written to no database yet. The next
    process to start on the machine writes a dead process's rows (``recover``): the
    finished ones it had not written, and ``interrupted`` ones for requests it was still
    serving.
    """

    BATCH = 500

    def __init__(self) -> None:
        self.kept: deque[tuple[Position | None, dict[str, Any]]] = deque()  # rows to write, oldest first
        self.writing: list[dict[str, Any]] = []  # the batch on its way to the database
        self.behind = False  # rows after ``kept`` are in the journal only: read back from ``cursor``
        self.journal: Journal | None = None
        self.cursor = Position(0, 0)  # the journal's finished records before this are written
        self.unwritten = 0
        self.numbers = itertools.count(1)
        self.task: asyncio.Task[None] | None = None
        self.idle = asyncio.Event()
        self.idle.set()
        self.dropped = 0
        self.orphans_left = False
        self.marked = 0.0  # when the last "written" mark went into the journal (monotonic)

    @property
    def pending(self) -> int:
        return self.unwritten

    def unwritten_rows(self) -> list[dict[str, Any]]:
        """The rows in memory not yet in the database (budgets count them: api/budgets/admission.py)."""
        return [*self.writing, *(fields for _, fields in self.kept)]

    def open_journal(self, root: Path) -> None:
        """Journal this process's rows under ``root``, then write the rows dead processes left there (at start)."""
        self.journal = Journal(root)
        self.cursor = self.journal.end
        self.recover()

    def close_journal(self) -> None:
        """Remove this process's journal once every row is written (a clean exit: nothing to recover)."""
        if self.journal is not None and not self.pending:
            self.journal.close()
            self.journal = None

    def started(self, exchange: Journaled) -> None:
        if self.journal is None:
            return
        exchange.number = next(self.numbers)
        self._pin(exchange, self._append({"k": "s", "n": exchange.number, "f": exchange.start_record()}))

    def routed(self, exchange: Journaled) -> None:
        if exchange.number and not exchange.finished:
            self._pin(exchange, self._append({"k": "r", "n": exchange.number, "f": exchange.route_record()}))

    def _pin(self, exchange: Journaled, position: Position | None) -> None:
        if position is not None and self.journal is not None:
            exchange.pinned.append(position.segment)
            self.journal.pin(position.segment)

    def _append(self, record: dict[str, Any]) -> Position | None:
        assert self.journal is not None
        try:
            return self.journal.append(record)
        except OSError as exc:
            logger.error("audit journal not written (%s): this row is kept in memory only", exc)
            return None

    def add(self, fields: dict[str, Any], exchange: Journaled | None = None) -> None:
        """Queue a ``prepared()`` row (journaled first, when there is a journal) for the next batch."""
        loop = asyncio.get_running_loop()  # RuntimeError when there is none
        position = None
        if self.journal is not None:
            position = self._append({"k": "f", "n": exchange.number if exchange else 0, "f": fields})
            if exchange is not None:
                for segment in exchange.pinned:
                    self.journal.unpin(segment)
                exchange.pinned.clear()
        self.unwritten += 1
        if position is not None and (self.behind or len(self.kept) >= settings.GATEWAY_AUDIT_MEMORY_ROWS):
            self.behind = True  # in the journal only, for now
        else:
            self.kept.append((position, fields))
            self._bound()
        self.idle.clear()
        metrics.audit_pending.set(self.pending)
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._run())

    def _next_batch(self) -> tuple[list[dict[str, Any]], Position | None, bool]:
        """Return the next rows to write, the journal position after them, and whether they were read back."""
        if self.kept:
            items = [self.kept.popleft() for _ in range(min(self.BATCH, len(self.kept)))]
            positions = [position for position, _ in items if position is not None]
            return [fields for _, fields in items], (positions[-1] if positions else None), False
        assert self.journal is not None
        while True:
            found, after = self.journal.read(self.cursor, 4 * self.BATCH)
            if not found:
                self.behind = False  # caught up: from here rows are kept in memory again
                return [], None, False
            rows = [_revived(record["f"]) for _, record in found if record.get("k") == "f"]
            if rows:
                return rows, after, True
            self.cursor = after

    async def _run(self) -> None:
        backoff, retrying = RETRY_FIRST, False
        while self.kept or self.behind:
            batch, after, read_back = self._next_batch()
            if not batch:
                continue
            self.writing = batch
            try:
                rows = await dbthread.run(_record, batch, retrying or read_back)
            except (OperationalError, InterfaceError) as exc:
                # The database is away: keep the rows, in order, and try again with back-off.
                if not read_back:
                    self.kept.extendleft(reversed([(None, fields) for fields in batch[:-1]] + [(after, batch[-1])]))
                logger.error("audit rows waiting (%d), the database is unavailable: %s; retrying in %.1fs",
                             self.pending, type(exc).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff, retrying = min(backoff * 2, RETRY_MAX), True
                continue
            except Exception:
                logger.exception("could not write %d audit row(s)", len(batch))
                rows = []
            finally:
                self.writing = []
            backoff, retrying = RETRY_FIRST, False
            self.unwritten -= len(batch)
            metrics.audit_pending.set(self.pending)
            if after is not None and self.journal is not None:
                self._written(after)
            if self.orphans_left:
                await dbthread.run(self.recover)
            # After the write, so a live row's link to its detail page already works.
            await broadcast(rows)
        self.idle.set()

    def _written(self, after: Position) -> None:
        """Note that the journal's rows before ``after`` are written.

        The mark goes into the journal at most once a second (a recovery skips the rows it
        finds already written, so a missing mark costs a query, not a duplicate), and
        segments are released only once the writer has moved past one: at low traffic a
        batch is one row, and each extra ``write()`` was a tenth of the journal's cost.
        """
        assert self.journal is not None
        moved_on = after.segment != self.cursor.segment
        self.cursor = after
        now = time.monotonic()
        if now - self.marked >= MARK_EVERY or moved_on:
            self.marked = now
            self._append({"k": "w", "to": list(after)})
        if moved_on:
            self.journal.release(after)

    def _bound(self) -> None:
        """Without a journal, keep at most MAX_KEPT_UNJOURNALED rows through an outage; drop the oldest, counted."""
        extra = len(self.kept) - MAX_KEPT_UNJOURNALED
        if extra > 0:
            for _ in range(extra):
                self.kept.popleft()
            self.unwritten -= extra
            self.dropped += extra
            logger.error("audit rows dropped after a long database outage: %d (%d in all)", extra, self.dropped)

    def recover(self) -> int:
        """Write the rows of dead processes' journals (sync: at start, or on the database thread); return how many."""
        if self.journal is None:
            return 0
        self.orphans_left = False
        recovered = 0
        for orphan in orphans(self.journal.root, mine=self.journal.directory):
            try:
                rows = _orphan_rows(orphan)
                written = []
                for start in range(0, len(rows), self.BATCH):
                    written += RequestLog.objects.record_many(rows[start:start + self.BATCH], skip_present=True)
            except DatabaseError as exc:
                logger.error("audit rows of a dead process's journal (%s) not written yet: %s", orphan.directory, exc)
                orphan.keep()
                self.orphans_left = True
                continue
            interrupted = sum(1 for row in written if row.outcome == Outcome.INTERRUPTED)
            if written:
                logger.warning("audit rows recovered from a dead process's journal (%s): %d finished, %d interrupted",
                               orphan.directory.name, len(written) - interrupted, interrupted)
            recovered += len(written)
            orphan.discard()
        return recovered

    async def all_written(self) -> None:
        """Wait until every row added so far is written."""
        while self.pending:
            if self.task is None or self.task.done():
                self.task = asyncio.get_running_loop().create_task(self._run())
            await self.idle.wait()


def _record(rows: list[dict[str, Any]], skip_present: bool) -> list[RequestLog]:
    return RequestLog.objects.record_many(rows, skip_present=skip_present)


def _revived(fields: dict[str, Any]) -> dict[str, Any]:
    """Return a row read back from the journal with its times as datetimes again."""
    for name in ("started", "finished"):
        if isinstance(fields.get(name), str):
            fields[name] = datetime.fromisoformat(fields[name])
    return fields


def _orphan_rows(orphan: Orphan) -> list[dict[str, Any]]:
    """The rows a dead process had not written: finished after its last written batch, and interrupted ones."""
    starts: dict[int, dict[str, Any]] = {}
    finished: list[tuple[Position, dict[str, Any]]] = []
    written_to = Position(0, 0)  # every finished record up to here was written
    for position, record in orphan.records():
        kind = record.get("k")
        if kind == "s":
            starts[record["n"]] = dict(record["f"])
        elif kind == "r" and record["n"] in starts:
            starts[record["n"]].update(record["f"])
        elif kind == "f":
            starts.pop(record.get("n", 0), None)
            finished.append((position, record["f"]))
        elif kind == "w":
            written_to = max(written_to, Position(*record["to"]))
    died = datetime.fromtimestamp(orphan.last_written(), UTC)
    rows = [_revived(fields) for position, fields in finished if position > written_to]
    for fields in starts.values():
        row = _revived(fields)
        row.update(finished=max(died, row["started"]), outcome=Outcome.INTERRUPTED, error_type="interrupted",
                   error_message=INTERRUPTED_MESSAGE)
        row["duration_ms"] = (row["finished"] - row["started"]).total_seconds() * 1000
        row.setdefault("client_key_id", None)
        rows.append(row)
    return rows


WRITER = AuditWriter()


async def close() -> None:
    """Wait until every audit row scheduled so far is written; then this process's journal is not needed."""
    await WRITER.all_written()
    WRITER.close_journal()
