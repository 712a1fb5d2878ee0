"""The HTTP API (aiohttp): thin handlers that validate, call the node, and shape JSON.

Every failure a client can cause is a 4xx with `{"error": code, "message": text}`; 503 means the
cluster cannot answer right now (no quorum, or an outcome that a retry with the same ids will
settle). Anything else is a bug, logged, and still answered in JSON.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from .. import __version__
from ..backup.archive import ArchiveError
from ..backup.objectstore import ObjectStoreError
from ..backup.retention import Policy
from ..ledger.codes import Code
from ..ledger.commands import Command, pattern_error
from . import identity, openapi
from .batcher import OutcomeUnknown, Unavailable
from .runtime import DiskFullError, LedgerNode
from .schemas import (
    ArchiveStatus,
    Attestation,
    BackupRequest,
    BackupTaken,
    Balances,
    BatchResults,
    Currencies,
    CurrencyBatch,
    CurrencyInfo,
    History,
    HistoryItem,
    Judged,
    LeadershipTransfer,
    MemberAddress,
    MemberChange,
    MemberStatus,
    MintBatch,
    Pruned,
    Result,
    Status,
    TransferBatch,
)

log = logging.getLogger(__name__)

MAX_BODY = 8 << 20  # 8,190 transfers of ~330 bytes of JSON fit with room to spare
KEY = re.compile(r"^[0-9a-f]{64}$")
ID = re.compile(r"^[0-9a-f]{32}$")
CURRENCY = re.compile(r"^[A-Z][A-Z0-9]{0,11}$")
EVENTS_PER_READ = 64  # entries read from the store per step of an event stream
NODE_KEY: web.AppKey[LedgerNode] = web.AppKey("node", LedgerNode)
Body = TypeVar("Body")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def reply(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json")


def error(status: int, code: str, message: str) -> web.Response:
    return reply({"error": code, "message": message}, status)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    try:
        response = await handler(request)
    except ApiError as exc:
        response = error(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        code = _HTTP_CODES.get(exc.status, "http_error")
        response = error(exc.status, code, exc.text if exc.text and not exc.text.startswith("<") else exc.reason)
        if isinstance(exc, web.HTTPMethodNotAllowed):  # RFC 9110: a 405 lists the methods the resource has
            response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
    except Unavailable as exc:
        response = error(503, "unavailable", str(exc))
    except DiskFullError as exc:
        response = error(507, "disk_full", str(exc))
    except OutcomeUnknown as exc:
        response = error(503, "outcome_unknown", f"{exc}; retry with the same ids (they are idempotent)")
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = error(500, "internal", "internal error; see the node's log")
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    request.app[NODE_KEY].metrics.observe_request(request.method, route, response.status, time.perf_counter() - started)
    return response


async def decode(request: web.Request, kind: type[Body]) -> Body:
    body = await request.read()
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError:
        # JSON has one number type: 3.0 and 3e0 are the integer 3 (as JSON Schema says), read that
        # way once the fast path failed. Every number in a body is signed, as an integer, so a value
        # a float cannot hold exactly fails its signature instead of being misread.
        try:
            loose = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:  # it failed validation before its malformed end was reached
            raise ApiError(400, "malformed_json", str(exc)) from None
        return convert(integral_floats_as_ints(loose), kind)
    except msgspec.DecodeError as exc:
        raise ApiError(400, "malformed_json", str(exc)) from None


def integral_floats_as_ints(value: Any) -> Any:
    """`value` (decoded JSON) with every integral float (3.0, 1e3) turned into an int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [integral_floats_as_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: integral_floats_as_ints(v) for k, v in value.items()}
    return value


def convert(value: Any, kind: type[Body]) -> Body:
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None


def path_key(request: web.Request) -> str:
    key = request.match_info["key"]
    if not KEY.match(key):
        raise ApiError(400, "invalid_account", "account must be 64 lowercase hex characters (an ed25519 public key)")
    return key


def query_choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str:
    value = request.query.get(name, choices[0])
    if value not in choices:
        raise ApiError(400, "invalid_query", f"{name} must be one of {', '.join(choices)}")
    return value


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(400, "invalid_query", f"{name} must be an integer from {low} to {high}")
    return int(raw)


def reject_unknown_query(request: web.Request, allowed: set[str]) -> None:
    unknown = set(request.query) - allowed
    if unknown:
        raise ApiError(400, "invalid_query", f"unknown query parameter(s): {', '.join(sorted(unknown))}")


async def consistent(request: web.Request) -> str:
    """Honour ?consistency=: a read barrier through the leader unless `stale` is asked for."""
    mode = query_choice(request, "consistency", ("linearizable", "stale"))
    if mode == "linearizable":
        await request.app[NODE_KEY].read_barrier()
    return mode


# -- writes ------------------------------------------------------------------------------------


async def _execute(request: web.Request, kind: type[CurrencyBatch | MintBatch | TransferBatch]) -> web.Response:
    reject_unknown_query(request, set())
    batch = await decode(request, kind)
    commands: list[Command] = list(batch.commands)
    for i, command in enumerate(commands):
        wrong = pattern_error(command)
        if wrong is not None:
            raise ApiError(400, "invalid_request", wrong.replace("`$.", f"`$.commands[{i}].", 1))
    codes = await request.app[NODE_KEY].execute(commands)
    return reply(BatchResults([Result(c.id, code) for c, code in zip(commands, codes, strict=True)]))


async def post_currencies(request: web.Request) -> web.Response:
    return await _execute(request, CurrencyBatch)


async def post_mint(request: web.Request) -> web.Response:
    return await _execute(request, MintBatch)


async def post_transfers(request: web.Request) -> web.Response:
    return await _execute(request, TransferBatch)


# -- reads -------------------------------------------------------------------------------------


async def get_balances(request: web.Request) -> web.Response:
    reject_unknown_query(request, {"consistency", "currency", "attest"})
    key = path_key(request)
    currency = request.query.get("currency")
    if currency is not None and not CURRENCY.match(currency):
        raise ApiError(400, "invalid_query", "currency must match [A-Z][A-Z0-9]{0,11}")
    attest = query_choice(request, "attest", ("false", "true")) == "true"
    mode = await consistent(request)
    node = request.app[NODE_KEY]
    with node.machine.reading() as ledger:
        balances = {currency: ledger.balance(key, currency)} if currency else ledger.wallet(key)
        index, audit_hash = ledger.seq, ledger.audit_hash
    if "lie-on-reads" in node.faults:
        balances = {code: amount + 1 for code, amount in balances.items()} or {"XXX": 1}
    body = Balances(account=key, balances=balances, index=index, consistency=mode)
    if attest:
        answer = msgspec.json.encode({"account": key, "balances": balances}, order="sorted")
        signed = identity.attestation_bytes(node.config.cluster_id, node.config.name, index, audit_hash, answer)
        body.attestation = Attestation(
            node=node.config.name,
            index=index,
            audit_hash=audit_hash.hex(),
            signature=node.key.sign(signed).signature.hex(),
        )
    return reply(body)


async def get_history(request: web.Request) -> web.Response:
    reject_unknown_query(request, {"consistency", "after", "limit"})
    key = path_key(request)
    after = query_int(request, "after", 0, 0, 2**62)
    limit = query_int(request, "limit", 100, 1, 1000)
    await consistent(request)
    with request.app[NODE_KEY].machine.reading() as ledger:
        items = [HistoryItem(a.seq, a.command) for a in ledger.account_history(key, after, limit)]
        more = ledger.history_length(key) > after + len(items)
    return reply(History(account=key, items=items, next=after + len(items) if more else None))


async def get_command(request: web.Request) -> web.Response:
    """The final result of a command id: judged once, the same answer forever. Ids are unique across
    kinds, so GET /v1/transfers/{id}, /v1/mint/{id} and /v1/currencies/{id} answer for any of them."""
    reject_unknown_query(request, {"consistency"})
    command_id = request.match_info["id"]
    if not ID.match(command_id):
        raise ApiError(400, "invalid_id", "id must be 32 lowercase hex characters")
    await consistent(request)
    with request.app[NODE_KEY].machine.reading() as ledger:
        applied = ledger.applied(command_id)
        rejected = None if applied is not None else ledger.rejected(command_id)
    if applied is not None:
        judged = Judged(command_id, Code.OK, applied.seq, applied.command)
    elif rejected is not None:
        judged = Judged(command_id, rejected.code, None, rejected.command)
    else:
        raise ApiError(404, "not_found", f"no command with id {command_id} was judged by the ledger")
    return reply(judged)


async def get_currencies(request: web.Request) -> web.Response:
    reject_unknown_query(request, {"consistency"})
    await consistent(request)
    with request.app[NODE_KEY].machine.reading() as ledger:
        infos = [CurrencyInfo(code, scale, supply) for code, (scale, supply) in sorted(ledger.currencies().items())]
        index = ledger.seq
    return reply(Currencies(infos, index))


def status_of(node: LedgerNode) -> Status:
    assert node.raft is not None
    raft = node.raft.status()
    by_address = {m.raft_address: m for m in node.config.members}
    members = []
    for address in raft["members"]:
        known = by_address.get(address)
        members.append(
            MemberStatus(
                id=known.id if known else raft["member_ids"].get(address, -1),
                name=known.name if known else address.split(".")[0].rpartition(":")[0] or address,
                raft_address=address,
                connected=address == node.config.self_member.raft_address or raft["connected"].get(address, False),
                voter=address not in raft["learners"],
                match_index=raft["match_index"].get(address),
                error=raft["peer_errors"].get(address),
            )
        )
    leader = by_address.get(raft["leader"]) if raft["leader"] else None
    with node.machine.reading() as ledger:
        index, audit_hash, minters = ledger.seq, ledger.audit_hash, sorted(ledger.minters)
    return Status(
        id=node.config.id,
        name=node.config.name,
        cluster=node.config.cluster_name,
        cluster_id=node.config.cluster_id,
        role=raft["role"],
        term=raft["term"],
        leader=leader.name if leader else raft["leader"],
        commit_index=raft["commit_index"],
        applied_index=raft["applied_index"],
        has_quorum=raft["has_quorum"],
        members=members,
        audit_index=index,
        audit_hash=audit_hash.hex(),
        node_key=node.key.verify_key.encode().hex(),
        minters=minters,
        journal_bytes=raft["journal_bytes"],
        first_log_index=raft["first_log_index"],
        store_bytes=node.machine.size_bytes(),
        version=__version__,
        archive=None if node.archiver is None else msgspec.convert(node.archiver.status(index), ArchiveStatus),
    )


async def get_status(request: web.Request) -> web.Response:
    reject_unknown_query(request, set())
    return reply(status_of(request.app[NODE_KEY]))


async def healthz(request: web.Request) -> web.Response:
    return reply({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready = this node knows a leader with a quorum and the cluster's minters are in force."""
    status = status_of(request.app[NODE_KEY])
    problems = []
    if status.leader is None:
        problems.append("no leader known")
    if not request.app[NODE_KEY].minters_configured:
        problems.append("minters not yet replicated")
    if problems:
        return error(503, "not_ready", "; ".join(problems))
    return reply({"status": "ready", "role": status.role, "leader": status.leader})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[NODE_KEY].metrics.render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


async def events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events of applied entries; resume with Last-Event-ID (or ?after=)."""
    reject_unknown_query(request, {"after"})
    raw = request.headers.get("Last-Event-ID", request.query.get("after", "0")).strip() or "0"
    if not raw.isdigit() or int(raw) > 2**62:
        raise ApiError(400, "invalid_event_id", "Last-Event-ID / after must be a non-negative integer")
    last = int(raw)
    node = request.app[NODE_KEY]
    assert node.events is not None
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    while True:
        batch = node.machine.entries(last, EVENTS_PER_READ)
        for stored in batch:
            data = {
                "index": stored.seq,
                "audit_hash": stored.audit_hash.hex(),
                "entry": base64.b64encode(stored.data).decode(),
                "results": stored.results,
            }
            head = f"id: {stored.seq}\nevent: entry\ndata: ".encode()
            await response.write(head + msgspec.json.encode(data) + b"\n\n")
            last = stored.seq
        if not batch:
            await response.write(b": keep-alive\n\n")
            await node.events.wait_past(last, 15.0)


# -- admin (the operator) ----------------------------------------------------------------------


async def require_admin(request: web.Request) -> None:
    """Admin calls carry a signature by the operator's admin key (see walletnode.admin_auth)."""
    verifier = request.app[NODE_KEY].admin
    assert verifier is not None, "the admin API is only served with an admin key"
    problem = verifier.check(
        request.headers.get("Authorization", ""), request.method, request.raw_path, await request.read()
    )
    if problem is not None:
        raise ApiError(401, "unauthorized", problem)


async def _membership(
    request: web.Request, action: str, address: str | None, member: int | None = None
) -> web.Response:
    outcome = await request.app[NODE_KEY].change_membership(action, address, member)
    if outcome != "applied":
        raise ApiError(409, outcome, f"{action} was not applied ({outcome}); retry against the leader")
    return reply({"result": "ok"})


async def post_member(request: web.Request) -> web.Response:
    await require_admin(request)
    change = await decode(request, MemberChange)
    return await _membership(request, "add", change.address, change.member)


async def delete_member(request: web.Request) -> web.Response:
    await require_admin(request)
    change = convert({"address": request.match_info["address"]}, MemberAddress)
    return await _membership(request, "remove", change.address)


async def post_leadership(request: web.Request) -> web.Response:
    await require_admin(request)
    change = await decode(request, LeadershipTransfer)
    return await _membership(request, "transfer", change.address)


async def post_backup(request: web.Request) -> web.Response:
    """Take a base backup of this member's store now; answers its manifest when it is uploaded.
    With keep_days, the archive's retention policy is applied after it (what the operator's
    schedule does)."""
    await require_admin(request)
    asked = await decode(request, BackupRequest) if await request.read() else BackupRequest()
    archiver = request.app[NODE_KEY].archiver
    if archiver is None:
        raise ApiError(409, "backups_not_configured", "this node has no object store to back up to (--backup-*)")
    policy = None if asked.keep_days is None else Policy(asked.keep_days, asked.keep_bases)
    try:
        manifest, pruned = await asyncio.get_running_loop().run_in_executor(None, archiver.base_backup, policy)
    except (ArchiveError, ObjectStoreError) as exc:
        raise ApiError(502, "backup_failed", str(exc)) from exc
    taken = BackupTaken(
        manifest, None if pruned is None else Pruned([b.name for b in pruned.bases], len(pruned.segments))
    )
    return reply(msgspec.to_builtins(taken))


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=openapi.document_bytes(), content_type="application/json")


async def get_docs(request: web.Request) -> web.Response:
    return web.Response(text=openapi.html(), content_type="text/html")


def create_app(node: LedgerNode) -> web.Application:
    """The client API: everything but membership and leadership."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[json_errors])
    app[NODE_KEY] = node
    app.add_routes(
        [
            web.post("/v1/currencies", post_currencies),
            web.get("/v1/currencies", get_currencies),
            web.post("/v1/mint", post_mint),
            web.post("/v1/transfers", post_transfers),
            web.get("/v1/transfers/{id}", get_command),
            web.get("/v1/mint/{id}", get_command),
            web.get("/v1/currencies/{id}", get_command),
            web.get("/v1/accounts/{key}/balances", get_balances),
            web.get("/v1/accounts/{key}/transfers", get_history),
            web.get("/v1/events", events),
            web.get("/v1/status", get_status),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/metrics", metrics),
            web.get("/openapi.json", get_openapi),
            web.get("/docs", get_docs),
        ]
    )
    return app


def create_admin_app(node: LedgerNode) -> web.Application:
    """The admin API, on a port of its own so a NetworkPolicy can admit only the operator to it.
    Served only when the node has the admin public key (`node.admin`)."""
    app = web.Application(client_max_size=64 << 10, middlewares=[json_errors])
    app[NODE_KEY] = node
    app.add_routes(
        [
            web.post("/v1/members", post_member),
            web.delete("/v1/members/{address}", delete_member),
            web.post("/v1/leadership", post_leadership),
            web.post("/v1/backups", post_backup),
            web.get("/v1/status", get_status),
        ]
    )
    return app
