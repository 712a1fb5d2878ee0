"""Ledger commands, their canonical signing bytes and the Raft entry that carries a batch of them.

One set of structs serves the JSON API (hex strings, validated by msgspec on decode) and the
replicated log (msgpack, array-like, so an entry is compact and its bytes are deterministic).
"""

from __future__ import annotations

import functools
import hashlib
import operator
import re
import struct
from collections.abc import Callable
from typing import Annotated, ClassVar, NamedTuple

import msgspec

DOMAIN = b"walletcluster/v1\x00"
MAX_AMOUNT = 2**63 - 1
MAX_BATCH = 8190


def _text(pattern: str, low: int, high: int, description: str) -> msgspec.Meta:
    """A string msgspec bounds by length on every decode; its pattern, published in the schema,
    is checked where a command enters (`pattern_error`). Every replica decodes every entry of
    the log, already checked by the node that accepted it: as msgspec patterns, those checks cost
    ~4 µs a transfer on each of them, a tenth of the cluster's CPU."""
    return msgspec.Meta(
        min_length=low, max_length=high, description=description, extra_json_schema={"pattern": pattern}
    )


Hex32 = Annotated[str, _text("^[0-9a-f]{32}$", 32, 32, "128-bit id, 32 lowercase hex chars")]
Key = Annotated[str, _text("^[0-9a-f]{64}$", 64, 64, "ed25519 public key, 64 lowercase hex chars")]
Signature = Annotated[str, _text("^[0-9a-f]{128}$", 128, 128, "ed25519 signature, 128 lowercase hex chars")]
CurrencyCode = Annotated[str, _text("^[A-Z][A-Z0-9]{0,11}$", 1, 12, "currency code")]
Amount = Annotated[int, msgspec.Meta(ge=0, le=MAX_AMOUNT, description="integer minor units")]
Scale = Annotated[int, msgspec.Meta(ge=0, le=18, description="decimal places of the currency")]


class _Command(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind", gc=False):
    id: Hex32

    KIND: ClassVar[int] = 0

    def signer(self) -> str:
        raise NotImplementedError

    def fields_bytes(self) -> bytes:
        raise NotImplementedError

    def signing_bytes(self, cluster_id: str) -> bytes:
        """The exact bytes an ed25519 signature covers (docs/api.md, "Signing")."""
        cid = cluster_id.encode()
        return b"".join(
            (DOMAIN, bytes((len(cid),)), cid, bytes((self.KIND,)), bytes.fromhex(self.id), self.fields_bytes())
        )


def _code_bytes(code: str) -> bytes:
    raw = code.encode("ascii")
    return bytes((len(raw),)) + raw


class CreateCurrency(_Command, frozen=True, tag="create_currency"):
    minter: Key
    code: CurrencyCode
    scale: Scale
    signature: Signature

    KIND: ClassVar[int] = 1

    def signer(self) -> str:
        return self.minter

    def fields_bytes(self) -> bytes:
        return bytes.fromhex(self.minter) + _code_bytes(self.code) + bytes((self.scale,))


class Mint(_Command, frozen=True, tag="mint"):
    minter: Key
    to: Key
    currency: CurrencyCode
    amount: Amount
    signature: Signature

    KIND: ClassVar[int] = 2

    def signer(self) -> str:
        return self.minter

    def fields_bytes(self) -> bytes:
        return (
            bytes.fromhex(self.minter)
            + bytes.fromhex(self.to)
            + _code_bytes(self.currency)
            + struct.pack(">Q", self.amount)
        )


class Transfer(_Command, frozen=True, tag="transfer", rename={"from_": "from"}):
    from_: Key
    to: Key
    currency: CurrencyCode
    amount: Amount
    signature: Signature

    KIND: ClassVar[int] = 3

    def signer(self) -> str:
        return self.from_

    def fields_bytes(self) -> bytes:
        return (
            bytes.fromhex(self.from_)
            + bytes.fromhex(self.to)
            + _code_bytes(self.currency)
            + struct.pack(">Q", self.amount)
        )


Command = CreateCurrency | Mint | Transfer


class _Patterns(NamedTuple):
    fields: Callable[[Command], tuple[str, ...]]  # the values of the fields with a pattern
    together: re.Pattern[str]  # their patterns joined by newlines, which no pattern admits
    each: tuple[tuple[str, re.Pattern[str]], ...]  # (JSON name, pattern), to say which failed


@functools.cache
def _patterns(kind: type[_Command]) -> _Patterns:
    """The patterns the schema of `kind` publishes, ready to check (one regex call a command)."""
    names, each = [], []
    for field in msgspec.structs.fields(kind):
        for meta in getattr(field.type, "__metadata__", ()):
            pattern = (meta.extra_json_schema or {}).get("pattern") if isinstance(meta, msgspec.Meta) else None
            if pattern is not None:
                names.append(field.name)
                each.append((field.encode_name, re.compile(pattern)))
    assert len(names) >= 2, kind  # attrgetter of one name returns a value, not a tuple
    together = "\n".join(p.pattern.removeprefix("^").removesuffix("$") for _, p in each)
    return _Patterns(operator.attrgetter(*names), re.compile(together), tuple(each))


def pattern_error(command: Command) -> str | None:
    """Why a decoded command breaks a pattern of its schema (msgspec's wording, path relative to
    the command), or None when it keeps them all."""
    rules = _patterns(type(command))
    values = rules.fields(command)
    if rules.together.fullmatch("\n".join(values)) is not None:
        return None
    for value, (json_name, pattern) in zip(values, rules.each, strict=True):
        if pattern.fullmatch(value) is None:
            return f"Expected `str` matching regex {pattern.pattern!r} - at `$.{json_name}`"
    raise AssertionError(f"a field of {command!r} holds a newline yet matches its pattern")


class Configure(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """Cluster configuration replicated through the log, so every replica judges minters alike."""

    minters: tuple[str, ...]


class Entry(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """One Raft entry: a group-committed batch of verified commands, or a configuration change."""

    commands: tuple[Command, ...] = ()
    configure: Configure | None = None
    #: When the member that took the commands made the entry (unix ms; 0 in entries of before it
    #: was recorded). Covered by the audit hash; what a point-in-time restore to a time goes by.
    time_ms: int = 0


_entry_encoder = msgspec.msgpack.Encoder()
_entry_decoder = msgspec.msgpack.Decoder(Entry)


def encode_entry(entry: Entry) -> bytes:
    return _entry_encoder.encode(entry)


def decode_entry(data: bytes) -> Entry:
    return _entry_decoder.decode(data)


def chain(previous: bytes, entry_bytes: bytes) -> bytes:
    """Audit hash chain: h_i = sha256(h_{i-1} || entry_bytes)."""
    return hashlib.sha256(previous + entry_bytes).digest()


GENESIS = bytes(32)
