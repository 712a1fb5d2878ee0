"""Request and response bodies of the HTTP API; msgspec validates them and derives the OpenAPI."""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..ledger.codes import Code
from ..ledger.commands import MAX_BATCH, CreateCurrency, Hex32, Key, Mint, Transfer

Batch = Annotated[int, msgspec.Meta(ge=1, le=MAX_BATCH)]


class _Body(msgspec.Struct, forbid_unknown_fields=True):
    pass


class CurrencyBatch(_Body):
    commands: Annotated[list[CreateCurrency], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class MintBatch(_Body):
    commands: Annotated[list[Mint], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class TransferBatch(_Body):
    commands: Annotated[list[Transfer], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class Result(msgspec.Struct):
    id: Hex32
    result: Code


class BatchResults(msgspec.Struct):
    results: list[Result]


class Attestation(msgspec.Struct):
    """Signed by the node's identity key over `attestation_bytes` (docs/api.md)."""

    node: str
    index: int
    audit_hash: str
    signature: str


class Balances(msgspec.Struct, omit_defaults=True):
    account: Key
    balances: dict[str, int]
    index: int
    consistency: str
    attestation: Attestation | None = None


class HistoryItem(msgspec.Struct):
    index: int
    command: CreateCurrency | Mint | Transfer


class History(msgspec.Struct):
    account: Key
    items: list[HistoryItem]
    next: int | None


class CurrencyInfo(msgspec.Struct):
    code: str
    scale: int
    supply: int


class Currencies(msgspec.Struct):
    currencies: list[CurrencyInfo]
    index: int


class MemberStatus(msgspec.Struct):
    id: int
    name: str
    raft_address: str
    connected: bool
    match_index: int | None
    # Why this node cannot reach that member (unresolvable name, no answer); None when it can or
    # when the other member is the one that dials (Raft connects from the higher address).
    error: str | None = None


class Status(msgspec.Struct):
    id: int
    name: str
    cluster: str
    cluster_id: str
    role: str
    term: int
    leader: str | None
    commit_index: int
    applied_index: int
    has_quorum: bool
    members: list[MemberStatus]
    audit_index: int
    audit_hash: str
    node_key: str
    minters: list[str]
    journal_bytes: int
    version: str


class Error(msgspec.Struct):
    error: str
    message: str


class MemberChange(_Body):
    address: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9.-]+:[0-9]{1,5}$")]


class LeadershipTransfer(_Body):
    address: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9.-]+:[0-9]{1,5}$")] | None = None
