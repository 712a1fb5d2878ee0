"""walletctl backup (create, list, verify) and walletctl restore: backups in S3-compatible storage.

`backup create` asks a member (through its admin API) to take a base backup; the others read and
write the archive directly, with credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. They
need the node's packages (`pip install .[node]`), as they read and write ledger stores.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from typing import TYPE_CHECKING, Any

import click
import httpx
import msgspec

from ..admin_auth import authorization, load_signing_key
from ..backup.location import location_from, s3_options
from ..tls import client_context

if TYPE_CHECKING:
    from ..backup.archive import Archive
    from ..backup.restore import Target
    from .walletctl import Context

EXIT_FAILED = 1
EXIT_UNREACHABLE = 4
#: walletctl restore --retry: the first pause after a failure, and the longest.
RETRY_FIRST_S, RETRY_MAX_S = 10.0, 300.0


def _fail(message: str, code: int = EXIT_FAILED) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _archive(kw: dict[str, Any], cluster_id: str = "") -> Archive:
    try:
        from ..backup.archive import Archive
        from ..backup.objectstore import S3Store
    except ImportError as exc:  # pragma: no cover - depends on how walletctl was installed
        raise click.UsageError(f"backups need the node's packages ({exc}): pip install '.[node]'") from None
    location = location_from(kw, required=True)
    assert location is not None
    return Archive(S3Store(location), cluster_id)


def _archive_errors() -> tuple[type[Exception], ...]:
    from ..backup.archive import ArchiveError
    from ..backup.objectstore import ObjectStoreError

    return ArchiveError, ObjectStoreError


@click.group()
def backup() -> None:
    """Base backups and the archive of a ledger in S3-compatible object storage."""


@backup.command("create")
@click.option("--admin-url", required=True, envvar="WALLET_ADMIN_URL", help="Admin API of the member to back up")
@click.option(
    "--admin-key-file",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    envvar="WALLET_ADMIN_CREDENTIAL_FILE",
    help="File holding the admin private key (64 hex)",
)
@click.option("--timeout", type=click.FloatRange(1, 86_400), default=3600, show_default=True)
@click.option(
    "--keep-days",
    type=click.FloatRange(min=0, min_open=True),
    help="Then apply retention (as `backup prune`): delete base backups older than this",
)
@click.option("--keep-bases", type=click.IntRange(min=1), default=1, show_default=True, help="With --keep-days")
@click.pass_obj
def backup_create(
    ctx: Context, admin_url: str, admin_key_file: str, timeout: float, keep_days: float | None, keep_bases: int
) -> None:
    """Take a base backup now, from the member whose admin API is at --admin-url."""
    ca, insecure = ctx.trust["ca"], ctx.trust["insecure"]
    if admin_url.startswith("http://") and not insecure:
        raise click.UsageError("--admin-url is plain http://: pass --insecure to allow it")
    try:
        key = load_signing_key(admin_key_file)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--admin-key-file") from None
    url = admin_url.rstrip("/")
    content = b"" if keep_days is None else json.dumps({"keep_days": keep_days, "keep_bases": keep_bases}).encode()
    with httpx.Client(verify=client_context(ca) if url.startswith("https://") else False, timeout=timeout) as http:
        try:
            me = http.get(url + "/v1/status", timeout=10).json()
            signed = authorization(key, me["cluster_id"], me["name"], "POST", "/v1/backups", content)
            answer = http.post(
                url + "/v1/backups",
                content=content,
                headers={"Authorization": signed, "Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            _fail(f"{url} unreachable: {exc}", EXIT_UNREACHABLE)
    body = answer.json()
    if answer.status_code != 200:
        _fail(f"{body.get('error')}: {body.get('message')}")
    taken, pruned = body["backup"], body["pruned"]

    def text() -> str:
        said = (
            f"base backup {taken['name']}: entry {taken['seq']}, audit hash {taken['audit_hash'][:16]}…, "
            f"{taken['store_bytes']:,} bytes ({taken['object_bytes']:,} compressed) "
            f"in {taken['finished'] - taken['started']:.1f}s"
        )
        if pruned is not None:
            said += f"; retention deleted {len(pruned['bases'])} base backups and {pruned['segments']} segments"
        return said

    ctx.emit(body, text)


@backup.command("list")
@s3_options
@click.pass_obj
def backup_list(ctx: Context, **kw: Any) -> None:
    """The base backups of the archive, and how far its archived entries reach."""
    archive = _archive(kw)
    try:
        info = archive.info()
        bases = archive.bases()
        segments = archive.segments()
    except _archive_errors() as exc:
        _fail(str(exc))
    data = {
        "ledger": None if info is None else info.cluster_id,
        "bases": [msgspec.to_builtins(b) for b in bases],
        "archived_entries": None if not segments else [segments[0].first, segments[-1].last],
        "segments": len(segments),
    }

    def table() -> str:
        lines = [f"archive of {data['ledger']}: {len(bases)} base backups, {len(segments)} segments"]
        for b in bases:
            when = datetime.datetime.fromtimestamp(b.started, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            lines.append(f"  {b.name}  entry {b.seq}  {b.object_bytes:,} bytes  taken {when} from {b.member}")
        if segments:
            lines.append(f"  entries {segments[0].first}..{segments[-1].last} archived")
        return "\n".join(lines)

    ctx.emit(data, table)


@backup.command("verify")
@click.argument("name", required=False)
@s3_options
@click.pass_obj
def backup_verify(ctx: Context, name: str | None, **kw: Any) -> None:
    """Recompute the audit chain of base backup NAME (default: the newest) from genesis, and of the
    archived entries after it. Exit 1 at the first thing that is not as the archive says."""
    from ..backup.verify import verify_base

    archive = _archive(kw)
    try:
        bases = archive.bases()
        chosen = [b for b in bases if name is None or b.name == name or b.name == f"base/{name}"]
        if not chosen:
            _fail(f"no base backup named {name!r}" if name else "the archive has no base backup")
        verified = verify_base(archive, chosen[-1])
    except _archive_errors() as exc:
        _fail(str(exc))
    ctx.emit(
        msgspec.to_builtins(verified),
        lambda: (
            f"{verified.base}: entries 1..{verified.base_seq} recomputed, audit hash matches; "
            f"{verified.archived_entries_after} archived entries after it continue the chain "
            f"(to entry {verified.last_seq}, {verified.audit_hash[:16]}…)"
        ),
    )


@backup.command("prune")
@click.option(
    "--keep-days",
    type=click.FloatRange(min=0, min_open=True),
    required=True,
    help="Keep base backups younger than this many days",
)
@click.option(
    "--keep-bases",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="And at least this many of the newest, whatever their age",
)
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing")
@s3_options
@click.pass_obj
def backup_prune(ctx: Context, keep_days: float, keep_bases: int, dry_run: bool, **kw: Any) -> None:
    """Delete the base backups the retention policy lets go, and the archived entries no kept
    base backup needs (every point from the oldest kept base on stays restorable)."""
    from ..backup.retention import Policy, expired

    archive = _archive(kw)
    try:
        gone = expired(archive.bases(), archive.segments(), Policy(keep_days, keep_bases), time.time())
        if not dry_run:
            archive.delete(gone.bases, gone.segments)
    except _archive_errors() as exc:
        _fail(str(exc))
    data = {"dry_run": dry_run, "bases": [b.name for b in gone.bases], "segments": [s.key for s in gone.segments]}
    verb = "would delete" if dry_run else "deleted"
    ctx.emit(data, lambda: f"{verb} {len(gone.bases)} base backups and {len(gone.segments)} segments")


def parse_target(text: str) -> Target:
    """latest, an entry number, or an ISO 8601 time (UTC unless it says otherwise)."""
    from ..backup.restore import Target

    if text == "latest":
        return Target()
    if text.isdigit():
        return Target(seq=int(text))
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not latest, an entry number or an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return Target(time_ms=int(when.timestamp() * 1000))


@click.command()
@s3_options
@click.option("--data-dir", required=True, help="The new member's data directory (must not hold a ledger)")
@click.option("--cluster-id", required=True, help="The restored ledger's cluster id: not the source's")
@click.option(
    "--peers",
    required=True,
    help="Raft addresses host:port,... of the new cluster's members in id order (as `walletnode serve --cluster`)",
)
@click.option("--target", default="latest", show_default=True, help="latest, an entry number, or an ISO 8601 time")
@click.option(
    "--for-member",
    metavar="HOST",
    help="The member this directory belongs to (first label of its --peers host): restore only if it is "
    "one of --peers; any other member passes (it joins later and the leader sends it the store)",
)
@click.option("--if-empty", is_flag=True, help="A directory that holds a ledger already is left as it is (exit 0)")
@click.option(
    "--retry",
    is_flag=True,
    help="On failure, say why and try again (after 10 s, doubling to 5 min) until it succeeds: for an init "
    "container, which the kubelet would otherwise restart in a crash loop",
)
@click.pass_obj
def restore(
    ctx: Context,
    data_dir: str,
    cluster_id: str,
    peers: str,
    target: str,
    for_member: str | None,
    if_empty: bool,
    retry: bool,
    **kw: Any,
) -> None:
    """Make DATA_DIR a founding member of a new ledger restored from the archive: restore every
    founding member's directory the same way, then start the members with --cluster-id."""
    from ..backup.restore import holds_ledger
    from ..backup.restore import restore as restore_into
    from ..config import ConfigError, members_from_list, raft_id

    goal = parse_target(target)
    try:
        members = members_from_list(peers, "wallet")
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--peers") from None
    if for_member is not None and for_member not in {m.raft_address.rpartition(":")[0].split(".")[0] for m in members}:
        click.echo(f"{for_member} is not a founding member ({peers}): nothing to restore, it joins later", err=True)
        return
    if if_empty and holds_ledger(data_dir):
        click.echo(f"{data_dir} holds a ledger already: left as it is", err=True)
        return
    archive = _archive(kw)
    pause = RETRY_FIRST_S
    while True:
        try:
            done = restore_into(archive, data_dir, goal, cluster_id, {raft_id(m.id): m.raft_address for m in members})
            break
        except _archive_errors() as exc:
            if not retry:
                _fail(str(exc))
            click.echo(f"error: {exc} (trying again in {pause:.0f}s)", err=True)
            time.sleep(pause)
            pause = min(pause * 2, RETRY_MAX_S)
    ctx.emit(
        msgspec.to_builtins(done),
        lambda: (
            f"restored {done.source_cluster_id} as {done.cluster_id} into {done.data_dir}: entry {done.seq} "
            f"(target {done.target}; base {done.base or 'none'} + {done.entries_replayed} entries), "
            f"audit hash {done.audit_hash[:16]}… in {done.seconds:.1f}s"
        ),
    )
