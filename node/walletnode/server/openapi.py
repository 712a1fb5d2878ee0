"""The OpenAPI 3.1 document of the node's API, derived from the msgspec schemas, and /docs."""

from __future__ import annotations

import functools
import html as html_lib
from typing import Any

import msgspec

from .. import __version__
from .schemas import (
    BackupRequest,
    BackupTaken,
    Balances,
    BatchResults,
    Currencies,
    CurrencyBatch,
    Error,
    History,
    HistoryItem,
    Judged,
    LeadershipTransfer,
    MemberChange,
    MintBatch,
    RaftAddress,
    Status,
    TransferBatch,
)

REF = "#/components/schemas/{name}"
KEY_PARAM = {
    "name": "key",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    "description": "account (ed25519 public key)",
}
CONSISTENCY = {
    "name": "consistency",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": ["linearizable", "stale"], "default": "linearizable"},
    "description": "linearizable (read barrier through the leader) or stale (this replica, now)",
}


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(name=name)}}}


# Every error code the API answers with: (code, HTTP status, when). docs/api.md's reference lists
# them from here, and each operation's error responses name those of their statuses.
ERROR_CODES: list[tuple[str, int, str]] = [
    ("malformed_json", 400, "the body is not JSON"),
    ("invalid_request", 400, "a body of the wrong shape: types, patterns, unknown fields, batch size"),
    ("invalid_query", 400, "an unknown query parameter, or a value out of its range"),
    ("invalid_account", 400, "the {key} in the path is not 64 lowercase hex characters"),
    ("invalid_id", 400, "the {id} in the path is not 32 lowercase hex characters"),
    ("invalid_event_id", 400, "Last-Event-ID or ?after= is not a non-negative integer"),
    ("unauthorized", 401, "an admin request without a valid, fresh, unused signature by the admin key"),
    ("not_found", 404, "no such route, or an id the ledger never judged"),
    ("method_not_allowed", 405, "a method the route does not have (the Allow header lists those it has)"),
    ("no_leader", 409, "a membership change or leadership transfer that no leader took: nothing changed"),
    ("unknown", 409, "a membership change or leadership transfer whose outcome was not known within 10 s"),
    ("backups_not_configured", 409, "POST /v1/backups to a node started without an object store (--backup-*)"),
    ("body_too_large", 413, "a body over 8 MiB"),
    ("internal", 500, "a bug: the node logged it"),
    ("backup_failed", 502, "the object store refused or could not be reached: the message is its own"),
    ("unavailable", 503, "no leader with a quorum known: nothing was applied, retry anywhere"),
    ("outcome_unknown", 503, "the entry was proposed and its fate is not known: send the same commands again"),
    (
        "disk_full",
        507,
        "the node's data volume is full: the write was refused, nothing of it applied; retry once space returns",
    ),
    ("not_ready", 503, "/readyz: no leader known, or the cluster's minters not yet in force"),
]  # fmt: skip


def _errors(*codes: str) -> dict[str, Any]:
    """The error responses that give these codes, grouped by HTTP status."""
    by_status: dict[int, list[str]] = {}
    for code, status, when in ERROR_CODES:
        if code in codes:
            by_status.setdefault(status, []).append(f"{code}: {when}")
    return {str(s): {"description": "; ".join(whens), "content": _json("Error")} for s, whens in by_status.items()}


WRITE_ERRORS = (
    "malformed_json",
    "invalid_request",
    "invalid_query",
    "body_too_large",
    "unavailable",
    "outcome_unknown",
    "disk_full",
)
READ_ERRORS = ("invalid_query", "unavailable")
ADMIN_ERRORS = ("malformed_json", "invalid_request", "unauthorized", "no_leader", "unknown")


def _batch(summary: str, body: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": _json(body)},
            "responses": {
                "200": {"description": "one result per command, in order", "content": _json("BatchResults")},
                **_errors(*WRITE_ERRORS),
            },
        }
    }


def _get(
    summary: str, body: str, params: list[dict[str, Any]], errors: tuple[str, ...] = READ_ERRORS
) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": params,
            "responses": {"200": {"description": "ok", "content": _json(body)}, **_errors(*errors)},
        }
    }


def _judged(kind: str) -> dict[str, Any]:
    return _get(
        f"The final result of a {kind} by id (any command's id is answered on any of the three routes)",
        "Judged",
        [
            {
                "name": "id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                "description": "the command's id",
            },
            CONSISTENCY,
        ],
        ("invalid_id", *READ_ERRORS, "not_found"),
    )


def _plain(summary: str, media: str) -> dict[str, Any]:
    return {
        "get": {"summary": summary, "responses": {"200": {"description": "ok", "content": {media: {"schema": {}}}}}}
    }


@functools.cache
def document() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        [
            CurrencyBatch,
            MintBatch,
            TransferBatch,
            BatchResults,
            Balances,
            History,
            HistoryItem,
            Judged,
            Currencies,
            Status,
            Error,
            MemberChange,
            LeadershipTransfer,
            BackupRequest,
            BackupTaken,
        ],
        ref_template=REF,
    )
    for schema in components.values():
        # msgspec marks a tagged union's tag as required; the API infers the kind from the route.
        if "kind" in schema.get("properties", {}):
            schema["required"] = [name for name in schema.get("required", []) if name != "kind"]
    admin: list[dict[str, list[str]]] = [{"adminSignature": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "walletcluster ledger node",
            "version": __version__,
            "description": "Raft-replicated, ed25519-signed, multi-currency wallet ledger. "
            "Signing format: docs/api.md.",
        },
        "paths": {
            "/v1/currencies": {
                **_batch("Create currencies (minters only)", "CurrencyBatch"),
                **_get("List currencies with scale and supply", "Currencies", [CONSISTENCY]),
            },
            "/v1/mint": _batch("Mint money (minters only)", "MintBatch"),
            "/v1/transfers": _batch("Transfer money (signed by the sender)", "TransferBatch"),
            "/v1/transfers/{id}": _judged("transfer"),
            "/v1/mint/{id}": _judged("mint"),
            "/v1/currencies/{id}": _judged("currency creation"),
            "/v1/accounts/{key}/balances": _get(
                "Balances of an account (0 for unknown accounts)",
                "Balances",
                [
                    KEY_PARAM,
                    CONSISTENCY,
                    {
                        "name": "currency",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^[A-Z][A-Z0-9]{0,11}$"},
                        "description": "only this currency (its balance, 0 if none)",
                    },
                    {
                        "name": "attest",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["false", "true"]},
                        "description": "sign (index, audit hash, answer) with the node's identity key",
                    },
                ],
                ("invalid_account", *READ_ERRORS),
            ),
            "/v1/accounts/{key}/transfers": _get(
                "History of an account, oldest first",
                "History",
                [
                    KEY_PARAM,
                    CONSISTENCY,
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0},
                        "description": "skip this many items (a page's `next`); default 0",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        "description": "items per page; default 100",
                    },
                ],
                ("invalid_account", *READ_ERRORS),
            ),
            "/v1/events": {
                "get": {
                    "summary": "Server-Sent Events of applied entries (resume with Last-Event-ID)",
                    "parameters": [
                        {
                            "name": "after",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 0},
                            "description": "start after this index (as the Last-Event-ID header does)",
                        }
                    ],
                    "responses": {
                        "200": {"description": "event stream", "content": {"text/event-stream": {"schema": {}}}},
                        **_errors("invalid_query", "invalid_event_id"),
                    },
                }
            },
            "/v1/status": _get("Node and cluster status", "Status", [], ("invalid_query",)),
            "/v1/members": {
                "post": {
                    "summary": "Add a Raft member (admin port; signed with the operator's admin key)",
                    "security": admin,
                    "requestBody": {"required": True, "content": _json("MemberChange")},
                    "responses": {"200": {"description": "added"}, **_errors(*ADMIN_ERRORS)},
                }
            },
            "/v1/members/{address}": {
                "delete": {
                    "summary": "Remove a Raft member (admin port; signed with the operator's admin key)",
                    "security": admin,
                    "parameters": [
                        {
                            "name": "address",
                            "in": "path",
                            "required": True,
                            "schema": msgspec.json.schema(RaftAddress),
                        }
                    ],
                    "responses": {"200": {"description": "removed"}, **_errors(*ADMIN_ERRORS)},
                }
            },
            "/v1/leadership": {
                "post": {
                    "summary": "Transfer leadership (admin port; signed with the operator's admin key)",
                    "security": admin,
                    "requestBody": {"required": True, "content": _json("LeadershipTransfer")},
                    "responses": {"200": {"description": "transferred"}, **_errors(*ADMIN_ERRORS)},
                }
            },
            "/v1/backups": {
                "post": {
                    "summary": "Take a base backup of this member's store now (admin port; signed with the admin key); "
                    "with keep_days, then apply that retention policy to the archive",
                    "security": admin,
                    "requestBody": {"required": False, "content": _json("BackupRequest")},
                    "responses": {
                        "200": {"description": "uploaded; its manifest", "content": _json("BackupTaken")},
                        **_errors(
                            "malformed_json",
                            "invalid_request",
                            "unauthorized",
                            "backups_not_configured",
                            "backup_failed",
                        ),
                    },
                }
            },
            "/healthz": _plain("Liveness", "application/json"),
            "/readyz": {
                "get": {
                    "summary": "Readiness (leader known, minters replicated)",
                    "responses": {"200": {"description": "ready"}, **_errors("not_ready")},
                }
            },
            "/metrics": _plain("Prometheus metrics", "text/plain"),
        },
        "components": {
            "schemas": components,
            "x-error-codes": [{"code": c, "status": s, "when": w} for c, s, w in ERROR_CODES],
            "securitySchemes": {
                "adminSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "WalletAdmin ts=<unix time>,nonce=<32 hex>,sig=<ed25519 signature, 128 hex>; "
                    "served only on the admin port. Signed bytes: docs/api.md.",
                }
            },
        },
    }


@functools.cache
def document_bytes() -> bytes:
    return msgspec.json.encode(document())


def _pretty(value: Any) -> str:
    return msgspec.json.format(msgspec.json.encode(value)).decode()


@functools.cache
def html() -> str:
    """A self-contained page (no CDN: clusters often have no internet) listing every operation."""
    doc = document()
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            params = ", ".join(p["name"] for p in op.get("parameters", []))
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            body_name = body.get("$ref", "").rsplit("/", 1)[-1]
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html_lib.escape(path)}</code></td>"
                f"<td>{html_lib.escape(op['summary'])}</td><td>{html_lib.escape(params)}</td>"
                f"<td>{html_lib.escape(body_name)}</td></tr>"
            )
    schemas = "".join(
        f"<h3 id='{name}'>{name}</h3><pre>{html_lib.escape(_pretty(schema))}</pre>"
        for name, schema in doc["components"]["schemas"].items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>walletcluster API</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;text-align:left}"
        "pre{background:#f4f4f4;padding:8px}</style></head><body>"
        f"<h1>{doc['info']['title']} {doc['info']['version']}</h1><p>{doc['info']['description']}</p>"
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a></p>"
        "<table><tr><th>method</th><th>path</th><th>what</th><th>parameters</th><th>body</th></tr>"
        + "".join(rows)
        + "</table><h2>Schemas</h2>"
        + schemas
        + "</body></html>"
    )
