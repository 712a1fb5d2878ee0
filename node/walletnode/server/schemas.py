"""Request and response bodies of the HTTP API; msgspec validates them and derives the OpenAPI."""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..backup.archive import BaseManifest
from ..ledger.codes import Code
from ..ledger.commands import MAX_BATCH, CreateCurrency, CurrencyCode, Hex32, Key, Mint, Transfer

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
    """The result of one command of a batch."""

    id: Hex32
    result: Annotated[Code, msgspec.Meta(description="what happened: a code, never an error (docs/api.md)")]


class BatchResults(msgspec.Struct):
    """One result per command of the batch, in the order they were sent."""

    results: list[Result]


class Attestation(msgspec.Struct):
    """Signed by the node's identity key over `attestation_bytes` (docs/api.md, "Attested reads")."""

    node: Annotated[str, msgspec.Meta(description="name of the node that signed (e.g. wallet-1)")]
    index: Annotated[int, msgspec.Meta(description="the audit index the answer was read at")]
    audit_hash: Annotated[str, msgspec.Meta(description="audit hash h_index, 64 hex chars")]
    signature: Annotated[str, msgspec.Meta(description="ed25519 signature by node_key of /v1/status, 128 hex")]


class Balances(msgspec.Struct, omit_defaults=True):
    """An account's balances, read at one audit index."""

    account: Key
    balances: Annotated[
        dict[str, int],
        msgspec.Meta(
            description="currency code -> integer minor units: the non-zero ones, or with ?currency= "
            "just that one (0 if none)"
        ),
    ]
    index: Annotated[int, msgspec.Meta(description="audit index of the ledger state the balances were read from")]
    consistency: Annotated[
        str,
        msgspec.Meta(
            description="linearizable: read after a barrier through the leader (every write acknowledged "
            "before the request is included); stale: this node's state as it was"
        ),
    ]
    attestation: Annotated[Attestation | None, msgspec.Meta(description="present with ?attest=true only")] = None


class HistoryItem(msgspec.Struct):
    """One applied mint or transfer that touched the account."""

    index: Annotated[int, msgspec.Meta(description="audit index of the entry that applied it")]
    command: CreateCurrency | Mint | Transfer


class Judged(msgspec.Struct):
    """The final result of a command id: `ok` and the entry that applied it, or its first failure."""

    id: Hex32
    result: Annotated[Code, msgspec.Meta(description="ok, or the failure code the id was first given (final)")]
    index: Annotated[int | None, msgspec.Meta(description="audit index of the applying entry; null for a failure")]
    command: CreateCurrency | Mint | Transfer


class History(msgspec.Struct):
    """A page of an account's mints and transfers, oldest first."""

    account: Key
    items: list[HistoryItem]
    next: Annotated[
        int | None,
        msgspec.Meta(description="position to pass as ?after= for the next page (items skipped); null at the end"),
    ]


class CurrencyInfo(msgspec.Struct):
    code: CurrencyCode
    scale: Annotated[int, msgspec.Meta(description="decimal places: amounts are integers of 10^-scale units")]
    supply: Annotated[int, msgspec.Meta(description="total minted, integer minor units")]


class Currencies(msgspec.Struct):
    """Every currency, by code."""

    currencies: list[CurrencyInfo]
    index: Annotated[int, msgspec.Meta(description="audit index the list was read at")]


class MemberStatus(msgspec.Struct):
    id: Annotated[int, msgspec.Meta(description="member id (pod ordinal); -1 for an address not in the configuration")]
    name: Annotated[str, msgspec.Meta(description="member name, e.g. wallet-2")]
    raft_address: Annotated[str, msgspec.Meta(description="host:port of its Raft endpoint")]
    connected: Annotated[bool, msgspec.Meta(description="this node has a live Raft connection to it")]
    voter: Annotated[
        bool, msgspec.Meta(description="false while it is a learner: it receives the log, has no vote yet")
    ]
    match_index: Annotated[
        int | None, msgspec.Meta(description="on the leader, the last Raft index known replicated on it; else null")
    ]
    error: Annotated[
        str | None,
        msgspec.Meta(description="why this node cannot reach that member (unresolvable name, no answer); else null"),
    ] = None


class ArchiveStatus(msgspec.Struct):
    """This member's part in the continuous archive of applied entries (only the leader uploads)."""

    archiving: Annotated[bool, msgspec.Meta(description="this member is uploading applied entries now (the leader)")]
    archived_seq: Annotated[int | None, msgspec.Meta(description="last entry known to be in the archive")]
    lag_entries: Annotated[int | None, msgspec.Meta(description="entries applied here and not yet archived")]
    last_upload_age_s: Annotated[float | None, msgspec.Meta(description="seconds since the last segment upload")]
    error: Annotated[str | None, msgspec.Meta(description="why the last upload failed (the object store's message)")]
    last_base_backup: Annotated[str | None, msgspec.Meta(description="name of the last base backup this member took")]


class Status(msgspec.Struct):
    """This node's view of itself and of the cluster."""

    id: Annotated[int, msgspec.Meta(description="member id (pod ordinal)")]
    name: Annotated[str, msgspec.Meta(description="node name, e.g. wallet-0")]
    cluster: Annotated[str, msgspec.Meta(description="cluster name")]
    cluster_id: Annotated[str, msgspec.Meta(description="cluster id: part of every signed message")]
    role: Annotated[str, msgspec.Meta(description="leader, follower or candidate")]
    term: Annotated[int, msgspec.Meta(description="Raft term")]
    leader: Annotated[str | None, msgspec.Meta(description="name (or address) of the leader it follows; null if none")]
    commit_index: Annotated[int, msgspec.Meta(description="Raft commit index known to this node")]
    applied_index: Annotated[int, msgspec.Meta(description="last Raft index applied on this node")]
    has_quorum: Annotated[bool, msgspec.Meta(description="connected to a majority of the members")]
    members: list[MemberStatus]
    audit_index: Annotated[int, msgspec.Meta(description="ledger entries applied (i of h_i)")]
    audit_hash: Annotated[str, msgspec.Meta(description="audit hash h_i, 64 hex chars")]
    node_key: Annotated[str, msgspec.Meta(description="this node's identity key (ed25519, 64 hex): attestations")]
    minters: Annotated[list[str], msgspec.Meta(description="minter keys in force in the ledger")]
    journal_bytes: Annotated[int, msgspec.Meta(description="size of the Raft journal on disk")]
    first_log_index: Annotated[
        int, msgspec.Meta(description="first Raft index in the journal (the ones before are compacted into the store)")
    ]
    store_bytes: Annotated[int, msgspec.Meta(description="size of the ledger store (LMDB file) on disk")]
    version: Annotated[str, msgspec.Meta(description="walletcluster version of the node")]
    archive: Annotated[ArchiveStatus | None, msgspec.Meta(description="backups: null when not configured")] = None


class Error(msgspec.Struct):
    """Any 4xx or 5xx answer (see the error codes)."""

    error: Annotated[str, msgspec.Meta(description="error code (table of error codes)")]
    message: Annotated[str, msgspec.Meta(description="for people: what was wrong")]


RaftAddress = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9.-]+:[0-9]{1,5}$", description="host:raft port")]


class MemberAddress(_Body):
    address: RaftAddress


class MemberChange(_Body):
    address: RaftAddress
    member: Annotated[
        int, msgspec.Meta(ge=0, le=1_000_000, description="the joining member's id: its pod ordinal, or its --id")
    ]


class LeadershipTransfer(_Body):
    address: RaftAddress | None = None


class BackupRequest(_Body):
    """POST /v1/backups: optionally, the retention policy to apply once the backup is uploaded."""

    keep_days: (
        Annotated[
            float,
            msgspec.Meta(gt=0, description="then delete base backups older than this (and entries only they needed)"),
        ]
        | None
    ) = None
    keep_bases: Annotated[
        int, msgspec.Meta(ge=1, le=100_000, description="but keep at least this many of the newest")
    ] = 1


class Pruned(msgspec.Struct):
    bases: Annotated[list[str], msgspec.Meta(description="base backups deleted")]
    segments: Annotated[int, msgspec.Meta(description="archive segments deleted")]


class BackupTaken(msgspec.Struct):
    backup: BaseManifest
    pruned: Annotated[Pruned | None, msgspec.Meta(description="what retention deleted; null: none was asked")] = None
