"""`walletnode serve`: run one ledger node; `walletnode whoami`: show the derived identity."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click
import httpx

from ..admin_auth import authorization, load_signing_key
from ..backup.location import location_from, s3_options
from ..config import ConfigError, NodeConfig, resolve
from ..consensus.replicator import RaftSettings
from ..tls import ServerCertificate, client_context

if TYPE_CHECKING:
    from ..server.runtime import BackupSettings

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
    help="With --join: ask the member whose admin API is at this URL to add us (repeatable); without it, "
    "something else (the operator) adds this node",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False),
    envvar="WALLET_TLS_CERT",
    help="PEM certificate chain the API serves (reloaded when the file changes)",
)
@click.option(
    "--tls-key", type=click.Path(dir_okay=False), envvar="WALLET_TLS_KEY", help="PEM private key of --tls-cert"
)
@click.option("--insecure-http", is_flag=True, help="Serve plain HTTP instead of HTTPS (development only)")
@click.option(
    "--admin-http",
    "admin_addr",
    envvar="WALLET_ADMIN_HTTP",
    help="host:port of the admin API (membership, leadership); served only with --admin-key",
)
@click.option(
    "--admin-key",
    envvar="WALLET_ADMIN_PUBLIC_KEY",
    help="The admin public key (64 hex): admin requests must be signed with its private key",
)
@click.option(
    "--admin-credential",
    type=click.Path(dir_okay=False, exists=True),
    envvar="WALLET_ADMIN_CREDENTIAL_FILE",
    help="With --join-via: file holding the admin private key to sign the join request with",
)
@click.option(
    "--ca",
    "ca_file",
    type=click.Path(dir_okay=False, exists=True),
    envvar="WALLET_CA",
    help="With --join-via: CA bundle to verify the member's admin API with",
)
@s3_options
@click.option(
    "--archive-every-s",
    type=click.FloatRange(0.1, 3600),
    default=2.0,
    show_default=True,
    envvar="WALLET_ARCHIVE_EVERY_S",
    help="With --backup-endpoint: the leader uploads the entries applied since its last upload this often",
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
    tls_cert: str | None,
    tls_key: str | None,
    insecure_http: bool,
    admin_addr: str | None,
    admin_key: str | None,
    admin_credential: str | None,
    ca_file: str | None,
    archive_every_s: float,
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
    from ..server.runtime import BackupSettings

    location = location_from(kw, required=False)
    backup = None if location is None else BackupSettings(location, every_s=archive_every_s)
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
    if insecure_http == bool(tls_cert or tls_key) or bool(tls_cert) != bool(tls_key):
        raise click.UsageError(
            "the API is served over HTTPS: pass --tls-cert and --tls-key (or --insecure-http for plain HTTP)"
        )
    if bool(admin_addr) != bool(admin_key):
        raise click.UsageError("--admin-http and --admin-key go together (the admin API needs its key)")
    admin: tuple[str, int] | None = None
    if admin_addr and admin_key:
        admin = _host_port(admin_addr, "--admin-http")
        if not re.fullmatch(r"[0-9a-f]{64}", admin_key):
            raise click.UsageError("--admin-key must be an ed25519 public key of 64 lowercase hex characters")
    if join_via and not admin_credential:
        raise click.UsageError("--join-via needs --admin-credential (the join request is an admin request)")
    tls = None
    if tls_cert and tls_key:
        try:
            tls = ServerCertificate(tls_cert, tls_key)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    joiner = Joiner(join_via, admin_credential, ca_file) if config.join and join_via and admin_credential else None
    from ..server.machine import StoreFormatError

    try:
        listeners = Listeners(tls, admin, admin_key)
        asyncio.run(_serve(config, secret, settings, listeners, joiner, frozenset(test_faults), backup))
    except (StoreFormatError, ConfigError) as exc:  # a store this node cannot serve: say what to do
        raise click.ClickException(str(exc)) from None


def _host_port(value: str, option: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.UsageError(f"{option} must be host:port")
    return host, int(port)


@dataclass(frozen=True)
class Listeners:
    """How the node serves: TLS (or plain HTTP when None) and the admin API's address and key."""

    tls: ServerCertificate | None
    admin: tuple[str, int] | None
    admin_key: str | None


@dataclass(frozen=True)
class Joiner:
    """A new node asking existing members (their admin URLs) to add it, signing as the admin."""

    urls: tuple[str, ...]
    credential_file: str
    ca_file: str | None


async def _serve(
    config: NodeConfig,
    secret: str,
    settings: RaftSettings,
    listeners: Listeners,
    joiner: Joiner | None,
    faults: frozenset[str],
    backup: BackupSettings | None,
) -> None:
    from aiohttp import web

    from ..server.app import create_admin_app, create_app
    from ..server.runtime import LedgerNode

    log = logging.getLogger("walletnode")
    node = LedgerNode(config, secret, settings, faults, admin_key=listeners.admin_key, backup=backup)
    if faults:
        log.warning("TEST FAULTS ENABLED: %s", ", ".join(sorted(faults)))
    if listeners.tls is None:
        log.warning("serving plain HTTP (--insecure-http): requests and answers cross the network in the clear")
    await node.start()
    ssl_context = listeners.tls.context if listeners.tls else None
    runners = [web.AppRunner(create_app(node), access_log=None, handler_cancellation=True)]
    addresses = [(config.http_host, config.http_port)]
    if listeners.admin is not None:
        runners.append(web.AppRunner(create_admin_app(node), access_log=None, handler_cancellation=True))
        addresses.append(listeners.admin)
    for runner, (host, port) in zip(runners, addresses, strict=True):
        await runner.setup()
        await web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context).start()
    log.info(
        "node %s serving %s on %s:%d%s, raft on %s",
        config.name,
        "https" if ssl_context else "http",
        config.http_host,
        config.http_port,
        f" (admin on {listeners.admin[0]}:{listeners.admin[1]})" if listeners.admin else " (no admin API)",
        config.self_member.raft_address,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = []
    if listeners.tls is not None:
        tasks.append(loop.create_task(listeners.tls.follow()))
    if joiner is not None:
        tasks.append(loop.create_task(_join(config, joiner)))
    await stop.wait()
    for task in tasks:
        task.cancel()
    for runner in runners:
        await runner.cleanup()
    await node.stop()


async def _join(config: NodeConfig, joiner: Joiner) -> None:
    """Ask members to add us until one (the leader, or one forwarding to it) says yes."""
    log = logging.getLogger("walletnode.join")
    key = load_signing_key(joiner.credential_file)
    body = json.dumps({"address": config.self_member.raft_address, "member": config.id}).encode()
    async with httpx.AsyncClient(timeout=15, verify=client_context(joiner.ca_file)) as client:
        while True:
            for url in joiner.urls:
                try:
                    status = await client.get(f"{url}/v1/status")  # whom we address: the signature names it
                    audience = status.json()["name"]
                    signed = authorization(key, config.cluster_id, audience, "POST", "/v1/members", body)
                    r = await client.post(
                        f"{url}/v1/members",
                        content=body,
                        headers={"Authorization": signed, "Content-Type": "application/json"},
                    )
                    if r.status_code == 200:
                        log.info("joined the cluster through %s", url)
                        return
                    log.info("join via %s: %s", url, r.text)
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    log.info("join via %s failed: %s", url, exc)
            await asyncio.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
