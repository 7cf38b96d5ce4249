"""The local journal: records read back in order across segments, segments released, dead journals found."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from logs.audit import journal
from logs.audit.journal import Journal, Position, orphans


def test_records_are_read_back_in_order_across_segments_and_written_segments_are_deleted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal, "SEGMENT_BYTES", 1000)
    mine = Journal(tmp_path)
    positions = [mine.append({"k": "f", "n": n, "f": {"text": "x" * 100}}) for n in range(50)]
    assert mine.segment > 3  # rolled over
    found, after = mine.read(Position(0, 0), 1000)
    assert [record["n"] for _, record in found] == list(range(50))
    assert [position for position, _ in found] == positions and after == mine.end
    middle, _ = mine.read(positions[9], 5)
    assert [record["n"] for _, record in middle] == [10, 11, 12, 13, 14]

    mine.pin(positions[20].segment)  # a request still in flight started there
    mine.release(positions[40])
    kept = sorted(int(path.stem) for path in mine.directory.glob("*.jsonl"))
    assert kept[0] == positions[20].segment and positions[40].segment in kept
    mine.unpin(positions[20].segment)
    mine.release(positions[40])
    assert min(int(path.stem) for path in mine.directory.glob("*.jsonl")) == positions[40].segment
    mine.close()
    assert not mine.directory.exists()


def test_a_record_cut_short_is_left_unread(tmp_path: Path) -> None:
    mine = Journal(tmp_path)
    end = mine.append({"k": "f", "n": 1})
    with (mine.directory / "00000001.jsonl").open("ab") as file:
        file.write(b'{"k": "f", "n"')  # a write the process did not finish
    found, after = journal.read_records(mine.directory, Position(0, 0))
    assert [record["n"] for _, record in found] == [1] and after == end


@pytest.mark.processes
def test_only_the_journals_of_dead_processes_are_orphans(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from logs.audit.journal import Journal; "
            "j = Journal(Path(sys.argv[1])); j.append({'k': 's', 'n': 1}); print(j.directory, flush=True); "
            "time.sleep(60)")
    living = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    dying = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert living.stdout is not None and dying.stdout is not None
        living_dir, dying_dir = Path(living.stdout.readline().strip()), Path(dying.stdout.readline().strip())
        mine = Journal(tmp_path)
        assert list(orphans(tmp_path, mine=mine.directory)) == []  # both alive
        dying.kill()
        dying.wait(10)
        [orphan] = list(orphans(tmp_path, mine=mine.directory))
        assert orphan.directory == dying_dir and living_dir.exists()
        assert [record for _, record in orphan.records()] == [{"k": "s", "n": 1}]
        assert list(orphans(tmp_path, mine=mine.directory)) == []  # locked while it is recovered
        orphan.discard()
        assert not dying_dir.exists()
    finally:
        living.kill()
        dying.kill()
