"""`walletnode serve`: run one ledger node; `walletnode whoami`: show the derived identity."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

import click
import httpx

from ..config import ConfigError, NodeConfig, resolve
from ..consensus.replicator import RaftSettings

ALLOW_FAULTS = "WALLETNODE_ALLOW_TEST_FAULTS"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def identity_options(f: Any) -> Any:
    options = [
        click.option("--id", "node_id", type=int, help="Raft id (index into --cluster); default: from the hostname"),
        click.option("--cluster", help="Raft addresses host:port,host:port,... in id order (with --id)"),
        click.option(
            "--replicas",
            type=int,
            default=3,
            show_default=True,
            envvar="WALLET_REPLICAS",
            help="Cluster size when the id comes from the hostname",
        ),
        click.option("--service", envvar="WALLET_PEER_SERVICE", help="Headless service of the peers (hostname mode)"),
        click.option("--namespace", envvar="POD_NAMESPACE", default="", help="Namespace of the peers (hostname mode)"),
        click.option("--name", help="Cluster name (default: from the hostname, or 'wallet')"),
        click.option("--cluster-id", envvar="WALLET_CLUSTER_ID", help="Signing domain (default: the cluster name)"),
        click.option("--raft-port", type=int, default=7700, show_default=True, help="Raft port (hostname mode)"),
        click.option("--http", "http_addr", default="0.0.0.0:8700", show_default=True, help="HTTP host:port"),
        click.option("--data-dir", default="data", show_default=True, envvar="WALLET_DATA_DIR"),
        click.option("--minter", "minters", multiple=True, help="Minter public key (repeatable)"),
        click.option("--join", is_flag=True, help="This node is new: ask the cluster to add it"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def build_config(**kw: Any) -> NodeConfig:
    host, _, port = kw["http_addr"].rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("--http must be host:port")
    env_minters = tuple(m for m in os.environ.get("WALLET_MINTERS", "").replace(",", " ").split() if m)
    try:
        return resolve(
            node_id=kw["node_id"],
            cluster=kw["cluster"],
            replicas=kw["replicas"],
            service=kw["service"],
            namespace=kw["namespace"],
            name=kw["name"],
            cluster_id=kw["cluster_id"],
            raft_port=kw["raft_port"],
            http_host=host,
            http_port=int(port),
            data_dir=kw["data_dir"],
            minters=tuple(kw["minters"]) or env_minters,
            join=kw["join"],
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


@click.group()
def main() -> None:
    """A walletcluster ledger node."""


@main.command()
@identity_options
def whoami(**kw: Any) -> None:
    """Print the Raft identity this node would take, as JSON."""
    config = build_config(**kw)
    click.echo(
        json.dumps(
            {
                "id": config.id,
                "name": config.name,
                "cluster": config.cluster_name,
                "cluster_id": config.cluster_id,
                "self": config.self_member.raft_address,
                "peers": config.peer_addresses,
                "bind": config.raft_bind,
            }
        )
    )


@main.command()
@identity_options
@click.option(
    "--secret-file",
    type=click.Path(dir_okay=False),
    envvar="WALLET_SECRET_FILE",
    help="File holding the cluster secret (or set WALLET_CLUSTER_SECRET)",
)
@click.option("--heartbeat-ms", type=click.IntRange(10, 10_000), default=100, show_default=True)
@click.option(
    "--election-timeout-ms",
    type=click.IntRange(50, 60_000),
    default=500,
    show_default=True,
    help="Minimum election timeout; the maximum is twice this",
)
@click.option(
    "--snapshot-entries",
    type=click.IntRange(2, 10**9),
    default=2000,
    show_default=True,
    help="Take a snapshot (and compact the journal) after this many log entries",
)
@click.option(
    "--join-via",
    multiple=True,
    help="With --join: ask the member at this HTTP URL to add us (repeatable); without it, "
    "something else (the operator) adds this node",
)
@click.option("--log-format", type=click.Choice(["json", "text"]), default="json", show_default=True)
@click.option(
    "--test-fault",
    "test_faults",
    multiple=True,
    type=click.Choice(["lie-on-reads"]),
    help=f"Misbehave on purpose, for tests; refused unless {ALLOW_FAULTS}=1",
)
def serve(
    secret_file: str | None,
    heartbeat_ms: int,
    election_timeout_ms: int,
    snapshot_entries: int,
    join_via: tuple[str, ...],
    log_format: str,
    test_faults: tuple[str, ...],
    **kw: Any,
) -> None:
    """Run one ledger node until SIGTERM/SIGINT."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    config = build_config(**kw)
    secret = os.environ.get("WALLET_CLUSTER_SECRET", "")
    if secret_file:
        with open(secret_file) as f:
            secret = f.read().strip()
    if len(secret) < 16:
        raise click.UsageError(
            "a cluster secret of at least 16 characters is required "
            "(--secret-file or WALLET_CLUSTER_SECRET): peers use it to authenticate"
        )
    if election_timeout_ms <= 3 * heartbeat_ms:
        raise click.UsageError("--election-timeout-ms must exceed three heartbeats")
    settings = RaftSettings(
        heartbeat_s=heartbeat_ms / 1000,
        election_min_s=election_timeout_ms / 1000,
        compact_entries=snapshot_entries,
    )
    if test_faults and os.environ.get(ALLOW_FAULTS) != "1":
        raise click.UsageError(f"--test-fault is for tests only and needs {ALLOW_FAULTS}=1 in the environment")
    from ..server.machine import StoreFormatError

    try:
        asyncio.run(_serve(config, secret, settings, join_via, frozenset(test_faults)))
    except StoreFormatError as exc:  # a store this version cannot read: say what to do, no traceback
        raise click.ClickException(str(exc)) from None


async def _serve(
    config: NodeConfig, secret: str, settings: RaftSettings, join_via: tuple[str, ...], faults: frozenset[str]
) -> None:
    from aiohttp import web

    from ..server.app import create_app
    from ..server.runtime import LedgerNode

    node = LedgerNode(config, secret, settings, faults)
    if faults:
        logging.getLogger("walletnode").warning("TEST FAULTS ENABLED: %s", ", ".join(sorted(faults)))
    await node.start()
    runner = web.AppRunner(create_app(node), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, config.http_host, config.http_port, reuse_address=True)
    await site.start()
    logging.getLogger("walletnode").info(
        "node %s serving http on %s:%d, raft on %s",
        config.name,
        config.http_host,
        config.http_port,
        config.self_member.raft_address,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if config.join and join_via:
        loop.create_task(_join(config, secret, join_via))
    await stop.wait()
    await runner.cleanup()
    await node.stop()


async def _join(config: NodeConfig, secret: str, urls: tuple[str, ...]) -> None:
    """Ask members to add us until one (the leader, or one forwarding to it) says yes."""
    log = logging.getLogger("walletnode.join")
    body = {"address": config.self_member.raft_address, "member": config.id}
    async with httpx.AsyncClient(timeout=15) as client:
        while True:
            for url in urls:
                try:
                    r = await client.post(f"{url}/v1/members", json=body, headers={"Authorization": f"Bearer {secret}"})
                    if r.status_code == 200:
                        log.info("joined the cluster through %s", url)
                        return
                    log.info("join via %s: %s", url, r.text)
                except httpx.HTTPError as exc:
                    log.info("join via %s failed: %s", url, exc)
            await asyncio.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
