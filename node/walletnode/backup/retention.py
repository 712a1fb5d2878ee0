"""Retention: which base backups and archived entries an archive may delete.

A base backup is kept while it is younger than `days`, and the newest `bases` are kept whatever
their age. Archived entries are kept from the oldest kept base on: every point from that base to
the end of the archive stays restorable, and nothing older than the window survives (a segment
that ends at or before the oldest kept base's entry can only be replayed from genesis or from a
deleted base).
"""

from __future__ import annotations

from dataclasses import dataclass

from .archive import BaseManifest, Segment

DAY_S = 86_400


@dataclass(frozen=True)
class Policy:
    days: float  # keep base backups younger than this
    bases: int = 1  # and at least this many of the newest, whatever their age

    def __post_init__(self) -> None:
        assert self.days > 0 and self.bases >= 1, "retention keeps something"


@dataclass(frozen=True)
class Expired:
    bases: list[BaseManifest]
    segments: list[Segment]


def expired(bases: list[BaseManifest], segments: list[Segment], policy: Policy, now: float) -> Expired:
    """What `policy` lets go, at unix time `now`. With no base backup at all nothing is deleted:
    the archived entries are then the only copy of the ledger."""
    ordered = sorted(bases, key=lambda b: (b.seq, b.started))
    if not ordered:
        return Expired([], [])
    newest = ordered[-policy.bases :]
    kept = [b for b in ordered if b in newest or now - b.started < policy.days * DAY_S]
    oldest = min(b.seq for b in kept)
    return Expired(
        bases=[b for b in ordered if b not in kept],
        segments=[s for s in segments if s.last <= oldest],
    )
