"""Run fault-injection schedules and check the outcome.

    python -m tests.faults.run --schedules N --seed S [--cluster both|netns|docker]

Each schedule starts a fresh 3-node cluster (network namespaces, or Docker containers), funds a few
accounts, runs concurrent writers and linearizable readers while the nemesis injects a seeded
random sequence of faults, heals everything, waits until the replicas converge and checks: nothing
acknowledged lost, nothing applied twice, nothing applied that no client sent, money conserved per
currency, replicas identical, and the client history linearizable per account.

On failure the seed, the schedule and the path of the saved history are printed. The run ends with
exactly one summary line:

    schedules=N operations=M acknowledged=K lost=0 duplicated=0 invented=0 conserved=yes linearizable=yes
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

from nacl.signing import SigningKey

from walletnode.ledger.signing import public_hex

from . import checker
from .clusters import (
    DockerCluster,
    FaultCluster,
    NamespaceCluster,
    can_run_docker,
    can_run_namespaces,
    cleanup_stale,
)
from .nemesis import Deck, Nemesis, Step, deck_cards, plan
from .workload import Workload

MINTER = SigningKey(bytes([7]) * 32)


@dataclass
class Outcome:
    index: int
    kind: str
    seed: int
    steps: list[Step]
    report: checker.Report = field(default_factory=checker.Report)
    max_gap: float = 0.0
    max_gap_during: str = ""
    history_path: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def make_cluster(kind: str, base_dir: str) -> FaultCluster:
    cls = NamespaceCluster if kind == "netns" else DockerCluster
    return cls(base_dir, public_hex(MINTER))


def write_gaps(history: list[checker.Record], events: list[dict[str, Any]]) -> tuple[float, str]:
    """The longest time between two successive acknowledged writes, and the faults active then."""
    done = sorted(op["ret"] for op in history if op["type"] == "transfer" and op["outcome"] == "ok")
    best, where = 0.0, (0.0, 0.0)
    for a, b in zip(done, done[1:], strict=False):
        if b - a > best:
            best, where = b - a, (a, b)
    during = [e["detail"] for e in events if e["start"] < where[1] and e["end"] > where[0]]
    return best, "; ".join(during) or "no fault (quiet period)"


def run_schedule(index: int, kind: str, seed: int, steps: list[Step], out_dir: str, log: Any) -> Outcome:
    outcome = Outcome(index, kind, seed, steps)
    started = time.monotonic()
    base = tempfile.mkdtemp(prefix=f"{kind}-{index}-", dir=out_dir)
    cluster = make_cluster(kind, base)
    workload: Workload | None = None
    nemesis: Nemesis | None = None
    try:
        cluster.start()
        workload = Workload(cluster.urls, MINTER, seed)
        workload.setup()
        nemesis = Nemesis(cluster, workload.now)
        workload.start()
        time.sleep(1.0)
        nemesis.run(steps)
        nemesis.heal_all()
        time.sleep(2.0)  # writes keep going on the healed cluster
        workload.stop()
        statuses = checker.wait_converged(cluster.urls, diagnose=cluster.diagnose)
        ids = sorted({op["id"] for op in workload.history if op["type"] == "transfer"})
        nodes = [checker.read_node(url, workload.accounts, ids) for url in cluster.urls]
        report = checker.check_final(workload.history, workload.minted, workload.mint_ids, nodes)
        linearizable, problems = checker.check_linearizable(workload.history, workload.minted)
        report.linearizable = linearizable
        report.problems += problems + nemesis.problems
        outcome.report = report
        outcome.events = nemesis.to_json()
        outcome.notes = nemesis.notes
        outcome.max_gap, outcome.max_gap_during = write_gaps(workload.history, outcome.events)
        del statuses
    except Exception as exc:  # noqa: BLE001 - a harness failure is a failed schedule, reported with its seed
        outcome.report.problems.append(f"harness: {exc.__class__.__name__}: {exc}\n{traceback.format_exc()}")
        with contextlib.suppress(Exception):
            outcome.report.problems.append(cluster.diagnose())
    finally:
        if workload is not None and not workload._stop.is_set():
            with contextlib.suppress(RuntimeError):
                workload.stop()
        if nemesis is not None and not outcome.events:
            outcome.events = nemesis.to_json()
        with contextlib.suppress(Exception):  # after a harness error a node may have no log to read
            for i in range(cluster.size):
                outcome.report.problems += checker.unhandled_errors(f"node {i}", cluster.node_log(i))
        cluster.cleanup()
        outcome.seconds = time.monotonic() - started
    history = workload.history if workload is not None else []
    if workload is not None:
        outcome.report.operations = len(history)
    outcome.history_path = os.path.join(out_dir, f"schedule-{index}-{kind}-seed-{seed}.json")
    with open(outcome.history_path, "w") as f:
        json.dump(
            {
                "schedule": index,
                "cluster": kind,
                "seed": seed,
                "steps": [asdict(s) for s in steps],
                "events": outcome.events,
                "minted": workload.minted if workload else {},
                "history": history,
                "problems": outcome.report.problems,
            },
            f,
        )
    return outcome


def schedules_for(seed: int, count: int, clusters: str, faults: int) -> list[tuple[int, str, int, list[Step]]]:
    """Deterministic from the seed: (index, cluster kind, schedule seed, steps) for every schedule."""
    master = random.Random(seed)
    decks = {kind: Deck(random.Random(master.getrandbits(64)), deck_cards(kind)) for kind in ("netns", "docker")}
    planned = []
    for k in range(count):
        kind = ("docker" if k % 3 == 2 or count == 2 and k == 1 else "netns") if clusters == "both" else clusters
        schedule_seed = master.getrandbits(32)
        steps = plan(random.Random(schedule_seed), decks[kind], faults if kind == "netns" else max(2, faults - 1))
        planned.append((k, kind, schedule_seed, steps))
    return planned


def summary(outcomes: list[Outcome]) -> str:
    r = [o.report for o in outcomes]
    return (
        f"schedules={len(outcomes)} operations={sum(x.operations for x in r)} "
        f"acknowledged={sum(x.acknowledged for x in r)} lost={sum(x.lost for x in r)} "
        f"duplicated={sum(x.duplicated for x in r)} invented={sum(x.invented for x in r)} "
        f"conserved={'yes' if all(x.conserved for x in r) else 'no'} "
        f"linearizable={'yes' if all(x.linearizable for x in r) else 'no'}"
    )


def run(
    schedules: int, seed: int, clusters: str = "both", faults: int = 4, only: int | None = None,
    out_dir: str | None = None, log: Any = sys.stdout,
) -> tuple[bool, list[Outcome], str]:  # fmt: skip
    out_dir = out_dir or tempfile.mkdtemp(prefix=f"walletcluster-faults-{seed}-")
    os.makedirs(out_dir, exist_ok=True)
    kinds = {"netns", "docker"} if clusters == "both" else {clusters}
    for kind in sorted(kinds):
        why = can_run_namespaces() if kind == "netns" else can_run_docker()
        if why:
            raise SystemExit(f"cannot run the {kind} cluster: {why}")
    outcomes = []
    for k, kind, schedule_seed, steps in schedules_for(seed, schedules, clusters, faults):
        if only is not None and k != only:
            continue
        print(f"schedule {k} ({kind}, seed {schedule_seed}): {', '.join(s.fault for s in steps)}", file=log, flush=True)
        o = run_schedule(k, kind, schedule_seed, steps, out_dir, log)
        outcomes.append(o)
        r = o.report
        print(
            f"  {o.seconds:.0f}s, {r.operations} operations, {r.acknowledged} acknowledged; "
            f"longest write gap {o.max_gap:.2f}s during: {o.max_gap_during}",
            file=log,
            flush=True,
        )
        for e in o.events:
            print(f"    {e['start']:7.2f}-{e['end']:7.2f}s {e['detail']}", file=log)
        for note in o.notes:
            print(f"    note: {note}", file=log)
        if not r.ok:
            print(f"  FAILED (reproduce: python -m tests.faults.run --schedules {schedules} --seed {seed} "
                  f"--cluster {clusters} --only {k}); history: {o.history_path}", file=log)  # fmt: skip
            for p in r.problems[:30]:
                print(f"    {p}", file=log)
    ok = all(o.report.ok for o in outcomes)
    if outcomes:
        worst = max(outcomes, key=lambda o: o.max_gap)
        print(
            f"longest write unavailability: {worst.max_gap:.2f}s (schedule {worst.index}, {worst.kind}) "
            f"during: {worst.max_gap_during}",
            file=log,
        )
    print(f"histories saved under {out_dir}; seed {seed}", file=log)
    line = summary(outcomes)
    print(line, file=log, flush=True)
    return ok, outcomes, line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None, help="default: a random seed (printed)")
    parser.add_argument("--cluster", choices=["both", "netns", "docker"], default="both")
    parser.add_argument("--faults", type=int, default=4, help="faults per schedule")
    parser.add_argument("--only", type=int, default=None, help="run only schedule K of the plan (to reproduce)")
    parser.add_argument("--out", default=None, help="directory for histories and node logs")
    parser.add_argument("--cleanup", action="store_true", help="only remove what an interrupted run left behind")
    args = parser.parse_args(argv)
    if args.cleanup:
        cleanup_stale()
        return 0
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    ok, _, _ = run(args.schedules, seed, args.cluster, args.faults, args.only, args.out)
    return 0 if ok else 1


if __name__ == "__main__":
    threading.excepthook = lambda a: traceback.print_exception(a.exc_type, a.exc_value, a.exc_traceback)
    sys.exit(main())
