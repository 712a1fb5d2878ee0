"""Crash-point tests of the Raft journal and snapshot files.

A crash can leave any prefix of what was written. For every cut point — each record boundary and
every byte inside records — the reopened journal must hold exactly the records that were complete,
drop the torn one for good, and accept new appends after it.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from walletnode.consensus import snapshot
from walletnode.consensus.journal import MAGIC, DurableJournal

ENTRIES = [(bytes([i % 251]) * (i * 7 % 40), i + 1, 1 + i // 4) for i in range(12)]


def write_journal(directory: str, entries: list[tuple[bytes, int, int]]) -> bytes:
    journal = DurableJournal(directory)
    for entry in entries:
        journal.add(*entry)
    journal.close()
    with open(os.path.join(directory, "raft.journal"), "rb") as f:
        return f.read()


def record_ends(directory: str) -> list[int]:
    """File offsets where each record ends, computed independently from the journal code."""
    ends, offset = [], len(MAGIC)
    for command, _, _ in ENTRIES:
        offset += 8 + 16 + len(command)
        ends.append(offset)
    return ends


def test_every_cut_point_recovers_the_complete_prefix(tmp_path: pytest.TempPathFactory) -> None:
    full = write_journal(str(tmp_path / "full"), ENTRIES)
    ends = record_ends(str(tmp_path / "full"))
    assert ends[-1] == len(full)
    for cut in range(len(MAGIC), len(full) + 1):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / "raft.journal").write_bytes(full[:cut])
        journal = DurableJournal(str(d))
        complete = sum(1 for end in ends if end <= cut)
        assert list(journal[:]) == ENTRIES[:complete], f"cut at {cut}"
        journal.add(b"after-crash", complete + 1, 9)
        journal.close()
        reopened = DurableJournal(str(d))
        assert list(reopened[:]) == [*ENTRIES[:complete], (b"after-crash", complete + 1, 9)], f"cut at {cut}"
        reopened.close()
        shutil.rmtree(d)


def test_a_corrupted_record_ends_the_log_there(tmp_path: pytest.TempPathFactory) -> None:
    full = bytearray(write_journal(str(tmp_path / "full"), ENTRIES))
    ends = record_ends(str(tmp_path / "full"))
    full[ends[4] + 20] ^= 0xFF  # inside record 5's index/term/payload: the CRC no longer matches
    d = tmp_path / "bad"
    d.mkdir()
    (d / "raft.journal").write_bytes(bytes(full))
    assert list(DurableJournal(str(d))[:]) == ENTRIES[:5]


def test_truncation_and_compaction_survive_reopen(tmp_path: pytest.TempPathFactory) -> None:
    d = str(tmp_path)
    calls: list[str] = []
    journal = DurableJournal(d, before_discard=lambda: calls.append("snapshot made durable"))
    for entry in ENTRIES:
        journal.add(*entry)
    journal.deleteEntriesFrom(9)  # a follower dropping a conflicting suffix
    journal.add(b"replacement", 10, 5)
    journal.sync()
    journal.deleteEntriesTo(3)  # compaction after a snapshot
    assert calls == ["snapshot made durable"]
    expected = [*ENTRIES[3:9], (b"replacement", 10, 5)]
    assert list(journal[:]) == expected
    journal.close()
    assert list(DurableJournal(d)[:]) == expected


def test_term_and_vote_are_durable_and_atomic(tmp_path: pytest.TempPathFactory) -> None:
    d = str(tmp_path)
    journal = DurableJournal(d)
    journal.setCurrentTerm(7, "127.0.0.1:7702")
    # A crash while writing the next meta leaves only a temp file behind: it must not count.
    (tmp_path / "raft.meta.tmp").write_bytes(b"torn")
    reopened = DurableJournal(d)
    assert (reopened.getCurrentTerm(), reopened.getVotedForNodeId()) == (7, "127.0.0.1:7702")


def test_an_interrupted_compaction_is_finished_on_open(tmp_path: pytest.TempPathFactory) -> None:
    """Crash after the snapshot was renamed into place but before the journal was compacted."""
    d = str(tmp_path)
    write_journal(d, ENTRIES)
    journal = DurableJournal(d, snapshot_tail=(ENTRIES[5], ENTRIES[6]))
    assert list(journal[:]) == ENTRIES[5:]


def test_snapshot_cut_anywhere_is_rejected_never_half_read(tmp_path: pytest.TempPathFactory) -> None:
    path = str(tmp_path / "s")
    header = snapshot.Header(last=(b"x", 9, 2), previous=(b"y", 8, 2), members=["a:1", "b:2"])
    snapshot.write(path, header, b"state" * 100)
    full = pathlib.Path(path).read_bytes()
    assert snapshot.read(path) == (header, b"state" * 100)
    for cut in range(len(full)):
        with open(path, "wb") as f:
            f.write(full[:cut])
        with pytest.raises(snapshot.CorruptSnapshot):
            snapshot.read(path)


WRITER = textwrap.dedent("""
    import sys
    from walletnode.consensus.journal import DurableJournal
    journal = DurableJournal(sys.argv[1])
    i = len(journal)
    while True:
        i += 1
        journal.add(b"payload-%d" % i * 50, i, 1)
        journal.sync()
        print(i, flush=True)  # acknowledged only after fsync
""")


def test_sigkill_mid_write_loses_nothing_acknowledged(tmp_path: pytest.TempPathFactory) -> None:
    """A real process appending as fast as it can, killed with SIGKILL at arbitrary moments."""
    d = str(tmp_path)
    acknowledged = 0
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, d], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for _ in range(200):
            acknowledged = int(proc.stdout.readline())
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        journal = DurableJournal(d)
        indexes = [e[1] for e in journal[:]]
        assert indexes == list(range(1, len(indexes) + 1)), "no gaps, no duplicates"
        assert len(indexes) >= acknowledged
        journal.close()
