"""The archive of one ledger in an object store: base backups and the applied entries after them.

Layout under the location's prefix (CloudNativePG's base backups + WAL archive, for a ledger):

    ledger.json                         whose archive this is: format, cluster id (the signing domain)
    base/<seq>-<UTC time>/store.zst     one consistent read view of the store after entry <seq>, a
                                        compact LMDB file, zstd-compressed (frame checksums on)
    base/<seq>-<UTC time>/manifest.json what it holds: seq, audit hash, sizes, sha256, start and end;
                                        written last, so a base without one is incomplete
    wal/<first>-<last>.zst              applied entries first..last: (seq, audit hash, entry bytes)
                                        each, msgpack, zstd-compressed

Numbers are zero-padded to 20 digits, so keys sort in ledger order. Every entry is the same on
every member (the audit hash after it says so), so two members archiving the same range write the
same segment and a restore can check each entry it replays against the chain.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Protocol

import msgspec
import zstandard

from ..ledger.commands import chain, decode_entry
from ..ledger.store import StoredEntry
from .objectstore import ObjectStore

FORMAT = "walletcluster-archive/1"
LEDGER_KEY = "ledger.json"
_SEGMENT = re.compile(r"^wal/(\d{20})-(\d{20})\.zst$")
_BASE = re.compile(r"^base/(\d{20})-(\d{8}T\d{6}Z)/manifest\.json$")
_LEVEL = 3


class ArchiveError(Exception):
    """The archive is not what it must be (another ledger's, a gap, a corrupt object)."""


class LedgerInfo(msgspec.Struct, frozen=True):
    format: str
    cluster_id: str
    created: str


class BaseSource(Protocol):
    """One consistent view of a store: its head and its bytes as a compact LMDB file."""

    store_format: str

    @property
    def seq(self) -> int: ...

    @property
    def audit_hash(self) -> bytes: ...

    @property
    def entry_time_ms(self) -> int: ...

    def chunks(self) -> Iterator[bytes]: ...


class BaseManifest(msgspec.Struct, frozen=True):
    """One base backup: the store after entry `seq`, whose audit hash is `audit_hash`."""

    name: Annotated[str, msgspec.Meta(description="base/<seq>-<UTC time>: where it is in the archive")]
    seq: Annotated[int, msgspec.Meta(description="the last entry the store holds")]
    audit_hash: Annotated[str, msgspec.Meta(description="audit hash after entry seq, 64 hex chars")]
    entry_time_ms: Annotated[int, msgspec.Meta(description="when entry seq was made, unix ms (0: unknown)")]
    cluster_id: Annotated[str, msgspec.Meta(description="the ledger (signing domain) it is of")]
    member: Annotated[str, msgspec.Meta(description="the member whose store it was taken from")]
    store_format: Annotated[str, msgspec.Meta(description="format of the store inside")]
    store_bytes: Annotated[int, msgspec.Meta(description="size of the store (a compact LMDB file)")]
    object_bytes: Annotated[int, msgspec.Meta(description="size of store.zst, the object uploaded")]
    sha256: Annotated[str, msgspec.Meta(description="sha256 of store.zst")]
    started: Annotated[float, msgspec.Meta(description="unix time the backup began")]
    finished: Annotated[float, msgspec.Meta(description="unix time its manifest was written")]

    @property
    def object_key(self) -> str:
        return f"{self.name}/store.zst"


class ArchivedEntry(msgspec.Struct, frozen=True, array_like=True, gc=False):
    seq: int
    audit_hash: bytes
    data: bytes

    @property
    def time_ms(self) -> int:
        return decode_entry(self.data).time_ms


@dataclass(frozen=True)
class Segment:
    first: int
    last: int
    size: int

    @property
    def key(self) -> str:
        return f"wal/{self.first:020d}-{self.last:020d}.zst"


_info = msgspec.json.Decoder(LedgerInfo)
_manifest = msgspec.json.Decoder(BaseManifest)
_segment = msgspec.msgpack.Decoder(list[ArchivedEntry])
_encoder = msgspec.msgpack.Encoder()


def _utc(seconds: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(seconds))


class Archive:
    """One ledger's archive in `store`, for the ledger whose signing domain is `cluster_id`."""

    def __init__(self, store: ObjectStore, cluster_id: str) -> None:
        self.store = store
        self.cluster_id = cluster_id

    # -- whose archive ----------------------------------------------------------------------

    def info(self) -> LedgerInfo | None:
        if not self.store.listing(LEDGER_KEY):
            return None
        try:
            return _info.decode(self.store.get(LEDGER_KEY))
        except msgspec.DecodeError as exc:
            raise ArchiveError(f"{LEDGER_KEY} is not an archive description: {exc}") from exc

    def claim(self) -> None:
        """Make sure this prefix is this ledger's archive (writing ledger.json when it is new):
        two ledgers in one prefix would make every restore from it wrong."""
        info = self.info()
        if info is None:
            info = LedgerInfo(FORMAT, self.cluster_id, _utc(time.time()))
            self.store.put(LEDGER_KEY, msgspec.json.encode(info))
        if info.format != FORMAT:
            raise ArchiveError(f"the archive is of format {info.format!r}; this version reads {FORMAT!r}")
        if info.cluster_id != self.cluster_id:
            raise ArchiveError(
                f"this prefix holds the archive of ledger {info.cluster_id!r}, not of {self.cluster_id!r}: "
                "give each ledger a prefix of its own"
            )

    # -- the entries --------------------------------------------------------------------------

    def segments(self) -> list[Segment]:
        out = []
        for key, size in self.store.listing("wal/"):
            match = _SEGMENT.match(key)
            if match:
                out.append(Segment(int(match[1]), int(match[2]), size))
        return out

    def last_archived(self) -> int:
        """The seq of the last entry archived (0: none)."""
        return max((s.last for s in self.segments()), default=0)

    def put_segment(self, entries: list[StoredEntry]) -> Segment:
        assert entries, "a segment holds at least one entry"
        for before, after in zip(entries, entries[1:], strict=False):
            assert after.seq == before.seq + 1, "a segment's entries are consecutive"
        records = [ArchivedEntry(e.seq, e.audit_hash, e.data) for e in entries]
        data = zstandard.ZstdCompressor(level=_LEVEL, write_checksum=True).compress(_encoder.encode(records))
        segment = Segment(entries[0].seq, entries[-1].seq, len(data))
        self.store.put(segment.key, data)
        return segment

    def read_segment(self, segment: Segment) -> list[ArchivedEntry]:
        raw = self.store.get(segment.key)
        try:
            entries = _segment.decode(zstandard.ZstdDecompressor().decompress(raw))
        except (zstandard.ZstdError, msgspec.DecodeError) as exc:
            raise ArchiveError(f"{segment.key} is corrupt: {exc}") from exc
        if [e.seq for e in entries] != list(range(segment.first, segment.last + 1)):
            raise ArchiveError(f"{segment.key} does not hold entries {segment.first}..{segment.last}")
        return entries

    def entries_after(self, seq: int, audit_hash: bytes) -> Iterator[ArchivedEntry]:
        """The archived entries after `seq`, in order, each checked against the audit chain that
        ends in `audit_hash` at `seq`; stops at the end of the archive, raises at a gap."""
        for segment in self.segments():
            if segment.last <= seq:
                continue
            if segment.first > seq + 1:
                raise ArchiveError(f"the archive has no entry {seq + 1} (the next segment starts at {segment.first})")
            for entry in self.read_segment(segment):
                if entry.seq <= seq:
                    continue
                audit_hash = chain(audit_hash, entry.data)
                if audit_hash != entry.audit_hash:
                    raise ArchiveError(f"entry {entry.seq} in {segment.key} does not continue the audit chain")
                seq = entry.seq
                yield entry

    # -- base backups ---------------------------------------------------------------------------

    def bases(self) -> list[BaseManifest]:
        """Every complete base backup, oldest first."""
        out = []
        for key, _ in self.store.listing("base/"):
            if _BASE.match(key):
                try:
                    out.append(_manifest.decode(self.store.get(key)))
                except msgspec.DecodeError as exc:
                    raise ArchiveError(f"{key} is not a base backup manifest: {exc}") from exc
        return sorted(out, key=lambda m: (m.seq, m.started))

    def put_base(self, view: BaseSource, member: str) -> BaseManifest:
        """Upload one consistent read view of the store, compressed, then its manifest."""
        self.claim()
        started = time.time()
        name = f"base/{view.seq:020d}-{_utc(started)}"
        digest = hashlib.sha256()
        raw_bytes = 0

        def compressed() -> Iterator[bytes]:
            nonlocal raw_bytes
            compressor = zstandard.ZstdCompressor(level=_LEVEL, write_checksum=True, threads=-1).compressobj()
            for chunk in view.chunks():
                raw_bytes += len(chunk)
                out = compressor.compress(chunk)
                if out:
                    digest.update(out)
                    yield out
            out = compressor.flush()
            digest.update(out)
            yield out

        size = self.store.put_stream(f"{name}/store.zst", compressed())
        manifest = BaseManifest(
            name=name,
            seq=view.seq,
            audit_hash=view.audit_hash.hex(),
            entry_time_ms=view.entry_time_ms,
            cluster_id=self.cluster_id,
            member=member,
            store_format=view.store_format,
            store_bytes=raw_bytes,
            object_bytes=size,
            sha256=digest.hexdigest(),
            started=started,
            finished=time.time(),
        )
        self.store.put(f"{name}/manifest.json", msgspec.json.encode(manifest))
        return manifest

    def delete(self, bases: list[BaseManifest], segments: list[Segment]) -> None:
        """Delete base backups (each manifest first: a base without one is incomplete, never
        taken for whole) and segments."""
        if bases:
            self.store.delete([f"{b.name}/manifest.json" for b in bases])
            self.store.delete([b.object_key for b in bases])
        if segments:
            self.store.delete([s.key for s in segments])

    def download_base(self, manifest: BaseManifest, path: str) -> None:
        """Write the base's store to `path` (fsynced), checking its size and checksum."""
        digest = hashlib.sha256()
        size = 0
        decompressor = zstandard.ZstdDecompressor().decompressobj()
        try:
            with open(path, "wb") as out:
                for chunk in self.store.get_stream(manifest.object_key):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(decompressor.decompress(chunk))
                out.flush()
                os.fsync(out.fileno())
        except zstandard.ZstdError as exc:
            raise ArchiveError(f"{manifest.object_key} is corrupt: {exc}") from exc
        if size != manifest.object_bytes or digest.hexdigest() != manifest.sha256:
            raise ArchiveError(
                f"{manifest.object_key} is corrupt: {size} bytes with sha256 {digest.hexdigest()}, "
                f"the manifest says {manifest.object_bytes} bytes with sha256 {manifest.sha256}"
            )
        if os.path.getsize(path) != manifest.store_bytes:
            raise ArchiveError(
                f"{manifest.object_key} decompresses to {os.path.getsize(path)} bytes, not {manifest.store_bytes}"
            )
