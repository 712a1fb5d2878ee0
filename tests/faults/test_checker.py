"""The checkers catch what they must: planted stale reads, lost and duplicated writes, inventions.

Synthetic histories, no cluster: these run in the fast suite.
"""

from __future__ import annotations

import random

import pytest

from .checker import NodeState, check_final, check_linearizable, unhandled_errors
from .linearizability import INF, RegOp, SearchBudgetExceeded, check


def add(inv: float, ret: float, delta: int) -> RegOp:
    return RegOp(inv, ret, "add", delta)


def read(inv: float, ret: float, value: int) -> RegOp:
    return RegOp(inv, ret, "read", value)


# -- the register checker ----------------------------------------------------------------------------


def test_sequential_history_is_linearizable() -> None:
    assert check([add(0, 1, 5), read(2, 3, 105), add(4, 5, -3), read(6, 7, 102)], 100).ok


def test_concurrent_read_may_see_either_side_of_a_write() -> None:
    assert check([add(0, 10, 5), read(1, 2, 100), read(3, 4, 105), read(11, 12, 105)], 100).ok
    # but once one read saw it, a later read may not un-see it
    assert not check([add(0, 10, 5), read(1, 2, 105), read(3, 4, 100)], 100).ok


def test_planted_stale_read_is_caught() -> None:
    verdict = check([add(0, 1, 5), read(2, 3, 100)], 100)
    assert not verdict.ok
    assert "read -> 100" in verdict.message


def test_planted_lost_write_is_caught() -> None:
    # An acknowledged write that no later read ever reflects.
    history = [add(0, 1, 7), read(2, 3, 100), add(4, 5, 1), read(6, 7, 101)]
    assert not check(history, 100).ok


def test_planted_duplicated_write_is_caught() -> None:
    # One transfer in of 5 observed as +10: it was applied twice.
    assert not check([add(0, 1, 5), read(2, 3, 110)], 100).ok
    assert not check([add(0, 1, 5), read(0.5, 3, 110)], 100).ok


def test_unknown_write_may_or_may_not_take_effect_but_not_both() -> None:
    assert check([add(0, INF, 5), read(10, 11, 100)], 100).ok
    assert check([add(0, INF, 5), read(10, 11, 105)], 100).ok
    assert check([add(0, INF, 5), read(10, 11, 100), read(12, 13, 105)], 100).ok  # it took effect late
    assert not check([add(0, INF, 5), read(10, 11, 105), read(12, 13, 100)], 100).ok
    assert not check([add(5, INF, 5), read(0, 1, 105)], 100).ok  # not before it was sent


def test_interleaved_adds_and_reads_of_many_processes() -> None:
    # A real-time-consistent random history built from a sequential execution is linearizable;
    # shifting one read's value by the amount of one write makes it wrong.
    rng = random.Random(3)
    ops, value, t = [], 1000, 0.0
    for _ in range(300):
        t += rng.uniform(0.01, 0.1)
        point = t
        inv, ret = point - rng.uniform(0, 0.3), point + rng.uniform(0, 0.3)
        if rng.random() < 0.6:
            delta = rng.choice([-1, 1]) * rng.randint(1, 9)
            value += delta
            ops.append(add(inv, ret if rng.random() < 0.95 else INF, delta))
        else:
            ops.append(read(inv, ret, value))
    assert check(ops, 1000).ok
    reads = [i for i, o in enumerate(ops) if o.kind == "read"]
    bad = list(ops)
    i = reads[len(reads) // 2]
    bad[i] = read(bad[i].inv, bad[i].ret, bad[i].value + 10_000)
    assert not check(bad, 1000).ok


def test_search_budget_is_reported_not_passed() -> None:
    ops = [add(0, INF, 1 << k) for k in range(20)] + [read(1, 2, -1)]
    with pytest.raises(SearchBudgetExceeded):
        check(ops, 0, max_states=1000)


# -- the history and final-state checkers -----------------------------------------------------------------

A, B = "a" * 64, "b" * 64
MINTED = {A: {"USD": 100}, B: {"USD": 100}}


def transfer(i: str, inv: float, ret: float | None, outcome: str, amount: int = 5) -> dict:
    return {
        "process": 0, "type": "transfer", "id": i, "from": A, "to": B, "currency": "USD", "amount": amount,
        "inv": inv, "ret": ret, "outcome": outcome,
        "result": {"ok": "ok", "failed": "insufficient_funds"}.get(outcome, "?"),
    }  # fmt: skip


def balances_read(account: str, inv: float, ret: float, usd: int) -> dict:
    return {"process": 1, "type": "read", "account": account, "inv": inv, "ret": ret, "outcome": "ok",
            "balances": {"USD": usd}}  # fmt: skip


def node(
    name: str, applied: list[str], a: int, b: int, extra_history: tuple[str, ...] = (), dup: bool = False
) -> NodeState:
    hist = [("mint", "m1")] + [("transfer", i) for i in applied] + [("transfer", i) for i in extra_history]
    hist_b = [("mint", "m2")] + [("transfer", i) for i in applied] + [("transfer", i) for i in extra_history]
    if dup:
        hist = hist + [("transfer", applied[0])]
    status = {"audit_index": 7, "audit_hash": "h"}
    return NodeState(
        name, status, {A: {"USD": a}, B: {"USD": b}}, dict.fromkeys(applied, 1), {A: hist, B: hist_b},
        {"USD": a + b},
    )  # fmt: skip


HISTORY = [transfer("t1", 0, 1, "ok"), transfer("t2", 2, None, "unknown"), transfer("t3", 3, 4, "failed")]


def test_clean_final_state_passes() -> None:
    nodes = [node(f"n{i}", ["t1", "t2"], 90, 110) for i in range(3)]
    report = check_final(HISTORY, MINTED, {"m1", "m2"}, nodes)
    assert report.ok, report.problems
    assert (report.acknowledged, report.lost, report.duplicated, report.invented) == (1, 0, 0, 0)
    # The unknown transfer may also not have happened.
    nodes = [node(f"n{i}", ["t1"], 95, 105) for i in range(3)]
    assert check_final(HISTORY, MINTED, {"m1", "m2"}, nodes).ok


def test_planted_lost_write_in_final_state() -> None:
    nodes = [node("n0", [], 100, 100)] + [node(f"n{i}", ["t1"], 95, 105) for i in (1, 2)]
    report = check_final(HISTORY, MINTED, {"m1", "m2"}, nodes)
    assert report.lost == 1 and not report.replicas_agree


def test_planted_duplicate_in_final_state() -> None:
    nodes = [node(f"n{i}", ["t1"], 90, 110) for i in range(3)]  # t1 applied once by id, twice by money
    report = check_final(HISTORY, MINTED, {"m1", "m2"}, nodes)
    assert report.duplicated >= 1 and not report.ok
    nodes = [node(f"n{i}", ["t1"], 95, 105, dup=True) for i in range(3)]
    assert check_final(HISTORY, MINTED, {"m1", "m2"}, nodes).duplicated == 1


def test_planted_invention_and_rejected_but_applied() -> None:
    nodes = [node(f"n{i}", ["t1"], 90, 110, extra_history=("zz",)) for i in range(3)]
    report = check_final(HISTORY, MINTED, {"m1", "m2"}, nodes)
    assert report.invented == 1
    nodes = [node(f"n{i}", ["t1", "t3"], 90, 110) for i in range(3)]
    report = check_final(HISTORY, MINTED, {"m1", "m2"}, nodes)
    assert any("rejected" in p for p in report.problems)


def test_money_created_is_not_conserved() -> None:
    nodes = [node(f"n{i}", ["t1"], 95, 106) for i in range(3)]
    report = check_final(HISTORY, MINTED, {"m1", "m2"}, nodes)
    assert not report.conserved


def test_history_checker_splits_accounts_and_catches_a_stale_read() -> None:
    good = HISTORY + [balances_read(A, 5, 6, 95), balances_read(B, 5, 6, 105)]
    assert check_linearizable(good, MINTED) == (True, [])
    ok, problems = check_linearizable(HISTORY + [balances_read(B, 5, 6, 100)], MINTED)
    assert not ok and problems[0].startswith("bbbbbbbbbbbb USD")


# -- node logs ---------------------------------------------------------------------------------------


def test_unhandled_exceptions_in_a_node_log_are_problems() -> None:
    log = (
        "2026-11-29 19:46:50,962 INFO walletnode.consensus.raft: raft term 2: follower, no leader known\n"
        "2026-11-29 19:46:50,963 ERROR asyncio: Future exception was never retrieved\n"
        "future: <Future finished exception=OutcomeUnknown('leadership changed')>\n"
        "2026-11-29 19:46:51,100 ERROR walletnode.server.app: unhandled error on GET /v1/status\n"
    )
    problems = unhandled_errors("node 1", log)
    assert len(problems) == 2
    assert problems[0].startswith("node 1: ") and "Future exception was never retrieved" in problems[0]
    assert unhandled_errors("node 0", "INFO walletnode: serving\nWARNING could not configure minters yet\n") == []
