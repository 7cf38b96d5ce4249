"""An append-only local journal of JSON records, one per process: what survives a SIGKILL or a database outage.

Each record is one ``write()`` of one line to the current segment file: once it returns,
the record is in the kernel's page cache and outlives the process however it dies (not a
power cut: there is no fsync, which would cost a disk flush per request). Segments roll
over at SEGMENT_BYTES; one is deleted once its reader has passed it and nothing pins it
(``pin``/``unpin``: a record that a later one must still be read against).

A process holds an exclusive ``flock`` on its journal's ``lock`` file for as long as it
lives; the kernel drops it when the process dies, SIGKILL included. ``orphans()`` finds
the journals whose lock can be taken: those of dead processes, for recovery.
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import orjson

logger = logging.getLogger("gateway")

SEGMENT_BYTES = 8 * 1024 * 1024


class Position(NamedTuple):
    """A place in a journal: a segment's number and a byte offset in it."""

    segment: int
    offset: int


def _segment_name(number: int) -> str:
    return f"{number:08d}.jsonl"


def _segments(directory: Path) -> list[int]:
    return sorted(int(path.stem) for path in directory.glob("*.jsonl") if path.stem.isdigit())


def read_records(directory: Path, start: Position, limit: int | None = None,
                 end: Position | None = None) -> tuple[list[tuple[Position, dict[str, Any]]], Position]:
    """Return the records from ``start`` on (at most ``limit``, none past ``end``), each with the position after it.

    The second value is where the next read starts. A last line without its newline (a
    write cut short) is left for later.
    """
    found: list[tuple[Position, dict[str, Any]]] = []
    position = start
    for number in _segments(directory):
        if number < position.segment:
            continue
        if number > position.segment:
            position = Position(number, 0)
        with (directory / _segment_name(number)).open("rb") as file:
            file.seek(position.offset)
            for line in file:
                if not line.endswith(b"\n") or (end is not None and position >= end):
                    break
                position = Position(number, position.offset + len(line))
                try:
                    found.append((position, orjson.loads(line)))
                except orjson.JSONDecodeError:
                    logger.error("journal %s: an unreadable record at %s skipped", directory, position)
                if limit is not None and len(found) >= limit:
                    return found, position
    return found, position


class Journal:
    """This process's journal: ``directory/<instance>/``, locked while the process lives."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root = root
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # Made under a dot-name and locked before it takes its own name: a process looking for
        # orphans never sees a journal whose lock is not yet held.
        making = root / f".{name}"
        making.mkdir(mode=0o700)
        self._lock = os.open(making / "lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.directory = root / name
        making.rename(self.directory)
        self.segment = 1
        self.size = 0
        self.pins: Counter[int] = Counter()
        self._fd = self._open(self.segment)

    def _open(self, number: int) -> int:
        return os.open(self.directory / _segment_name(number), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)

    @property
    def end(self) -> Position:
        return Position(self.segment, self.size)

    def append(self, record: dict[str, Any]) -> Position:
        """Write ``record`` as one line; return the position after it. Raises OSError (a full disk)."""
        line = orjson.dumps(record) + b"\n"
        if self.size + len(line) > SEGMENT_BYTES and self.size:
            os.close(self._fd)
            self.segment += 1
            self.size = 0
            self._fd = self._open(self.segment)
        written = os.write(self._fd, line)
        if written != len(line):  # a short write to a regular file: the disk is full
            raise OSError(f"journal: {written} of {len(line)} bytes written")
        self.size += written
        return Position(self.segment, self.size)

    def read(self, start: Position, limit: int) -> tuple[list[tuple[Position, dict[str, Any]]], Position]:
        """Return up to ``limit`` records after ``start``, and where the next read starts."""
        return read_records(self.directory, start, limit, end=self.end)

    def pin(self, segment: int) -> None:
        self.pins[segment] += 1

    def unpin(self, segment: int) -> None:
        self.pins[segment] -= 1
        if self.pins[segment] <= 0:
            del self.pins[segment]

    def release(self, read_to: Position) -> None:
        """Delete the segments before ``read_to``'s that nothing pins any more (written, no request in flight)."""
        for number in _segments(self.directory):
            if number >= min(read_to.segment, self.segment):
                break
            if not self.pins.get(number):
                (self.directory / _segment_name(number)).unlink(missing_ok=True)

    def close(self) -> None:
        """Remove the journal (everything in it was written), then let go of the lock."""
        os.close(self._fd)
        shutil.rmtree(self.directory, ignore_errors=True)
        os.close(self._lock)


class Orphan:
    """The journal of a process that died, locked by this one while it is recovered."""

    def __init__(self, directory: Path, lock: int) -> None:
        self.directory = directory
        self._lock = lock

    def records(self) -> Iterator[tuple[Position, dict[str, Any]]]:
        """Every record, oldest first, with the position after it."""
        position = Position(0, 0)
        while True:
            found, position = read_records(self.directory, position, limit=10_000)
            if not found:
                return
            yield from found

    def last_written(self) -> float:
        """When the dead process last wrote to its journal (the nearest to when it died)."""
        return max((path.stat().st_mtime for path in self.directory.glob("*.jsonl")), default=0.0)

    def discard(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        os.close(self._lock)

    def keep(self) -> None:
        """Leave it for a later try (the database is away)."""
        os.close(self._lock)


def orphans(root: Path, mine: Path | None = None) -> Iterator[Orphan]:
    """Yield, locked, each journal under ``root`` whose process is gone."""
    if not root.is_dir():
        return
    for directory in sorted(root.iterdir()):
        if directory == mine or directory.name.startswith(".") or not directory.is_dir():
            continue
        try:
            lock = os.open(directory / "lock", os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock)  # held: its process lives
            continue
        yield Orphan(directory, lock)
