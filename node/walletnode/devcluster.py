"""`make run`: a three-node ledger on 127.0.0.1 for development, in the foreground until Ctrl-C.

Data in .run/, a dev minter key `minter` (no password) in .run/keys, the dev CA that signed the
nodes' certificate in .run/tls/ca.crt, and .run/env to source.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from .keystore import Keystore
from .localcluster import LocalCluster

RUN_DIR = ".run"
HTTP_PORTS = (8701, 8702, 8703)
RAFT_PORTS = (7701, 7702, 7703)
ADMIN_PORTS = (9701, 9702, 9703)


def main() -> int:
    keys = Keystore(os.path.join(RUN_DIR, "keys"))
    if "minter" not in keys.names():
        keys.create("minter", "")
    cluster = LocalCluster(RUN_DIR, [keys.public("minter")], 3, HTTP_PORTS, RAFT_PORTS, ADMIN_PORTS)
    urls = ",".join(cluster.urls)
    with open(os.path.join(RUN_DIR, "env"), "w") as f:
        f.write(
            f"export WALLET_URL={urls}\nexport WALLET_CA={cluster.ca_file}\n"
            f"export WALLET_HOME={RUN_DIR}/keys\nexport WALLET_PASSWORD=\n"
        )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    cluster.start_all()
    try:
        cluster.wait_ready(timeout=60)
    except (RuntimeError, TimeoutError) as exc:
        print(f"cluster did not start: {exc}", file=sys.stderr)
        cluster.stop_all()
        return 1
    print(
        f"""
walletcluster dev ledger: 3 nodes up (HTTPS {", ".join(map(str, HTTP_PORTS))}; Raft {", ".join(map(str, RAFT_PORTS))}; \
admin {", ".join(map(str, ADMIN_PORTS))})
data and logs in {RUN_DIR}/; dev minter key 'minter' in {RUN_DIR}/keys; dev CA {cluster.ca_file}

In another shell:
  source {RUN_DIR}/env
  .venv/bin/walletctl keys new alice && .venv/bin/walletctl keys new bob
  .venv/bin/walletctl currency create USD --scale 2
  .venv/bin/walletctl mint alice 1000.00 USD
  .venv/bin/walletctl send bob 250.00 USD --as alice
  .venv/bin/walletctl balance
  .venv/bin/walletctl status

Ctrl-C stops the cluster (data is kept; `make clean` removes it).
""",
        flush=True,
    )
    reported: set[int] = set()
    while not stopping:
        for i, process in cluster.processes.items():
            if process.poll() is not None and i not in reported:
                reported.add(i)
                print(f"node {i} exited with {process.returncode}; see {cluster.log_path(i)}", flush=True)
        time.sleep(0.5)
    print("stopping...", flush=True)
    cluster.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
