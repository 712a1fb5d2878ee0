"""`walletctl status` fits an 80-column terminal: every value shown whole, nothing cut to "…"."""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console

from walletnode.cli.walletctl import short_address, status_table


def node(i: int, role: str, applied: int, connected: bool = True) -> dict[str, Any]:
    names = [f"wallet-{j}" for j in range(3)]
    return {
        "url": f"http://wallet-{i}.wallet-peers.payments.svc:8700",
        "name": names[i],
        "role": role,
        "term": 1234,
        "leader": "wallet-0",
        "commit_index": 12_345_678,
        "applied_index": applied,
        "lag": 12_345_678 - applied,
        "members": [{"name": n, "connected": connected or n == "wallet-0"} for n in names],
        "audit_hash": "3f9a8b2c1d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4",
        "audit_index": applied,
    }


def render(rows: list[dict[str, Any]]) -> str:
    console = Console(width=80, record=True, color_system=None)
    console.print(status_table(rows))
    return console.export_text()


def test_status_of_a_three_node_cluster_fits_80_columns_whole() -> None:
    rows = [
        node(0, "leader", 12_345_678),
        node(1, "follower", 12_345_600, connected=False),
        {"url": "http://wallet-2.wallet-peers.payments.svc:8700", "error": "ConnectError: [Errno 111] refused"},
    ]
    text = render(rows)
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "…" not in text, text
    for whole in ("wallet-0", "wallet-1", "leader", "follower", "1234", "12345678", "12345600", "78", "3f9a8b2c1d4e"):
        assert whole in text, (whole, text)
    assert "1/2" in text and "2/2" in text
    assert re.search(r"wallet-2 +down", text), text


def test_a_down_node_is_named_as_briefly_as_still_tells_it_apart() -> None:
    assert short_address("http://wallet-2.wallet-peers.payments.svc:8700") == "wallet-2"
    assert short_address("http://127.0.0.1:8702") == "127.0.0.1:8702"
    assert short_address("http://localhost:8702/") == "localhost:8702"
