"""The final-state and history checks, independent of the node's code: plain HTTP and JSON.

An operation record (one dict per client operation, as `workload.py` writes them):

    transfer: {"process", "type": "transfer", "id", "from", "to", "currency", "amount",
               "inv", "ret" (None if unknown), "outcome": "ok" | "failed" | "unknown", "result"}
    read:     {"process", "type": "read", "account", "inv", "ret", "outcome", "balances"}

`ok` means the cluster answered `ok` or `exists` (a retry of an applied id: applied once);
`failed` is a definite rejection (e.g. `insufficient_funds`); `unknown` means the client gave up.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from . import linearizability
from .linearizability import INF, RegOp

OK_CODES = ("ok", "exists")

Record = dict[str, Any]


# -- node logs --------------------------------------------------------------------------------------

# What Python, asyncio, threading and our HTTP layer log for an exception nobody handled, and what
# a node logs when a Raft invariant fails and it stops itself. (A full disk, a fault the suite
# injects on purpose, is logged as an error without a traceback while the node waits for space.)
UNHANDLED = (
    "stopping this node",
    "exception was never retrieved",
    "Task was destroyed but it is pending",
    "Exception in callback",
    "Exception in thread",
    "unhandled error on",
)


def unhandled_errors(node: str, log: str) -> list[str]:
    """The lines of a node's log that report an unhandled exception, each named by its node."""
    return [
        f"{node}: unhandled exception logged: {line}" for line in log.splitlines() if any(u in line for u in UNHANDLED)
    ]


# -- linearizability of the client history -----------------------------------------------------------


def register_histories(
    history: Sequence[Record], initial: dict[str, dict[str, int]]
) -> dict[tuple[str, str], list[RegOp]]:
    """One register history per (account, currency): transfers become adds, reads become reads."""
    parts: dict[tuple[str, str], list[RegOp]] = defaultdict(list)
    currencies = sorted({c for wallet in initial.values() for c in wallet})
    for op in history:
        if op["type"] == "transfer":
            if op["outcome"] == "failed":
                continue  # a definite rejection changed nothing
            ret = INF if op["outcome"] == "unknown" else op["ret"]
            parts[(op["from"], op["currency"])].append(RegOp(op["inv"], ret, "add", -op["amount"], op))
            parts[(op["to"], op["currency"])].append(RegOp(op["inv"], ret, "add", op["amount"], op))
        elif op["type"] == "read" and op["outcome"] == "ok":
            for currency in currencies:
                value = op["balances"].get(currency, 0)
                parts[(op["account"], currency)].append(RegOp(op["inv"], op["ret"], "read", value, op))
    return parts


def check_linearizable(
    history: Sequence[Record], initial: dict[str, dict[str, int]], max_states: int = 2_000_000
) -> tuple[bool, list[str]]:
    problems = []
    for (account, currency), ops in sorted(register_histories(history, initial).items()):
        start = initial.get(account, {}).get(currency, 0)
        try:
            verdict = linearizability.check(ops, start, max_states)
        except linearizability.SearchBudgetExceeded as exc:
            problems.append(f"{account[:12]} {currency}: undecided: {exc}")
            continue
        if not verdict.ok:
            problems.append(f"{account[:12]} {currency}: {verdict.message}")
    return not problems, problems


# -- the final state of every replica ------------------------------------------------------------------


@dataclass
class NodeState:
    name: str
    status: dict[str, Any]
    balances: dict[str, dict[str, int]]  # account -> currency -> amount (stale read, local state)
    applied: dict[str, int]  # command id -> applied index, for every id a client sent that was found
    history: dict[str, list[tuple[str, str]]]  # account -> [(kind, id)] oldest first
    supply: dict[str, int]


@dataclass
class Report:
    operations: int = 0
    acknowledged: int = 0
    lost: int = 0
    duplicated: int = 0
    invented: int = 0
    conserved: bool = True
    replicas_agree: bool = True
    linearizable: bool = True
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_final(
    history: Sequence[Record],
    minted: dict[str, dict[str, int]],
    mint_ids: set[str],
    nodes: Sequence[NodeState],
) -> Report:
    """Lost, duplicated, invented, conservation and agreement, on the states read from every node."""
    report = Report(operations=len(history))
    transfers = {op["id"]: op for op in history if op["type"] == "transfer"}
    acknowledged = {i for i, op in transfers.items() if op["outcome"] == "ok"}
    rejected = {i for i, op in transfers.items() if op["outcome"] == "failed"}
    report.acknowledged = len(acknowledged)
    sent = set(transfers) | mint_ids
    accounts = sorted(minted)
    total_minted: Counter[str] = Counter()
    for wallet in minted.values():
        total_minted.update(wallet)

    lost: set[str] = set()
    duplicated: set[str] = set()
    invented: set[str] = set()
    for node in nodes:
        # Lost: acknowledged but not applied here.
        for i in sorted(acknowledged - set(node.applied)):
            lost.add(i)
            report.problems.append(f"{node.name}: acknowledged transfer {i} is not applied")
        for i in sorted(rejected & set(node.applied)):
            report.problems.append(f"{node.name}: transfer {i} was rejected ({transfers[i]['result']}) yet applied")
        # Duplicated / invented, from each account's history.
        applied_in_history: set[str] = set()
        for account in accounts:
            entries = node.history.get(account, [])
            counts = Counter(i for _, i in entries)
            for i, n in counts.items():
                if n > 1:
                    duplicated.add(i)
                    report.problems.append(f"{node.name}: {i} appears {n} times in {account[:12]}'s history")
            for kind, i in entries:
                applied_in_history.add(i)
                if i not in sent:
                    invented.add(i)
                    report.problems.append(f"{node.name}: {kind} {i} in {account[:12]}'s history was never sent")
                elif kind == "transfer" and i in transfers:
                    op = transfers[i]
                    if account not in (op["from"], op["to"]):
                        report.problems.append(f"{node.name}: {i} in the history of {account[:12]}, not a party")
        for i, op in transfers.items():
            if i in node.applied:
                for party in (op["from"], op["to"]):
                    if i not in {x for _, x in node.history.get(party, [])}:
                        report.problems.append(f"{node.name}: applied {i} missing from {party[:12]}'s history")
        # Every balance equals what the applied transfers (each once) make of the mints.
        expected: dict[str, Counter[str]] = {a: Counter(minted[a]) for a in accounts}
        for i in node.applied:
            sent_op = transfers.get(i)
            if sent_op is not None:
                expected[sent_op["from"]][sent_op["currency"]] -= sent_op["amount"]
                expected[sent_op["to"]][sent_op["currency"]] += sent_op["amount"]
        for account in accounts:
            got = {c: v for c, v in node.balances.get(account, {}).items() if v}
            want = {c: v for c, v in expected[account].items() if v}
            if got != want:
                report.problems.append(
                    f"{node.name}: {account[:12]} holds {got}, the transfers applied once each give {want}"
                )
                if any(got.get(c, 0) != want.get(c, 0) for c in set(got) | set(want)):
                    duplicated.add(f"balance:{node.name}:{account}")
        # Conservation per currency.
        totals: Counter[str] = Counter()
        for account in accounts:
            totals.update(node.balances.get(account, {}))
        for currency in total_minted:
            if totals[currency] != total_minted[currency] or node.supply.get(currency) != total_minted[currency]:
                report.conserved = False
                report.problems.append(
                    f"{node.name}: {currency} balances sum to {totals[currency]}, supply says "
                    f"{node.supply.get(currency)}, minted {total_minted[currency]}"
                )
    # Agreement between replicas.
    if nodes:
        first = nodes[0]
        for node in nodes[1:]:
            if (node.status.get("audit_index"), node.status.get("audit_hash")) != (
                first.status.get("audit_index"),
                first.status.get("audit_hash"),
            ):
                report.replicas_agree = False
                report.problems.append(f"{node.name} and {first.name} differ in audit index/hash")
            if node.balances != first.balances:
                report.replicas_agree = False
                report.problems.append(f"{node.name} and {first.name} hold different balances")
            if set(node.applied) != set(first.applied):
                report.replicas_agree = False
                report.problems.append(f"{node.name} and {first.name} applied different transfer ids")
    report.lost, report.duplicated, report.invented = len(lost), len(duplicated), len(invented)
    return report


# -- reading the replicas -------------------------------------------------------------------------------


def wait_converged(urls: Sequence[str], timeout: float = 90, diagnose: Callable[[], str] = str) -> list[dict[str, Any]]:
    """Until every node answers and all report the same audit index and hash twice in a row."""
    deadline = time.monotonic() + timeout
    previous = None
    with httpx.Client(timeout=2) as http:
        while True:
            statuses: list[Any] = []
            for url in urls:
                try:
                    r = http.get(url + "/v1/status")
                    statuses.append(r.json() if r.status_code == 200 else None)
                except (httpx.HTTPError, ValueError):
                    statuses.append(None)
            if all(statuses):
                seen = {(s["audit_index"], s["audit_hash"]) for s in statuses}
                leaders = {s["leader"] for s in statuses}
                if len(seen) == 1 and len(leaders) == 1 and None not in leaders and seen == previous:
                    return statuses  # type: ignore[return-value]
                previous = seen if len(seen) == 1 else None
            if time.monotonic() > deadline:
                raise AssertionError(f"replicas did not converge in {timeout}s: {statuses}\n{diagnose()}")
            time.sleep(0.3)


def read_node(url: str, accounts: Sequence[str], ids: Sequence[str]) -> NodeState:
    """Everything the checker needs from one node, read locally (`consistency=stale`)."""
    stale = {"consistency": "stale"}
    with httpx.Client(timeout=10) as http:

        def get(path: str, params: dict[str, str] | None = None) -> httpx.Response:
            for _ in range(20):
                try:
                    r = http.get(url + path, params={**stale, **(params or {})})
                    if r.status_code < 500:
                        return r
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
            raise AssertionError(f"{url}{path} does not answer")

        status = http.get(url + "/v1/status").json()
        balances = {a: dict(get(f"/v1/accounts/{a}/balances").json()["balances"]) for a in accounts}
        applied: dict[str, int] = {}
        for i in ids:
            r = get(f"/v1/transfers/{i}")
            if r.status_code == 200 and r.json()["result"] == "ok":
                applied[i] = int(r.json()["index"])
            elif r.status_code not in (200, 404):
                raise AssertionError(f"{url}/v1/transfers/{i}: {r.status_code} {r.text}")
        history: dict[str, list[tuple[str, str]]] = {}
        for a in accounts:
            items: list[tuple[str, str]] = []
            after = 0
            while True:
                page = get(f"/v1/accounts/{a}/transfers", {"after": str(after), "limit": "1000"}).json()
                items += [(item["command"]["kind"], item["command"]["id"]) for item in page["items"]]
                if page["next"] is None:
                    break
                after = int(page["next"])
            history[a] = items
        supply = {c["code"]: int(c["supply"]) for c in get("/v1/currencies").json()["currencies"]}
    return NodeState(str(status["name"]), status, balances, applied, history, supply)
