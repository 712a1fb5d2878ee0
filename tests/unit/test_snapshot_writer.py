"""The forked snapshot writer must not outlive its node (it would write under the successor)."""

from __future__ import annotations

import os
import signal
import time

from walletnode.consensus.replicator import _end_with_parent


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_a_snapshot_writer_dies_when_its_node_is_sigkilled() -> None:
    ready_r, ready_w = os.pipe()
    node = os.fork()
    if node == 0:  # the node: forks a writer, then lives until killed
        if os.fork() == 0:
            _end_with_parent(os.getppid())
            os.write(ready_w, str(os.getpid()).encode())
            time.sleep(60)
            os._exit(0)
        time.sleep(60)
        os._exit(0)
    os.close(ready_w)
    writer = int(os.read(ready_r, 32))
    os.close(ready_r)
    assert not _gone(writer)
    os.kill(node, signal.SIGKILL)
    os.waitpid(node, 0)
    deadline = time.monotonic() + 10
    while not _gone(writer) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _gone(writer), "the writer outlived its node"
