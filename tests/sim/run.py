"""`make sim SEEDS=N SEED=S`: run the deterministic simulator on N seeds from S, print one summary line.

Seeds are S, S+1, ..., S+N-1; each failing one prints the command that replays it alone.
`--plant BUG` runs with a bug planted in the core (see walletnode.consensus.core.PLANTED_BUGS).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from walletnode.consensus.core import PLANTED_BUGS

from .checker import Violation
from .world import World


@dataclass
class Failure:
    seed: int
    error: str

    def replay(self, planted: frozenset[str]) -> str:
        plant = "".join(f" --plant {bug}" for bug in sorted(planted))
        return f"python -m tests.sim.run --seeds 1 --seed {self.seed}{plant}"


def run_seed(seed: int, planted: frozenset[str] = frozenset()) -> tuple[World, Failure | None]:
    world = World(seed, planted)
    try:
        world.run()
    except (Violation, AssertionError) as exc:  # a core assertion is a found bug too
        return world, Failure(seed, f"{type(exc).__name__}: {exc}")
    return world, None


def run_seeds(first: int, count: int, planted: frozenset[str] = frozenset()) -> Iterator[tuple[World, Failure | None]]:
    for seed in range(first, first + count):
        yield run_seed(seed, planted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--plant", action="append", default=[], choices=sorted(PLANTED_BUGS))
    parser.add_argument("--stop-at-first", action="store_true", help="stop at the first failing seed")
    args = parser.parse_args(argv)
    planted = frozenset(args.plant)
    started = time.monotonic()
    totals = {"events": 0, "writes_acknowledged": 0, "reads_served": 0, "entries": 0, "terms": 0}
    failures: list[Failure] = []
    runs = 0
    for world, failure in run_seeds(args.seed, args.seeds, planted):
        runs += 1
        for key, value in world.summary().items():
            totals[key] += value
        if failure is not None:
            failures.append(failure)
            print(f"seed {failure.seed} FAILED: {failure.error}\n  replay: {failure.replay(planted)}", flush=True)
            if args.stop_at_first:
                break
    elapsed = time.monotonic() - started
    print(
        f"sim: seeds={runs} first={args.seed} failed={len(failures)} planted={','.join(sorted(planted)) or 'none'} "
        + " ".join(f"{key}={value}" for key, value in totals.items())
        + f" seconds={elapsed:.1f}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
