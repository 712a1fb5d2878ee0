"""A Wing–Gong / Porcupine-style linearizability checker for one account's balance in one currency.

The object is a register holding an integer. Operations:

- `add(delta)`: a transfer in (delta > 0) or out (delta < 0). An acknowledged one took effect exactly
  once somewhere between its invocation and its completion; an `unknown` one (the client gave up)
  may have taken effect at any point after its invocation, or never: its completion is +inf and it
  need not be linearized at all.
- `read -> value`: a linearizable balance read that returned `value`.

The search linearizes one operation at a time: an operation may go next only if no other pending
operation completed before it was invoked. States are memoized on (set of linearized operations as
a bitmask, register value), as in Lowe's refinement of Wing & Gong and in Porcupine. Transfers touch
two accounts; checking every (account, currency) partition is what the locality of
linearizability allows for single-object histories (a necessary condition for the whole history).

This module knows nothing about the node's code: it works on plain numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

INF = math.inf


@dataclass(frozen=True)
class RegOp:
    inv: float
    ret: float  # INF when the outcome is unknown
    kind: str  # "add" | "read"
    value: int  # the delta, or the value read
    ref: Any = None  # what to show in a report (the operation record)

    def __post_init__(self) -> None:
        if self.kind not in ("add", "read"):
            raise ValueError(f"unknown op kind {self.kind!r}")
        if self.kind == "read" and self.ret == INF:
            raise ValueError("a read without an answer constrains nothing: leave it out")


@dataclass
class Verdict:
    ok: bool
    explored: int
    message: str = ""
    witness: list[RegOp] = field(default_factory=list)  # the longest linearizable prefix found


class SearchBudgetExceeded(Exception):
    pass


def check(ops: Sequence[RegOp], initial: int, max_states: int = 2_000_000) -> Verdict:
    """Is there a linearization of `ops` (starting from `initial`) that respects real time?"""
    ops = sorted(ops, key=lambda o: (o.inv, o.ret))
    n = len(ops)
    required = 0
    unknown: list[int] = []
    for i, op in enumerate(ops):
        if op.ret == INF:
            unknown.append(i)
        else:
            required |= 1 << i
    if required == 0:
        return Verdict(True, 0)
    seen: set[tuple[int, int]] = set()
    # Depth-first, with an explicit stack: (mask, value, depth, path) for witness reporting.
    # A path is a cons list (index, parent) so pushing a state costs O(1).
    stack: list[tuple[int, int, int, Any]] = [(0, initial, 0, None)]
    best: tuple[int, Any] = (0, None)
    explored = 0
    while stack:
        mask, value, depth, path = stack.pop()
        if (mask, value) in seen:
            continue
        seen.add((mask, value))
        explored += 1
        if explored > max_states:
            raise SearchBudgetExceeded(f"more than {max_states} states explored ({n} operations)")
        if depth > best[0]:
            best = (depth, path)
        pending = required & ~mask
        if pending == 0:
            return Verdict(True, explored)
        lo = (pending & -pending).bit_length() - 1
        # Candidates: not yet linearized, invoked before every pending op completed.
        min_ret = INF
        window: list[int] = []
        i = lo
        while i < n and ops[i].inv <= min_ret:
            if not (mask >> i) & 1:
                window.append(i)
                if ops[i].ret < min_ret:
                    min_ret = ops[i].ret
            i += 1
        candidates = [u for u in unknown if u < lo and not (mask >> u) & 1] + window
        moves = []
        for c in candidates:
            op = ops[c]
            if op.inv > min_ret:
                continue
            if op.kind == "read":
                if op.value != value:
                    continue
                moves.append((op.ret, c, value))
            else:
                moves.append((op.ret, c, value + op.value))
        # Try the op that completed first first (pushed last).
        for _, c, new_value in sorted(moves, reverse=True):
            if (mask | (1 << c), new_value) not in seen:
                stack.append((mask | (1 << c), new_value, depth + 1, (c, path)))
    order: list[int] = []
    node = best[1]
    while node is not None:
        order.append(node[0])
        node = node[1]
    order.reverse()
    witness = [ops[i] for i in order]
    linearized = set(order)
    stuck = [ops[i] for i in range(n) if i not in linearized and ops[i].ret != INF][:5]
    value = initial + sum(o.value for o in witness if o.kind == "add")
    message = (
        f"not linearizable: after a longest valid prefix of {len(order)} of {n} operations "
        f"(balance {value}), none of the next operations fits; first pending: " + "; ".join(describe(o) for o in stuck)
    )
    return Verdict(False, explored, message, witness)


def describe(op: RegOp) -> str:
    ret = "unknown" if op.ret == INF else f"{op.ret:.3f}"
    what = f"read -> {op.value}" if op.kind == "read" else f"add {op.value:+d}"
    return f"{what} [{op.inv:.3f}, {ret}]"
