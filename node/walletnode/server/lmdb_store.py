"""The ledger on disk: one LMDB file holding everything `LedgerStore` names, plus the Raft index.

Layout (every integer big-endian, so keys sort numerically; keys and ids as raw bytes, not hex):

    meta        b"format"      -> FORMAT
                b"raft_index"  -> u64, the last Raft index applied (etcd's consistent index)
                b"domain"      -> the cluster id of a restored ledger (absent in any other)
                b"lineage"     -> JSON: the ledger and entry a restored ledger was made from
                b"head"        -> u64 seq + 32-byte audit hash
                b"minters"     -> 32-byte keys, sorted
                b"accounts"    -> u64, the number the next new account gets
    currencies  code (ascii)   -> u8 scale + u64 supply
    numbers     account(32)    -> u64, the account's number (given in the order accounts appear)
    accounts    u64 number     -> msgpack [history length, pointer to its newest link, {code: balance}]
    commands    id(16)         -> u64 seq + u32 position in the entry + u8 result code
    links       u64 seq + u32 position -> the command's id(16) + for its k-th account (k < 2), the
                                  pointer to that account's link before (zeros: none)
    checkpoints u64 number + u64 j -> the pointer to the account's link number j * CHECKPOINT_EVERY
    entries     u64 seq + u16 part -> the parts (ROW_PART_BYTES each) of: 32-byte audit hash + u32 n
                                  + n result codes + the entry's bytes, zstd level 1 (0.43 of
                                  the size, at a quarter of zlib's CPU)

A pointer (u64 seq + u32 position + u8 k) names the k-th account whose history the command at
that position of entry seq joined (one link row per command, whatever its accounts). An
account's history is a chain of links, newest first,
with a checkpoint every CHECKPOINT_EVERY links for paging: links are appended in key order, so
a transfer dirties one page per account (one row holds all of it) and the last pages of
`links`. Account rows are keyed by a number given when the account first appears, not by its
key: accounts that appear together are used together, so the busy ones share pages (by key, a
thousand busy accounts among a million idle ones would each have had a page to rewrite). A
commit rewrites every page it dirtied, and history rows keyed by account
cost a page each: 90% of the CPU and bytes written of applying a transfer. For the same reason
clients make time-ordered command ids (`client.new_id`): new ids land on the last pages of
`commands` instead of anywhere. A command is kept once, in its entry; its id row points there.
Memory does not grow with history: nothing here is kept per account or per command except
`EntryCache` and `WriterRows`, both bounded.
"""

from __future__ import annotations

import errno
import itertools
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import lmdb
import msgspec
import zstandard

from ..ledger.codes import Code
from ..ledger.commands import GENESIS, Command, Entry, decode_entry
from ..ledger.store import Applied, Rejected, StoredEntry

FORMAT = b"walletcluster-ledger/3"
CODES = tuple(Code)  # a result code is stored as its position here: append only (part of FORMAT)
_CODE_BYTE = {code: i for i, code in enumerate(CODES)}
_U64 = struct.Struct(">Q")
_REF = struct.Struct(">QIB")
_U16 = struct.Struct(">H")
_ENTRY_HEAD = struct.Struct(">32sI")
# An entry's row is kept in parts small enough for a leaf page: LMDB stores larger values in runs
# of contiguous "overflow" pages, which it rarely finds free again, so the file kept growing to twice
# the data it held.
ROW_PART_BYTES = 1800
DATABASES = (b"meta", b"currencies", b"numbers", b"accounts", b"commands", b"links", b"checkpoints", b"entries")
_POINTER = struct.Struct(">QIB")
_LINK_KEY = 12  # a pointer without its k
_ID = 16
_NO_POINTER = bytes(_POINTER.size)
CHECKPOINT_EVERY = 64  # a page of history walks at most this many links more than it returns


class AccountRow(msgspec.Struct, array_like=True, gc=False):
    """One account: its history's length and newest link, its balances. Read once per
    transaction, changed in place, written once when the transaction is flushed."""

    length: int = 0
    newest: bytes = _NO_POINTER
    balances: dict[str, int] = msgspec.field(default_factory=dict)


_ACCOUNT_ROW = msgspec.msgpack.Decoder(AccountRow)
_ENCODE = msgspec.msgpack.Encoder().encode


class StoreFormatError(ValueError):
    """The store was written by another version (or is not a ledger store)."""


class DiskFull(OSError):
    """The store cannot grow: nothing of the refused write was kept."""

    def __init__(self, detail: str) -> None:
        super().__init__(errno.ENOSPC, f"the ledger store cannot grow: {detail}")


class EntryCache:
    """Recently used decoded entries by seq, at most `max_commands` commands in all (an entry can
    hold 8,190 of them, so counting entries would not bound memory). Entry `seq` is the same bytes
    on every replica and forever, so an entry cached here never goes stale."""

    def __init__(self, max_commands: int = 20_000) -> None:
        self._max = max_commands
        self._held = 0
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, seq: int, load: Callable[[], bytes]) -> Entry:
        with self._lock:
            entry = self._entries.get(seq)
            if entry is not None:
                self._entries.move_to_end(seq)
                return entry
        entry = decode_entry(load())
        self.put(seq, entry)
        return entry

    def put(self, seq: int, entry: Entry) -> None:
        with self._lock:
            if seq in self._entries:
                return
            self._entries[seq] = entry
            self._held += len(entry.commands)
            while self._held > self._max and len(self._entries) > 1:
                self._held -= len(self._entries.popitem(last=False)[1].commands)


class WriterRows:
    """The writer's decoded account rows and their numbers, kept from one write transaction to the
    next so that a busy account is not looked up and decoded again by every transaction (two B-tree
    descents and a decode: a third of applying a transfer). A transaction changes the rows here in
    place, so they are only right while every transaction commits: whoever aborts one must `clear`
    this. Past `max_accounts` the oldest loaded go, in one go, between transactions."""

    def __init__(self, max_accounts: int = 16_384) -> None:
        self.rows: dict[str, AccountRow] = {}
        self.numbers: dict[str, bytes] = {}  # u64 of each account in `rows` that has one
        self._max = max_accounts

    def committed(self) -> None:
        """The transaction that changed the rows committed: keep at most `max_accounts` of them."""
        if len(self.rows) > self._max:
            for account in list(itertools.islice(self.rows, len(self.rows) - self._max * 3 // 4)):
                del self.rows[account]
                self.numbers.pop(account, None)

    def clear(self) -> None:
        self.rows.clear()
        self.numbers.clear()


class StoreFile:
    """The LMDB environment of one ledger. One writer thread; readers anywhere."""

    def __init__(
        self, path: str, map_size: int = 1 << 40, readonly: bool = False, cache: EntryCache | None = None
    ) -> None:
        """`map_size` only reserves address space; the file grows as the ledger does. `cache`: the
        decoded entries of an earlier environment of the same ledger (still valid: see EntryCache)."""
        self.path = path
        try:
            self.env = lmdb.open(
                path,
                subdir=False,
                map_size=map_size,
                max_dbs=len(DATABASES),
                metasync=False,  # one fsync per write txn, not two: a crash may undo the last txn,
                sync=True,  # which the Raft journal replays (the index is stored in the same txn)
                readahead=False,
                readonly=readonly,
                lock=not readonly,
                max_readers=256,
            )
        except lmdb.Error as exc:
            raise StoreFormatError(f"{path}: not a ledger store this version can open ({exc})") from exc
        try:
            self.dbs = {name: self.env.open_db(name, create=not readonly) for name in DATABASES}
        except lmdb.Error as exc:
            self.env.close()
            raise StoreFormatError(f"{path}: not a ledger store this version can open ({exc})") from exc
        self.cache = EntryCache() if cache is None else cache
        self._check_format(readonly)

    def _check_format(self, readonly: bool) -> None:
        with self.env.begin(write=not readonly) as txn:
            found = txn.get(b"format", db=self.dbs[b"meta"])
            if found is None and not readonly and txn.stat(self.dbs[b"meta"])["entries"] == 0:
                txn.put(b"format", FORMAT, db=self.dbs[b"meta"])
                return
        if found != FORMAT:
            self.env.close()
            raise StoreFormatError(
                f"{self.path} holds a ledger store of format {found!r}, this walletnode reads {FORMAT!r}: "
                "run the version that wrote it, or remove the data directory and let this member catch up "
                "from the others"
            )

    def raft_index(self) -> int:
        with self.env.begin() as txn:
            return raft_index(txn, self.dbs)

    def sync(self) -> None:
        """Everything committed so far on stable storage."""
        self.env.sync(True)

    def domain(self) -> str | None:
        """The signing domain (cluster id) a restored store belongs to; None for any other store."""
        with self.env.begin() as txn:
            found = txn.get(b"domain", db=self.dbs[b"meta"])
        return None if found is None else bytes(found).decode()

    def rebase(self, index: int) -> None:
        """Say the store is at Raft index `index` (a restore replays into it from 0)."""
        with self.env.begin(write=True) as txn:
            set_raft_index(txn, self.dbs, index)
        self.env.sync(True)

    def become_restored(self, index: int, domain: str, lineage: bytes) -> None:
        """Make a restored store the state of a new Raft group at `index`, of ledger `domain`,
        remembering where it came from (`lineage`, JSON)."""
        with self.env.begin(write=True) as txn:
            set_raft_index(txn, self.dbs, index)
            txn.put(b"domain", domain.encode(), db=self.dbs[b"meta"])
            txn.put(b"lineage", lineage, db=self.dbs[b"meta"])
        self.env.sync(True)

    def copy_to(self, fd: int, txn: lmdb.Transaction) -> None:
        """Write a compact copy of the store as `txn` sees it to `fd` (a pipe or a file)."""
        self.env.copyfd(fd, compact=True, txn=txn)

    def close(self) -> None:
        self.env.close()


def raft_index(txn: lmdb.Transaction, dbs: dict[bytes, Any]) -> int:
    found = txn.get(b"raft_index", db=dbs[b"meta"])
    return 0 if found is None else int(_U64.unpack(found)[0])


def set_raft_index(txn: lmdb.Transaction, dbs: dict[bytes, Any], index: int) -> None:
    txn.put(b"raft_index", _U64.pack(index), db=dbs[b"meta"])


#: How lmdb reports a write the disk refused: no space, a quota, or a short write (EIO).
_REFUSED = ("No space left", "Disk quota exceeded", "Input/output error")


def disk_full(exc: lmdb.Error) -> DiskFull | None:
    """The lmdb error as `DiskFull` when it means the disk (or the map) is full."""
    if isinstance(exc, lmdb.MapFullError) or any(reason in str(exc) for reason in _REFUSED):
        return DiskFull(str(exc))
    return None


class LmdbStore:
    """`LedgerStore` over one LMDB transaction (a write txn on the Raft thread, else a read txn).

    Rows of accounts, commands and history that a write transaction sets are held in dicts and
    written by `flush`, sorted, in one call per table: an account that several transfers of the
    transaction touch is read and written once, and inserting in key order costs LMDB about half
    of inserting at random (neighbouring keys share pages). Reads look in the dicts first; a
    read that walks a table flushes first."""

    def __init__(self, file: StoreFile, txn: lmdb.Transaction, rows: WriterRows | None = None) -> None:
        """`rows`: the writer's rows, for a write transaction (a reader starts with none: its view
        may be older than the writer's)."""
        self._txn = txn
        self._cache = file.cache
        dbs = file.dbs
        self._meta, self._currencies, self._accounts = dbs[b"meta"], dbs[b"currencies"], dbs[b"accounts"]
        self._commands, self._entries = dbs[b"commands"], dbs[b"entries"]
        self._links, self._checkpoints, self._numbers = dbs[b"links"], dbs[b"checkpoints"], dbs[b"numbers"]
        self._compressor = zstandard.ZstdCompressor(level=1)  # one per transaction: not thread-safe
        self._currency_rows: dict[str, bytes | None] = {}  # read once per transaction: few, read per command
        self._pending: tuple[int, bytes, bytes] | None = None  # (seq, audit hash, data) until set_results
        # Rows set in this transaction, by the ledger's hex strings (converted once, when written):
        rows = WriterRows() if rows is None else rows
        self._account_rows = rows.rows  # read (and maybe changed)
        self._changed_accounts: set[str] = set()
        self._account_numbers = rows.numbers  # u64 of the accounts read or given one
        self._new_numbers: list[tuple[bytes, bytes]] = []  # (account, u64) given in this transaction
        self._next_number: int | None = None  # read from meta when the first one is given
        self._set_commands: dict[str, bytes] = {}
        self._set_checkpoints: dict[bytes, bytes] = {}
        self._new_links: list[tuple[bytes, bytes]] = []  # in key order: appended at the table's end
        self._joining: list[str] = []  # accounts whose history the command being applied joins

    def flush(self) -> None:
        """Write the rows set so far (before the transaction commits)."""
        # Lowercase hex sorts as the bytes it stands for: keys go in in key order.
        for account in sorted(self._changed_accounts - self._account_numbers.keys()):
            self._number(account)  # new accounts, numbered in key order
        if self._new_numbers:
            with self._txn.cursor(self._numbers) as cursor:
                cursor.putmulti(sorted(self._new_numbers))
            assert self._next_number is not None
            self._txn.put(b"accounts", _U64.pack(self._next_number), db=self._meta)
            self._new_numbers = []
        if self._changed_accounts:
            rows, numbers = self._account_rows, self._account_numbers
            changed = sorted((numbers[a], _ENCODE(rows[a])) for a in self._changed_accounts)
            with self._txn.cursor(self._accounts) as cursor:
                cursor.putmulti(changed)
            self._changed_accounts.clear()
        if self._set_commands:
            with self._txn.cursor(self._commands) as cursor:
                cursor.putmulti([(bytes.fromhex(i), ref) for i, ref in sorted(self._set_commands.items())])
            self._set_commands.clear()
        if self._set_checkpoints:
            with self._txn.cursor(self._checkpoints) as cursor:
                cursor.putmulti(sorted(self._set_checkpoints.items()))
            self._set_checkpoints.clear()
        if self._new_links:
            with self._txn.cursor(self._links) as cursor:
                cursor.putmulti(self._new_links, append=True)
            self._new_links = []

    def _account(self, account: str) -> AccountRow:
        row = self._account_rows.get(account)
        if row is None:
            number = self._txn.get(bytes.fromhex(account), db=self._numbers)
            if number is None:
                row = AccountRow()
            else:
                self._account_numbers[account] = number = bytes(number)
                found = self._txn.get(number, db=self._accounts)
                assert found is not None, f"account {account} has a number and no row"
                row = _ACCOUNT_ROW.decode(found)
            self._account_rows[account] = row
        return row

    def _number(self, account: str) -> bytes:
        """The account's number (u64), given now if the account is new."""
        number = self._account_numbers.get(account)
        if number is None:
            if self._next_number is None:
                found = self._txn.get(b"accounts", db=self._meta)
                self._next_number = 0 if found is None else int(_U64.unpack(found)[0])
            number = _U64.pack(self._next_number)
            self._next_number += 1
            self._account_numbers[account] = number
            self._new_numbers.append((bytes.fromhex(account), number))
        return number

    def head(self) -> tuple[int, bytes]:
        if self._pending is not None:
            return self._pending[0], self._pending[1]
        found = self._txn.get(b"head", db=self._meta)
        if found is None:
            return 0, GENESIS
        return int(_U64.unpack_from(found)[0]), bytes(found[8:40])

    def append_entry(self, seq: int, audit_hash: bytes, data: bytes, entry: Entry) -> None:
        assert self._pending is None, "set_results ends an entry before the next one"
        self._pending = (seq, audit_hash, data)
        self._txn.put(b"head", _U64.pack(seq) + audit_hash, db=self._meta)

    def set_results(self, seq: int, results: list[Code]) -> None:
        assert self._pending is not None and self._pending[0] == seq
        _, audit_hash, data = self._pending
        self._pending = None
        codes = bytes(_CODE_BYTE[r] for r in results)
        row = _ENTRY_HEAD.pack(audit_hash, len(results)) + codes + self._compressor.compress(data)
        key = _U64.pack(seq)
        for part, start in enumerate(range(0, len(row), ROW_PART_BYTES)):
            self._txn.put(key + _U16.pack(part), row[start : start + ROW_PART_BYTES], db=self._entries, append=True)

    def _entry_row(self, seq: int) -> bytes | None:
        key = _U64.pack(seq)
        parts = []
        with self._txn.cursor(self._entries) as cursor:
            if cursor.set_range(key):
                for found, value in cursor:
                    if found[:8] != key:
                        break
                    parts.append(bytes(value))
        return b"".join(parts) if parts else None

    def entry(self, seq: int) -> StoredEntry | None:
        row = self._entry_row(seq)
        if row is None:
            return None
        audit_hash, n = _ENTRY_HEAD.unpack_from(row)
        start = _ENTRY_HEAD.size
        results = [CODES[b] for b in row[start : start + n]]
        return StoredEntry(seq, audit_hash, _decompress(row[start + n :]), results)

    def _command(self, seq: int, position: int) -> Command:
        def load() -> bytes:
            if self._pending is not None and self._pending[0] == seq:
                return self._pending[2]
            return self._entry_data(seq)

        return self._cache.get(seq, load).commands[position]

    def _entry_data(self, seq: int) -> bytes:
        row = self._entry_row(seq)
        assert row is not None, f"entry {seq} referenced by a command is missing"
        _, n = _ENTRY_HEAD.unpack_from(row)
        return _decompress(row[_ENTRY_HEAD.size + n :])

    def minters(self) -> frozenset[str]:
        raw = self._txn.get(b"minters", db=self._meta) or b""
        return frozenset(raw[i : i + 32].hex() for i in range(0, len(raw), 32))

    def set_minters(self, minters: frozenset[str]) -> None:
        self._txn.put(b"minters", b"".join(bytes.fromhex(m) for m in sorted(minters)), db=self._meta)

    def currencies(self) -> dict[str, int]:
        with self._txn.cursor(self._currencies) as cursor:
            return {bytes(code).decode(): value[0] for code, value in cursor}

    def _currency(self, code: str) -> bytes | None:
        if code not in self._currency_rows:
            found = self._txn.get(code.encode(), db=self._currencies)
            self._currency_rows[code] = None if found is None else bytes(found)
        return self._currency_rows[code]

    def scale(self, code: str) -> int | None:
        found = self._currency(code)
        return None if found is None else found[0]

    def supply(self, code: str) -> int:
        found = self._currency(code)
        assert found is not None, f"unknown currency {code}"
        return int(_U64.unpack_from(found, 1)[0])

    def set_currency(self, code: str, scale: int, supply: int) -> None:
        row = bytes((scale,)) + _U64.pack(supply)
        self._txn.put(code.encode(), row, db=self._currencies)
        self._currency_rows[code] = row

    def balance(self, account: str, currency: str) -> int:
        return self._account(account).balances.get(currency, 0)

    def set_balance(self, account: str, currency: str, amount: int) -> None:
        self._account(account).balances[currency] = amount
        self._changed_accounts.add(account)

    def wallet(self, account: str) -> dict[str, int]:
        return dict(self._account(account).balances)

    def balances(self) -> Iterator[tuple[str, str, int]]:
        self.flush()
        with self._txn.cursor(self._numbers) as cursor:
            for key, number in cursor:
                found = self._txn.get(number, db=self._accounts)
                assert found is not None, f"account {bytes(key).hex()} has a number and no row"
                for currency, amount in sorted(_ACCOUNT_ROW.decode(found).balances.items()):
                    yield bytes(key).hex(), currency, amount

    def judged(self, command_id: str) -> Applied | Rejected | None:
        found = self._set_commands.get(command_id) or self._txn.get(bytes.fromhex(command_id), db=self._commands)
        if found is None:
            return None
        seq, position, code = _REF.unpack(found)
        command = self._command(seq, position)
        return Applied(seq, command) if CODES[code] is Code.OK else Rejected(CODES[code], command)

    def record(self, command: Command, seq: int, position: int, code: Code) -> None:
        self._set_commands[command.id] = _REF.pack(seq, position, _CODE_BYTE[code])
        if not self._joining:
            return
        joining, self._joining = self._joining, []
        assert code is Code.OK, "only an applied command joins a history"
        link = [bytes.fromhex(command.id)]
        rows = self._account_rows  # loaded already: the ledger changed their balances
        for k, account in enumerate(joining):
            row = rows.get(account) or self._account(account)
            here = _POINTER.pack(seq, position, k)
            link.append(row.newest)
            if row.length % CHECKPOINT_EVERY == 0:
                self._set_checkpoints[self._number(account) + _U64.pack(row.length // CHECKPOINT_EVERY)] = here
            row.length, row.newest = row.length + 1, here
        self._changed_accounts.update(joining)
        self._new_links.append((here[:_LINK_KEY], b"".join(link)))

    def append_history(self, account: str, command_id: str) -> None:
        """Held until `record` says where the command is (it follows for the same command)."""
        self._joining.append(account)

    def history(self, account: str, after: int, limit: int) -> list[str]:
        """Walk the chain back from the first checkpoint at or past the page's end (or from the
        newest link) to the page's start."""
        self.flush()
        row = self._account(account)
        length, pointer = row.length, row.newest
        end = min(length, after + limit) - 1  # the page's last link
        if end < after:
            return []
        n = -(-end // CHECKPOINT_EVERY) * CHECKPOINT_EVERY
        if n < length - 1:
            number = self._account_numbers[account]
            found = self._txn.get(number + _U64.pack(n // CHECKPOINT_EVERY), db=self._checkpoints)
            assert found is not None, f"history checkpoint {n} of {account} is missing"
            pointer = bytes(found)
        else:
            n = length - 1
        out: list[str] = []
        while n >= after:
            link = self._txn.get(pointer[:_LINK_KEY], db=self._links)
            assert link is not None, f"history link {n} of {account} is missing"
            if n <= end:
                out.append(bytes(link[:_ID]).hex())
            before = _ID + pointer[_LINK_KEY] * _POINTER.size
            pointer, n = bytes(link[before : before + _POINTER.size]), n - 1
        out.reverse()
        return out

    def history_length(self, account: str) -> int:
        return self._account(account).length


def _decompress(frame: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompress(frame)  # its own: readers run on any thread


def remove_store(path: str) -> None:
    """Remove a store file and its lock file (a half-received copy, say)."""
    for name in (path, path + "-lock"):
        if os.path.exists(name):
            os.unlink(name)
