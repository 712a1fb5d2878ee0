"""The journal when the disk fills up (found by the fault-injection suite, tests/faults).

A follower whose data disk is full gets ENOSPC (or a short write) while appending an entry. The
journal must leave no torn record behind and keep its bookkeeping straight, so that once space is
back the entries it accepts are exactly the entries a restart finds. The file size limit
(RLIMIT_FSIZE, in a child process) makes writes fail or come up short for real, without root.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import errno, os, resource, signal, sys
    from walletnode.consensus.journal import DurableJournal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    directory, mode = sys.argv[1], sys.argv[2]
    path = os.path.join(directory, "raft.journal")
    journal = DurableJournal(directory)
    for i in range(1, 4):
        journal.add(bytes([i]) * 50, i, 1)
    journal.sync()
    size = os.path.getsize(path)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # "short": the next record fits only in part; "full": not one more byte fits.
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + (40 if mode == "short" else 0), hard))
    try:
        journal.add(b"4" * 500, 4, 1)
        failed = False
    except OSError:
        failed = True
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space is back
    if failed:
        journal.add(b"4" * 500, 4, 1)  # the leader sends it again
    journal.add(b"5" * 50, 5, 1)
    if mode == "full":
        journal.deleteEntriesFrom(4)  # a conflicting suffix: drop entry 5, keep 1-4
    journal.sync()
    print([e[1] for e in journal])
    journal.close()
    print([e[1] for e in DurableJournal(directory)])
    """
)


def run(tmp_path: Path, mode: str) -> tuple[str, str]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), mode], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    before, after = done.stdout.split("\n")[:2]
    return before, after


def test_a_short_write_leaves_no_torn_record_that_would_hide_later_entries(tmp_path: Path) -> None:
    before, after = run(tmp_path, "short")
    assert before == "[1, 2, 3, 4, 5]"
    assert after == before, "entries the journal accepted (and the node acknowledged) vanish on restart"


def test_a_failed_append_keeps_the_offsets_of_later_entries_right(tmp_path: Path) -> None:
    before, after = run(tmp_path, "full")
    assert before == "[1, 2, 3, 4]"
    assert after == before, "truncating a suffix cut off an entry the journal still holds"
