"""Backups: how long a base backup, its verification and a restore take for a large ledger, and the
recovery point under write load.

`python -m bench.backup --store STORE` (a store of `python -m bench.history --build-only`, e.g. 10M
transfers between 1M accounts) uploads a base backup of it to a SeaweedFS server started here
(tests/s3.py), recomputes its audit chain (`walletctl backup verify`'s work) and restores it into a
new data directory (`walletctl restore`'s work), timing each.

The recovery point: a three-node cluster archives (`--archive-every-s`, default 2) while a writer
keeps transferring; at a random moment every node is SIGKILLed. What the archive holds is what a
restore at `latest` gets; the recovery point of the run is how long before the kill the oldest
acknowledged transfer missing from the archive was acknowledged (0 when none is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import threading
import time
from typing import Any

from nacl.signing import SigningKey
from tests.s3 import S3Server

from walletnode.backup.archive import Archive
from walletnode.backup.objectstore import S3Store
from walletnode.backup.restore import STORE_NAME, Target, restore
from walletnode.backup.verify import verify_base
from walletnode.client import WalletClient, new_id
from walletnode.ledger.commands import Transfer
from walletnode.ledger.signing import public_hex, sign
from walletnode.localcluster import LocalCluster
from walletnode.server.machine import LedgerMachine

MINTER = SigningKey(bytes([7]) * 32)
SENDERS = [SigningKey(bytes([40 + i]) * 32) for i in range(8)]


def large_ledger(s3: S3Server, store: str, work: str) -> dict[str, Any]:
    archive = Archive(S3Store(s3.location("large")), "bench-large")
    machine = LedgerMachine(store)
    try:
        started = time.monotonic()
        with machine.snapshot() as view:
            manifest = archive.put_base(view, "bench")
        backup_s = time.monotonic() - started
    finally:
        machine.close()
    started = time.monotonic()
    verified = verify_base(archive, manifest, work)
    verify_s = time.monotonic() - started
    started = time.monotonic()
    restored = restore(archive, os.path.join(work, "restored"), Target(), "bench-large-restored", {1: "127.0.0.1:1"})
    restore_s = time.monotonic() - started
    assert restored.audit_hash == manifest.audit_hash == verified.audit_hash
    return {
        "store": os.path.basename(store),
        "entries": manifest.seq,
        "store_file_bytes": os.path.getsize(store),
        "base_backup_bytes": manifest.store_bytes,
        "compressed_bytes": manifest.object_bytes,
        "base_backup_s": round(backup_s, 1),
        "verify_s": round(verify_s, 1),
        "restore_s": round(restore_s, 1),
    }


class Writer(threading.Thread):
    """Batches of 10 transfers between the senders, one request at a time per thread."""

    def __init__(self, client: WalletClient, seed: int) -> None:
        super().__init__(daemon=True)
        self.client, self.random = client, random.Random(seed)
        self.acked: list[tuple[float, str]] = []
        self.stop = False

    def run(self) -> None:
        cluster_id = self.client.cluster_id
        while not self.stop:
            batch = []
            for _ in range(10):
                a, b = self.random.sample(SENDERS, 2)
                t = Transfer(id=new_id(), from_=public_hex(a), to=public_hex(b), currency="USD", amount=1, signature="")
                batch.append(sign(a, cluster_id, t))
            try:
                results = self.client.submit(batch)
            except Exception:
                return  # the cluster was killed
            now = time.time()
            self.acked += [(now, c.id) for c, r in zip(batch, results, strict=True) if r == "ok"]


def recovery_point(s3: S3Server, work: str, run: int, every_s: float, seconds: float) -> dict[str, Any]:
    prefix = f"rpo-{run}"
    cluster = LocalCluster(
        os.path.join(work, prefix),
        [public_hex(MINTER)],
        3,
        extra_args=(
            "--backup-endpoint", s3.endpoint, "--backup-bucket", s3.bucket, "--backup-prefix", prefix,
            "--archive-every-s", str(every_s),
        ),
        env=s3.env(),
    )  # fmt: skip
    cluster.start_all()
    try:
        cluster.wait_ready(timeout=60)
        client = WalletClient(cluster.urls, **cluster.trust)
        assert client.create_currency(MINTER, "USD", 2) == "ok"
        for key in SENDERS:
            assert client.mint(MINTER, public_hex(key), "USD", 10**9) == "ok"
        writers = [Writer(WalletClient(cluster.urls, **cluster.trust), run * 10 + i) for i in range(4)]
        for w in writers:
            w.start()
        time.sleep(seconds * random.Random(run).uniform(0.6, 1.0))
        killed_at = time.time()
        for i in range(3):
            cluster.kill(i)
        for w in writers:
            w.stop = True
            w.join(10)
    finally:
        cluster.stop_all()
    # What a restore at `latest` holds: a transfer acknowledged before the kill and not in it is lost.
    archive = Archive(S3Store(s3.location(prefix)), "wallet")
    restored = os.path.join(work, prefix + "-restored")
    restore(archive, restored, Target(), "wallet-restored", {1: "127.0.0.1:1"})
    machine = LedgerMachine(os.path.join(restored, STORE_NAME))
    acked = sorted(a for w in writers for a in w.acked)
    try:
        with machine.reading() as ledger:
            lost = [(t, i) for t, i in acked if ledger.store.judged(i) is None]
    finally:
        machine.close()
    return {
        "acknowledged": len(acked),
        "lost": len(lost),
        "recovery_point_s": round(killed_at - lost[0][0], 3) if lost else 0.0,
        "transfers_per_s": round(len(acked) / max(1e-9, acked[-1][0] - acked[0][0]), 1) if acked else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="a store file of bench.history --build-only (skipped without one)")
    parser.add_argument("--rpo-runs", type=int, default=3)
    parser.add_argument("--archive-every-s", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=15.0, help="writes before the kill, at most")
    parser.add_argument("--out", default="bench/backup.json")
    parser.add_argument("--work-dir", help="where the object store and the restores go (default: TMPDIR)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-backup-", dir=args.work_dir) as work:
        s3 = S3Server(os.path.join(work, "s3"))
        os.makedirs(s3.base_dir)
        s3.start()
        S3Store(s3.location("warm-up")).put("first", b"x")  # SeaweedFS makes its first volumes lazily (seconds)
        try:
            result: dict[str, Any] = {"archive_every_s": args.archive_every_s}
            if args.store:
                result["large"] = large_ledger(s3, args.store, work)
                print(json.dumps(result["large"]), flush=True)
            runs = []
            for run in range(args.rpo_runs):
                runs.append(recovery_point(s3, work, run, args.archive_every_s, args.seconds))
                print(json.dumps(runs[-1]), flush=True)
            points = [r["recovery_point_s"] for r in runs]
            result["recovery_point"] = {
                "runs": runs,
                "median_s": statistics.median(points) if points else None,
                "max_s": max(points, default=None),
            }
        finally:
            s3.stop()
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "recovery_point"} | {"rpo": result["recovery_point"]}))


if __name__ == "__main__":
    main()
