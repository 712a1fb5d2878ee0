"""Retention (backup/retention.py): what it deletes, and that every point it keeps stays restorable."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from walletnode.backup.archive import BaseManifest, Segment
from walletnode.backup.retention import DAY_S, Policy, expired

NOW = 1_800_000_000.0


def base(seq: int, age_days: float) -> BaseManifest:
    started = NOW - age_days * DAY_S
    return BaseManifest(
        f"base/{seq:020d}", seq, "00" * 32, 0, "wallet", "wallet-0", "f", 1, 1, "00" * 32, started, started
    )


@st.composite
def archives(draw: st.DrawFn) -> tuple[list[BaseManifest], list[Segment]]:
    """Bases taken over time (later ones at higher entries) and the segments of entries 1..end."""
    count = draw(st.integers(0, 8))
    seqs = sorted(draw(st.lists(st.integers(1, 500), min_size=count, max_size=count, unique=True)))
    ages = sorted(draw(st.lists(st.floats(0, 60), min_size=count, max_size=count)), reverse=True)
    bases = [base(seq, age) for seq, age in zip(seqs, ages, strict=True)]
    cuts = sorted(set(draw(st.lists(st.integers(1, 599), max_size=12))) | {600})
    segments = [Segment(first, last, 1) for first, last in zip([1] + [c + 1 for c in cuts[:-1]], cuts, strict=True)]
    return bases, segments


@given(archives(), st.floats(0.01, 90), st.integers(1, 4))
def test_what_is_kept_stays_restorable_and_only_what_the_policy_allows_goes(
    archive: tuple[list[BaseManifest], list[Segment]], days: float, keep: int
) -> None:
    bases, segments = archive
    gone = expired(bases, segments, Policy(days, keep), NOW)
    kept = [b for b in bases if b not in gone.bases]
    if not bases:
        assert gone.bases == [] and gone.segments == []
        return
    assert kept[-keep:] == bases[-keep:], "the newest bases are kept, whatever their age"
    for b in gone.bases:
        assert NOW - b.started >= days * DAY_S and b in bases[:-keep]
    for b in kept:
        assert NOW - b.started < days * DAY_S or b in bases[-keep:]
    oldest = min(b.seq for b in kept)
    remaining = [s for s in segments if s not in gone.segments]
    # Every entry after the oldest kept base is still archived (so any point from it is restorable)...
    covered = {seq for s in remaining for seq in range(s.first, s.last + 1)}
    assert set(range(oldest + 1, segments[-1].last + 1)) <= covered
    # ...and nothing that only a deleted base or genesis could use is.
    assert all(s.last <= oldest for s in gone.segments)


def test_an_archive_without_a_base_backup_keeps_its_entries() -> None:
    segments = [Segment(1, 10, 1), Segment(11, 20, 1)]
    assert expired([], segments, Policy(1), NOW).segments == []


def test_old_bases_go_and_the_segments_before_the_oldest_kept_one_with_them() -> None:
    old, middle, new = base(100, 40), base(200, 20), base(300, 1)
    segments = [Segment(1, 150, 1), Segment(151, 250, 1), Segment(251, 320, 1)]
    gone = expired([old, middle, new], segments, Policy(30), NOW)
    assert gone.bases == [old]
    assert gone.segments == [Segment(1, 150, 1)]
    gone = expired([old, middle, new], segments, Policy(10, bases=1), NOW)
    assert gone.bases == [old, middle] and gone.segments == segments[:2]
