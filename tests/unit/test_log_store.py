"""The durable Raft log (`DiskLog`): round trips, crash points, corruption, format refusal, a full
disk, and a property test against `MemoryStorage`, the in-memory reference. Real files, real fsync.

Record boundaries are computed here from the framing (u32 length | u32 crc | payload) on their
own, not with the module's bookkeeping, so a wrong offset in the module cannot hide itself.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from walletnode.consensus.log_store import FILE_HEADER, FILE_NAME, MAGIC, DiskLog, LogFormatError
from walletnode.consensus.messages import ConfState, Entry, EntryKind, HardState, SnapshotMeta
from walletnode.consensus.storage import Compacted, MemoryStorage

from .full_disk import PAGE, fill, tmpfs

CONF = ConfState(voters=frozenset({1, 2, 3}), addresses=((1, "a:1"), (2, "b:1"), (3, "c:1")))


def entry(index: int, term: int, size: int = 10) -> Entry:
    return Entry(index, term, EntryKind.NORMAL, bytes([index % 251]) * size)


def log_file(directory: Path) -> Path:
    return directory / FILE_NAME


def record_ends(data: bytes) -> list[int]:
    """End offset of every record in a log file's bytes, from the framing alone."""
    ends, offset = [], FILE_HEADER.size
    while offset + 8 <= len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        offset += 8 + length
        if offset > len(data):
            break
        ends.append(offset)
    return ends


def observe(log: DiskLog | MemoryStorage) -> dict[str, object]:
    """Everything the core can see of a log."""
    first, last = log.first_index(), log.last_index()
    return {
        "first": first,
        "last": last,
        "terms": [log.term(i) for i in range(first - 1, last + 1)],
        "entries": log.entries(first, last + 1, 1 << 40) if last >= first else [],
        "state": log.initial_state(),
        "snapshot": log.snapshot(),
    }


def reopened(directory: Path) -> DiskLog:
    return DiskLog(str(directory))


def observe_reopened(directory: Path) -> dict[str, object]:
    """What a restart finds (the log is closed again, so loops do not pile up open files)."""
    log = reopened(directory)
    try:
        return observe(log)
    finally:
        log.close()


# -- round trip -----------------------------------------------------------------------------


def test_a_new_log_is_empty_and_new(tmp_path: Path) -> None:
    log = DiskLog(str(tmp_path / "data"))
    assert log.is_new
    assert observe(log) == observe(MemoryStorage())
    assert log.size_bytes == os.path.getsize(log_file(tmp_path / "data")) == FILE_HEADER.size
    log.close()
    assert reopened(tmp_path / "data").is_new


def test_bootstrap_is_durable_and_ends_newness(tmp_path: Path) -> None:
    log = DiskLog(str(tmp_path))
    log.bootstrap(SnapshotMeta(1, 1, CONF), HardState(term=1, commit=1))
    assert not log.is_new
    again = reopened(tmp_path)  # while the first is still open: nothing was left to close or sync
    log.close()
    assert not again.is_new
    assert again.initial_state() == (HardState(term=1, commit=1), CONF)
    assert (again.first_index(), again.last_index(), again.term(1)) == (2, 1, 1)
    with pytest.raises(Compacted):
        again.term(0)
    with pytest.raises(AssertionError):
        again.bootstrap(SnapshotMeta(1, 1, CONF), HardState(term=1, commit=1))


def test_round_trip_and_max_bytes(tmp_path: Path) -> None:
    log = DiskLog(str(tmp_path))
    log.bootstrap(SnapshotMeta(1, 1, CONF), HardState(term=1, commit=1))
    entries = [entry(i, 1 + i // 4, size=100) for i in range(2, 12)]
    log.append(entries[:4])
    log.append(entries[4:])
    log.set_hard_state(HardState(term=3, vote=2, commit=7))
    log.sync()
    before = observe(log)
    assert before["entries"] == entries
    log.close()
    log = reopened(tmp_path)
    assert observe(log) == before
    assert log.size_bytes == os.path.getsize(log_file(tmp_path))
    # entry_size is len(data) + 24 = 124: at least one, then only while the total stays <= max_bytes.
    assert log.entries(2, 12, 0) == entries[:1]
    assert log.entries(2, 12, 124 * 3) == entries[:3]
    assert log.entries(2, 12, 124 * 3 + 123) == entries[:3]
    assert log.entries(5, 7, 1 << 20) == entries[3:5]
    with pytest.raises(Compacted):
        log.entries(1, 3, 100)


def test_conflict_truncation_survives_reopen(tmp_path: Path) -> None:
    log = DiskLog(str(tmp_path))
    log.append([entry(i, 1) for i in range(1, 8)])
    log.sync()
    log.append([entry(4, 2, size=3), entry(5, 2, size=3)])  # a new leader's entries replace 4..7
    log.append([entry(6, 3, size=5)])
    log.sync()
    expected = [entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 2, size=3), entry(5, 2, size=3), entry(6, 3, size=5)]
    assert log.entries(1, 7, 1 << 20) == expected
    log.close()
    log = reopened(tmp_path)
    assert log.last_index() == 6
    assert log.entries(1, 7, 1 << 20) == expected
    log.append([entry(7, 3)])
    log.close()
    assert reopened(tmp_path).entries(1, 8, 1 << 20) == [*expected, entry(7, 3)]


def test_append_refuses_gaps_and_decreasing_terms(tmp_path: Path) -> None:
    log = DiskLog(str(tmp_path))
    log.append([entry(1, 2), entry(2, 2)])
    for bad in ([entry(4, 2)], [entry(3, 1)], [entry(3, 2), entry(5, 2)], [entry(3, 3), entry(4, 2)]):
        with pytest.raises(AssertionError):
            log.append(bad)
    assert log.last_index() == 2


FSYNC_SCRIPT = """
import os, sys
from walletnode.consensus.log_store import DiskLog
from walletnode.consensus.messages import Entry, HardState, SnapshotMeta

def mark(n):  # a syscall strace shows between the phases
    os.access(f"phase-mark-{n}", os.F_OK)

log = DiskLog(sys.argv[1])
mark(1)
log.append([Entry(1, 1, data=b"a"), Entry(2, 1, data=b"b")])
log.append([Entry(3, 1, data=b"c")])
log.set_hard_state(HardState(term=1, commit=2))
log.sync()
mark(2)
log.sync()
mark(3)
log.set_hard_state(HardState(term=1, commit=3))
log.sync()
mark(4)
log.compact(SnapshotMeta(2, 1))
mark(5)
log.install(SnapshotMeta(9, 2))
mark(6)
log.close()
mark(7)
"""


def test_sync_is_one_fsync_per_batch_of_writes_and_none_without_writes(tmp_path: Path) -> None:
    """A Ready's appends and hard state cost one fsync; a sync with nothing written costs none; a
    rewrite (compact, install) syncs the new file before its rename and the directory after it."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed: it counts the fsync calls for real")
    trace = tmp_path / "trace"
    command = [strace, "-f", "-o", str(trace), "-e", "trace=fsync,fdatasync,access,faccessat,faccessat2"]
    done = subprocess.run([*command, sys.executable, "-c", FSYNC_SCRIPT, str(tmp_path / "data")], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    phases: list[int] = []
    for line in trace.read_text().splitlines():
        if "phase-mark-" in line:
            phases.append(0)
        elif phases and ("fsync(" in line or "fdatasync(" in line):
            phases[-1] += 1
    assert phases == [1, 0, 1, 2, 2, 0, 0]


# -- crash points ---------------------------------------------------------------------------

SYNCED = [entry(i, 1, size=i * 7 % 40) for i in range(1, 6)]
# What follows the synced prefix, unsynced, one record each: appends (one conflicting) and a state.
TAIL: list[Entry | HardState] = [
    entry(6, 1, size=33),
    HardState(term=2, vote=3, commit=4),
    entry(5, 2, size=1),  # truncates the old entries 5 and 6
    entry(6, 2, size=300),
    HardState(term=2, vote=3, commit=6),
    entry(7, 2, size=0),
]


def replay(items: list[Entry | HardState]) -> MemoryStorage:
    reference = MemoryStorage()
    reference.append(SYNCED)
    for item in items:
        if isinstance(item, Entry):
            reference.append([item])
        else:
            reference.hard_state = item
    return reference


def test_every_crash_point_opens_as_a_prefix_cut_back_to_the_last_intact_record(tmp_path: Path) -> None:
    source = tmp_path / "source"
    log = DiskLog(str(source))
    log.append(SYNCED)
    log.sync()
    synced_size = log.size_bytes
    for item in TAIL:
        if isinstance(item, Entry):
            log.append([item])
        else:
            log.set_hard_state(item)
    log.close()
    data = log_file(source).read_bytes()
    ends = [end for end in record_ends(data) if end > synced_size]
    assert len(ends) == len(TAIL) and ends[-1] == len(data)
    for cut in range(synced_size, len(data) + 1):
        crashed = tmp_path / f"cut{cut}"
        crashed.mkdir()
        log_file(crashed).write_bytes(data[:cut])
        log = reopened(crashed)
        complete = sum(1 for end in ends if end <= cut)
        assert observe(log) == observe(replay(TAIL[:complete])), cut
        intact = ends[complete - 1] if complete else synced_size
        assert os.path.getsize(log_file(crashed)) == log.size_bytes == intact, cut
        expected = replay(TAIL[:complete])
        expected.append([entry(expected.last_index() + 1, 9)])
        log.append([entry(log.last_index() + 1, 9)])  # usable: the next append lands after the cut
        log.close()
        assert observe_reopened(crashed) == observe(expected), cut
        shutil.rmtree(crashed)


def test_a_flipped_bit_inside_a_record_is_a_torn_tail(tmp_path: Path) -> None:
    log = DiskLog(str(tmp_path))
    log.append([entry(i, 1, size=50) for i in range(1, 6)])
    log.close()
    data = bytearray(log_file(tmp_path).read_bytes())
    ends = record_ends(bytes(data))
    middle = (ends[2] + ends[3]) // 2  # inside entry 4
    data[middle] ^= 0x10
    log_file(tmp_path).write_bytes(bytes(data))
    log = reopened(tmp_path)
    assert log.last_index() == 3
    assert log.entries(1, 4, 1 << 20) == [entry(i, 1, size=50) for i in range(1, 4)]
    assert os.path.getsize(log_file(tmp_path)) == ends[2]


def test_a_zero_filled_tail_is_a_torn_tail(tmp_path: Path) -> None:
    """A crash can leave a file longer than its data, the rest zeros, and an empty record's
    checksum is zero too: that must not read as a record, nor as corruption."""
    log = DiskLog(str(tmp_path))
    log.append([entry(1, 1), entry(2, 1)])
    log.close()
    size = os.path.getsize(log_file(tmp_path))
    with open(log_file(tmp_path), "ab") as f:
        f.write(bytes(4096))
    log = reopened(tmp_path)
    assert log.entries(1, 3, 1 << 20) == [entry(1, 1), entry(2, 1)]
    assert os.path.getsize(log_file(tmp_path)) == size
    log.append([entry(3, 1)])
    log.close()
    assert observe_reopened(tmp_path)["last"] == 3


def test_a_checksummed_entry_out_of_order_is_corruption_not_a_torn_tail(tmp_path: Path) -> None:
    from walletnode.consensus import records

    log = DiskLog(str(tmp_path))
    log.append([entry(1, 1), entry(2, 1)])
    log.close()
    with open(log_file(tmp_path), "ab") as f:
        f.write(records.frame(b"\x01" + msgspec.msgpack.encode(entry(5, 1))))
    size = os.path.getsize(log_file(tmp_path))
    with pytest.raises(LogFormatError, match=f"{log_file(tmp_path)} is corrupt.*entry 5 after entry 2"):
        reopened(tmp_path)
    assert os.path.getsize(log_file(tmp_path)) == size, "a corrupt log must be left as it is, for inspection"


# -- compact and install ------------------------------------------------------------------------


def filled(directory: Path) -> DiskLog:
    log = DiskLog(str(directory))
    log.bootstrap(SnapshotMeta(1, 1, CONF), HardState(term=1, commit=1))
    log.append([entry(i, 1 + i // 5, size=64) for i in range(2, 16)])
    log.set_hard_state(HardState(term=3, vote=1, commit=12))
    log.sync()
    return log


def test_compact_keeps_later_entries_and_hard_state_and_shrinks_the_file(tmp_path: Path) -> None:
    log = filled(tmp_path)
    size = log.size_bytes
    log.compact(SnapshotMeta(10, log.term(10), CONF))
    assert log.size_bytes < size
    assert (log.first_index(), log.last_index(), log.term(10)) == (11, 15, 3)
    with pytest.raises(Compacted):
        log.term(9)
    assert log.entries(11, 16, 1 << 20) == [entry(i, 1 + i // 5, size=64) for i in range(11, 16)]
    log.append([entry(16, 4)])  # appends after a rewrite land in the new file
    after = observe(log)
    log.close()
    assert observe_reopened(tmp_path) == after
    assert os.listdir(tmp_path) == [FILE_NAME]


def test_compact_refuses_a_wrong_term_or_range(tmp_path: Path) -> None:
    log = filled(tmp_path)
    for bad in (SnapshotMeta(10, 1, CONF), SnapshotMeta(16, 3, CONF), SnapshotMeta(0, 0, CONF)):
        with pytest.raises(AssertionError):
            log.compact(bad)


def test_install_replaces_the_log_and_keeps_the_hard_state(tmp_path: Path) -> None:
    log = filled(tmp_path)
    log.install(SnapshotMeta(40, 5, CONF))
    expected = {
        "first": 41,
        "last": 40,
        "terms": [5],
        "entries": [],
        "state": (HardState(term=3, vote=1, commit=12), CONF),
        "snapshot": SnapshotMeta(40, 5, CONF),
    }
    assert observe(log) == expected
    log.close()
    assert observe_reopened(tmp_path) == expected


@pytest.mark.parametrize("rewrite", ["compact", "install"])
def test_an_interrupted_rewrite_leaves_the_old_log_or_the_new_one(tmp_path: Path, rewrite: str) -> None:
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    filled(old_dir).close()
    shutil.copytree(old_dir, new_dir)
    log = reopened(new_dir)
    if rewrite == "compact":
        log.compact(SnapshotMeta(9, log.term(9), CONF))
    else:
        log.install(SnapshotMeta(40, 5, CONF))
    log.close()
    old, new = observe_reopened(old_dir), observe_reopened(new_dir)
    assert old != new
    new_bytes = log_file(new_dir).read_bytes()
    # Crash before the rename: the temp file holds any prefix of the new log (even all of it).
    for cut in sorted({0, 5, FILE_HEADER.size, *record_ends(new_bytes), len(new_bytes) - 1}):
        crashed = tmp_path / f"crash{cut}"
        shutil.copytree(old_dir, crashed)
        (crashed / (FILE_NAME + ".tmp")).write_bytes(new_bytes[:cut])
        assert observe_reopened(crashed) == old, cut
        assert os.listdir(crashed) == [FILE_NAME], "the leftover temp file is removed"
        shutil.rmtree(crashed)


# -- format ---------------------------------------------------------------------------------


def test_an_unknown_version_is_refused_with_what_to_do(tmp_path: Path) -> None:
    DiskLog(str(tmp_path)).close()
    path = log_file(tmp_path)
    path.write_bytes(FILE_HEADER.pack(MAGIC, 7) + path.read_bytes()[FILE_HEADER.size :])
    with pytest.raises(LogFormatError) as refused:
        reopened(tmp_path)
    message = str(refused.value)
    assert str(path) in message
    assert "version 7" in message and "version 1 only" in message
    assert "another version of walletnode" in message and "re-sync" in message


@pytest.mark.parametrize("content", [b"", b"WC", b"WCJRNL01" + b"\x00" * 40, b"hello, I am a text file\n"])
def test_a_foreign_file_is_refused(tmp_path: Path, content: bytes) -> None:
    log_file(tmp_path).write_bytes(content)
    with pytest.raises(LogFormatError, match="version 1 only") as refused:
        reopened(tmp_path)
    assert str(log_file(tmp_path)) in str(refused.value)
    assert log_file(tmp_path).read_bytes() == content, "a foreign file is never modified"


# -- a full disk ----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: writes on it fail with ENOSPC (or come up short) for real."""
    with tmpfs(tmp_path / "disk", "256k") as mount:
        yield mount


def record_size(item: Entry) -> int:
    return 8 + 1 + len(msgspec.msgpack.encode(item))


def pad_to(log: DiskLog, offset_in_page: int) -> None:
    """Append one entry so that the file ends `offset_in_page` bytes into a page."""
    gap = (offset_in_page - log.size_bytes) % PAGE or PAGE
    index, term = log.last_index() + 1, log.term(log.last_index())
    size = next(n for n in range(gap + PAGE) if record_size(entry(index, term, n)) in (gap, gap + PAGE))
    log.append([entry(index, term, size)])
    assert log.size_bytes % PAGE == offset_in_page


@pytest.mark.parametrize("fault", ["short write", "no space at all"])
def test_a_full_disk_leaves_no_torn_record_and_the_log_recovers(small_disk: Path, fault: str) -> None:
    directory = small_disk / "data"
    log = DiskLog(str(directory))
    log.append([entry(i, 1, size=100) for i in range(1, 6)])
    # "short write": the file's last page has room, so a big record is written in part, then fails;
    # "no space at all": the file ends on a page boundary, so not one byte more can be written.
    pad_to(log, 100 if fault == "short write" else 0)
    log.sync()
    fill(small_disk)
    before, size = observe(log), log.size_bytes
    big = entry(log.last_index() + 1, 1, size=3 * PAGE)
    with pytest.raises(OSError):
        log.append([big])
    with pytest.raises(OSError):
        log.compact(SnapshotMeta(3, 1, CONF))
    if fault == "no space at all":
        with pytest.raises(OSError):
            log.set_hard_state(HardState(term=1, commit=3))
    assert observe(log) == before, "a failed write must not change the log"
    assert os.path.getsize(log_file(directory)) == size, "a failed write must leave no torn record"
    assert os.listdir(directory) == [FILE_NAME], "a failed rewrite must leave no temp file"
    os.unlink(small_disk / "filler")  # space is back
    log.append([big])
    log.set_hard_state(HardState(term=1, commit=3))
    log.sync()
    after = observe(log)
    assert after["last"] == big.index
    log.compact(SnapshotMeta(3, 1, CONF))
    compacted = observe(log)
    log.close()
    assert observe_reopened(directory) == compacted


# -- property: DiskLog behaves as MemoryStorage ---------------------------------------------------


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[str, int, int]]:
    """Abstract operations; indexes and terms are fitted to the log's state when they run."""
    kinds = st.sampled_from(["append", "append", "append", "state", "sync", "compact", "install", "reopen"])
    return draw(st.lists(st.tuples(kinds, st.integers(0, 1000), st.integers(0, 1000)), max_size=40))


def run(op: str, a: int, b: int, disk: DiskLog, memory: MemoryStorage) -> None:
    first, last = memory.first_index(), memory.last_index()
    if op == "append":
        start = first + a % (last - first + 2)  # anywhere from the first entry to one past the end
        term = memory.term(start - 1) + b % 2
        entries = [Entry(start + i, term + i // 3, EntryKind(b % 2), bytes([a % 256]) * (b % 90)) for i in range(a % 5)]
        disk.append(entries)
        memory.append(entries)
    elif op == "state":
        hard = HardState(term=a, vote=b % 4, commit=b)
        disk.set_hard_state(hard)
        memory.hard_state = hard
    elif op == "compact":
        index = first - 1 + a % (last - first + 2)
        snapshot = SnapshotMeta(index, memory.term(index), ConfState(voters=frozenset({b % 5 + 1})))
        disk.compact(snapshot)
        memory.compact(snapshot)
    elif op == "install":
        snapshot = SnapshotMeta(last + a % 7, memory.term(last) + b % 3, CONF)
        disk.install(snapshot)
        memory.install(snapshot)
    elif op == "sync":
        disk.sync()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations())
def test_disk_log_matches_memory_storage(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int]]
) -> None:
    directory = tmp_path_factory.mktemp("prop")
    disk, memory = DiskLog(str(directory)), MemoryStorage()
    for op, a, b in ops:
        if op == "reopen":
            disk.sync()  # only what was synced is promised to survive
            disk.close()
            disk = reopened(directory)
        else:
            run(op, a, b, disk, memory)
        assert observe(disk) == observe(memory), (op, a, b)
    disk.close()
    assert observe_reopened(directory) == observe(memory)
