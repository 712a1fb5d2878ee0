"""walletctl: keys, currencies, transfers, balances, history, events, audits and benchmarks.

Reads WALLET_URL (comma-separated nodes), WALLET_HOME (keystore) and WALLET_PASSWORD. Exit codes:
0 ok, 1 an audit found a disagreement, 2 usage error, 3 a command was rejected by the ledger,
4 the cluster could not be reached.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Callable
from functools import partial
from typing import Any, NoReturn

import click
import msgspec
from nacl.signing import SigningKey
from rich import box
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ..client import (
    AttestationError,
    ClientError,
    ClusterUnavailable,
    Rejected,
    WalletClient,
    new_id,
    to_display,
    to_minor,
)
from ..keystore import Keystore, KeystoreError
from ..ledger.commands import decode_entry
from .backup import backup, restore

EXIT_DISAGREEMENT = 1
EXIT_REJECTED = 3
EXIT_UNREACHABLE = 4
KEY_HEX_CHARS = 64  # an ed25519 public key in hex
console = Console()
err_console = Console(stderr=True)


class Context:
    def __init__(
        self,
        urls: str,
        home: str,
        output: str,
        ca: str | None = None,
        insecure: bool = False,
        node_keys: str | None = None,
    ) -> None:
        self.urls = [u.strip() for u in urls.split(",") if u.strip()]
        self.keystore = Keystore(home)
        self.output = output
        self.trust: dict[str, Any] = {"ca": ca, "insecure": insecure, "node_keys": parse_node_keys(node_keys)}
        self._client: WalletClient | None = None

    @property
    def client(self) -> WalletClient:
        if self._client is None:
            self._client = run(lambda: WalletClient(self.urls, **self.trust))
        return self._client

    def password(self, name: str) -> str:
        if "WALLET_PASSWORD" in os.environ:
            return os.environ["WALLET_PASSWORD"]
        if sys.stdin.isatty():
            return str(click.prompt(f"password for {name}", hide_input=True, default="", show_default=False))
        return ""

    def signer(self, name: str) -> SigningKey:
        name = self.key_name(name)
        return self.keystore.signing_key(name, self.password(name))

    def key_name(self, ref: str) -> str:
        """A stored key by name, or by a unique prefix of its name or public key."""
        names = self.keystore.names()
        if ref in names:
            return ref
        stored = self.keystore.list()
        hits = sorted({k.name for k in stored if k.name.startswith(ref) or k.public.startswith(ref.lower())})
        if len(hits) == 1:
            return hits[0]
        if not hits:
            fail_usage(f"no key matches {ref!r}; keys: {', '.join(names) or '(none)'}")
        fail_usage(f"{ref!r} is ambiguous; it matches keys: {', '.join(hits)}")

    def account(self, ref: str) -> str:
        """An account: a full 64-hex key, or a stored key by name or unique prefix (like git hashes)."""
        lowered = ref.lower()
        if len(lowered) == 64 and all(c in "0123456789abcdef" for c in lowered):
            return lowered
        return self.keystore.public(self.key_name(ref))

    def label(self, account: str) -> str:
        for k in self.keystore.list():
            if k.public == account:
                return k.name
        return account[:12]

    def emit(self, data: Any, human: Callable[[], Any]) -> None:
        if self.output == "json":
            click.echo(json.dumps(data, indent=2))
        else:
            console.print(human())


def parse_node_keys(text: str | None) -> dict[str, str]:
    """`wallet-0=<hex>,wallet-1=<hex>` (WALLET_NODE_KEYS) -> {name: hex key}."""
    keys: dict[str, str] = {}
    for part in (text or "").replace(" ", ",").split(","):
        if not part:
            continue
        name, _, key = part.partition("=")
        if not name or len(key) != KEY_HEX_CHARS or any(c not in "0123456789abcdef" for c in key):
            fail_usage(f"--node-keys entry {part!r} is not NAME=<64 hex characters>")
        keys[name] = key
    return keys


def fail_usage(message: str) -> NoReturn:
    raise click.UsageError(message)


def run(action: Callable[[], Any]) -> Any:
    """Run a client call, turning failures into messages and exit codes (never a traceback)."""
    try:
        return action()
    except ClusterUnavailable as exc:
        err_console.print(f"[red]cluster unreachable:[/] {exc}")
        sys.exit(EXIT_UNREACHABLE)
    except Rejected as exc:
        err_console.print(f"[red]rejected:[/] {exc}")
        sys.exit(EXIT_REJECTED)
    except AttestationError as exc:
        err_console.print(f"[red]{exc}[/]")
        for node, said in exc.dissenting.items():
            err_console.print(f"  {node}: {said}")
        sys.exit(EXIT_DISAGREEMENT)
    except (KeystoreError, ClientError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None


def report(ctx: Context, what: str, command_id: str, result: str, extra: dict[str, Any]) -> None:
    """A submitted command's result, with its id (`walletctl show ID` reads the result back later)."""
    ok = result in ("ok", "exists")
    ctx.emit(
        {"id": command_id, "result": result, **extra},
        lambda: f"{what}: [{'green' if ok else 'red'}]{result}[/] (id {command_id})",
    )
    if not ok:
        sys.exit(EXIT_REJECTED)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="WALLET_URL",
    default="https://127.0.0.1:8701",
    show_default=True,
    help="Comma-separated node URLs (WALLET_URL)",
)
@click.option(
    "--ca",
    envvar="WALLET_CA",
    type=click.Path(dir_okay=False, exists=True),
    help="CA bundle (PEM) the nodes' certificates must chain to (WALLET_CA); default: the system's",
)
@click.option(
    "--insecure",
    envvar="WALLET_INSECURE",
    is_flag=True,
    help="Allow plain http:// URLs: everything crosses the network in the clear (WALLET_INSECURE=1)",
)
@click.option(
    "--node-keys",
    envvar="WALLET_NODE_KEYS",
    help="Pin the replicas' identity keys for attested reads: NAME=HEX,... (WALLET_NODE_KEYS)",
)
@click.option(
    "--home",
    envvar="WALLET_HOME",
    default=os.path.expanduser("~/.walletctl"),
    show_default=True,
    help="Keystore directory (WALLET_HOME)",
)
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def main(
    click_ctx: click.Context,
    url: str,
    ca: str | None,
    insecure: bool,
    node_keys: str | None,
    home: str,
    output: str,
) -> None:
    """Client for walletcluster ledgers."""
    click_ctx.obj = Context(url, home, output, ca, insecure, node_keys)


# -- keys ----------------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Manage the keystore (argon2id + SecretBox under WALLET_PASSWORD)."""


@keys.command("new")
@click.argument("name")
@click.pass_obj
def keys_new(ctx: Context, name: str) -> None:
    """Create a key pair NAME."""
    password = os.environ.get("WALLET_PASSWORD")
    if password is None and sys.stdin.isatty():
        password = click.prompt(
            "password (empty: store unencrypted)",
            hide_input=True,
            default="",
            show_default=False,
            confirmation_prompt=True,
        )
    if not password:
        err_console.print("[yellow]warning:[/] storing the key unencrypted (empty password)")
    stored = run(lambda: ctx.keystore.create(name, password or ""))
    ctx.emit(
        {"name": stored.name, "public": stored.public, "encrypted": stored.encrypted},
        lambda: f"{stored.name} {stored.public}",
    )


@keys.command("list")
@click.pass_obj
def keys_list(ctx: Context) -> None:
    """List stored keys with their full public keys (`keys show NAME` prints one alone)."""
    stored = run(ctx.keystore.list)

    def table() -> Table:
        # Borderless, so that a key is one word to copy. A key is never cut: on one line whenever
        # the terminal has room for it (names fold first), folded over lines below that.
        t = Table("name", "public key", box=None, pad_edge=False, caption_justify="left")
        t.columns[0].overflow = t.columns[1].overflow = "fold"
        t.columns[1].no_wrap = console.width >= KEY_HEX_CHARS + 10
        for k in stored:
            t.add_row(k.name, k.public)
        plain = [k.name for k in stored if not k.encrypted]
        if plain:
            t.caption = f"stored unencrypted (empty password): {', '.join(plain)}"
        return t

    ctx.emit([{"name": k.name, "public": k.public, "encrypted": k.encrypted} for k in stored], table)


@keys.command("show")
@click.argument("name")
@click.pass_obj
def keys_show(ctx: Context, name: str) -> None:
    """Print the public key of NAME alone (for scripts: minter=$(walletctl keys show minter))."""
    name = ctx.key_name(name)
    stored = next(k for k in run(ctx.keystore.list) if k.name == name)
    if ctx.output == "json":
        click.echo(json.dumps({"name": stored.name, "public": stored.public, "encrypted": stored.encrypted}))
    else:
        click.echo(stored.public)  # not through rich: a narrow terminal must not wrap it


@keys.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
@click.pass_obj
def keys_delete(ctx: Context, name: str, yes: bool) -> None:
    """Delete key NAME (there is no undo: export it first)."""
    name = ctx.key_name(name)
    if not yes and not click.confirm(f"delete key {name}? money it holds becomes unspendable", default=False):
        fail_usage("not deleted")
    run(lambda: ctx.keystore.delete(name))
    ctx.emit({"deleted": name}, lambda: f"deleted {name}")


@keys.command("export")
@click.argument("name")
@click.pass_obj
def keys_export(ctx: Context, name: str) -> None:
    """Print key NAME with its private seed (hex) as JSON, to back it up."""
    name = ctx.key_name(name)
    key = run(lambda: ctx.signer(name))
    err_console.print("[yellow]warning:[/] this output contains the private key")
    click.echo(json.dumps({"name": name, "public": key.verify_key.encode().hex(), "seed": bytes(key).hex()}))


# -- ledger writes -------------------------------------------------------------------------------


@main.group()
def currency() -> None:
    """Currencies."""


@currency.command("create")
@click.argument("code")
@click.option("--scale", type=click.IntRange(0, 18), required=True, help="Decimal places")
@click.option("--as", "signer", default="minter", show_default=True, help="Minter key name")
@click.pass_obj
def currency_create(ctx: Context, code: str, scale: int, signer: str) -> None:
    """Create currency CODE (minters only)."""
    key = run(lambda: ctx.signer(signer))
    command_id = new_id()
    result = run(lambda: ctx.client.create_currency(key, code, scale, command_id))
    report(ctx, f"create {code}", command_id, result, {"code": code, "scale": scale})


@currency.command("list")
@click.pass_obj
def currency_list(ctx: Context) -> None:
    """Currencies with their scale and supply."""
    data = run(lambda: ctx.client.request("GET", "/v1/currencies"))

    def table() -> Table:
        t = Table("code", "scale", "supply")
        for c in data["currencies"]:
            t.add_row(c["code"], str(c["scale"]), to_display(c["supply"], c["scale"]))
        return t

    ctx.emit(data, table)


def _amount(ctx: Context, amount: str, code: str) -> int:
    scales = run(ctx.client.currencies)
    if code not in scales:
        err_console.print(f"[red]rejected:[/] unknown_currency: {code}")
        sys.exit(EXIT_REJECTED)
    try:
        return to_minor(amount, scales[code])
    except ValueError as exc:
        fail_usage(str(exc))


@main.command()
@click.argument("to")
@click.argument("amount")
@click.argument("code")
@click.option("--as", "signer", default="minter", show_default=True, help="Minter key name")
@click.pass_obj
def mint(ctx: Context, to: str, amount: str, code: str, signer: str) -> None:
    """Mint AMOUNT of CODE to account TO (minters only)."""
    account = ctx.account(to)
    minor = _amount(ctx, amount, code)
    key = run(lambda: ctx.signer(signer))
    command_id = new_id()
    result = run(lambda: ctx.client.mint(key, account, code, minor, command_id))
    what = f"mint {amount} {code} to {ctx.label(account)}"
    report(ctx, what, command_id, result, {"to": account, "amount": minor, "currency": code})


@main.command()
@click.argument("to")
@click.argument("amount")
@click.argument("code")
@click.option("--as", "signer", required=True, help="Sender key name")
@click.pass_obj
def transfer(ctx: Context, to: str, amount: str, code: str, signer: str) -> None:
    """Send AMOUNT of CODE to account TO, signed by --as."""
    account = ctx.account(to)
    minor = _amount(ctx, amount, code)
    key = run(lambda: ctx.signer(signer))
    command_id = new_id()
    result = run(lambda: ctx.client.transfer(key, account, code, minor, command_id))
    what = f"send {amount} {code} to {ctx.label(account)}"
    report(ctx, what, command_id, result, {"to": account, "amount": minor, "currency": code})


main.add_command(transfer, "send")


# -- reads ---------------------------------------------------------------------------------------


@main.command()
@click.argument("account", required=False)
@click.option("--stale", is_flag=True, help="One node's current state: no read barrier, no attestation")
@click.pass_obj
def balance(ctx: Context, account: str | None, stale: bool) -> None:
    """Balances of ACCOUNT (default: every stored key), attested by a majority of replicas."""
    accounts = [ctx.account(account)] if account else [k.public for k in ctx.keystore.list()]
    scales = run(ctx.client.currencies)
    rows = []
    for public in accounts:
        if stale:
            rows.append(
                {
                    "account": public,
                    "name": ctx.label(public),
                    "balances": run(partial(ctx.client.balances, public, "stale")),
                }
            )
            continue
        attested = run(partial(ctx.client.attested_balances, public))
        for node, said in attested.dissenting.items():
            err_console.print(f"[red]replica {node} disagrees:[/] {said}")
        rows.append(
            {
                "account": public,
                "name": ctx.label(public),
                "balances": attested.balances,
                "index": attested.index,
                "attested_by": attested.agreeing,
                "dissenting": attested.dissenting,
            }
        )

    def table() -> Table:
        t = Table("account", "key", "currency", "balance")
        for row in rows:
            for code, minor in sorted(row["balances"].items()) or [("-", 0)]:
                t.add_row(
                    row["name"],
                    row["account"][:16],
                    code,
                    to_display(minor, scales.get(code, 0)) if code != "-" else "0",
                )
        return t

    ctx.emit(rows, table)


main.add_command(balance, "bank")


@main.command()
@click.argument("account")
@click.option("--after", type=click.IntRange(0), default=0, help="Skip this many entries")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.pass_obj
def history(ctx: Context, account: str, after: int, limit: int) -> None:
    """Mints and transfers of ACCOUNT, oldest first."""
    public = ctx.account(account)
    data = run(lambda: ctx.client.history(public, after, limit))
    scales = run(ctx.client.currencies)

    def table() -> Table:
        t = Table("index", "kind", "id", "from", "to", "amount")
        for item in data["items"]:
            c = item["command"]
            sender = ctx.label(c.get("from") or c.get("minter", ""))
            t.add_row(
                str(item["index"]),
                c["kind"],
                c["id"][:12],
                sender,
                ctx.label(c.get("to", "")),
                f"{to_display(c.get('amount', 0), scales.get(c.get('currency', ''), 0))} {c.get('currency', '')}",
            )
        if data["next"] is not None:
            t.caption = f"more: --after {data['next']}"
        return t

    ctx.emit(data, table)


@main.command()
@click.argument("command_id")
@click.pass_obj
def show(ctx: Context, command_id: str) -> None:
    """The final result of the command COMMAND_ID (printed by mint, send and currency create): ok and
    the entry that applied it, or the failure it was first given. Unknown ids are an error (exit 3).
    COMMAND_ID `-` reads the id from the JSON of such a command on stdin (`-o json send … | show -`)."""
    if command_id == "-":
        try:
            command_id = str(json.load(sys.stdin)["id"])
        except (ValueError, KeyError, TypeError):
            fail_usage("stdin holds no JSON object with an id (pipe in `walletctl -o json send …`)")
    data = run(lambda: ctx.client.command(command_id.lower()))
    scales = run(ctx.client.currencies)

    def table() -> Table:
        c = data["command"]
        ok = data["result"] == "ok"
        t = Table("field", "value", title=f"{c['kind']} {data['id']}")
        t.add_row("result", f"[{'green' if ok else 'red'}]{data['result']}[/]")
        t.add_row("index", "-" if data["index"] is None else str(data["index"]))
        for field in ("minter", "from", "to"):
            if field in c:
                t.add_row(field, f"{ctx.label(c[field])} ({c[field]})")
        if "amount" in c:
            t.add_row("amount", f"{to_display(c['amount'], scales.get(c['currency'], 0))} {c['currency']}")
        if "code" in c:
            t.add_row("currency", f"{c['code']} (scale {c['scale']})")
        return t

    ctx.emit(data, table)


def describe(event: dict[str, Any], ctx: Context) -> str:
    entry = decode_entry(base64.b64decode(event["entry"]))
    if entry.configure is not None:
        return f"#{event['index']} configure minters={len(entry.configure.minters)}"
    parts = []
    for command, result in zip(entry.commands, event["results"], strict=True):
        data = msgspec.to_builtins(command)
        who = ctx.label(data.get("from") or data.get("minter", ""))
        if data["kind"] == "create_currency":
            parts.append(f"{who} creates {data['code']} ({result})")
        else:
            parts.append(f"{who} → {ctx.label(data['to'])} {data['amount']} {data['currency']} ({result})")
    return f"#{event['index']} " + "; ".join(parts[:5]) + (f"; … {len(parts) - 5} more" if len(parts) > 5 else "")


@main.command()
@click.option("--after", type=click.IntRange(0), default=None, help="Start after this entry (default: now)")
@click.pass_obj
def watch(ctx: Context, after: int | None) -> None:
    """Follow applied entries as they happen (survives the death of the node it reads from)."""
    start = after if after is not None else run(lambda: ctx.client.request("GET", "/v1/status"))["audit_index"]

    def follow() -> None:
        for event in ctx.client.events(start):
            if ctx.output == "json":
                click.echo(json.dumps(event))
            else:
                console.print(describe(event, ctx))

    with contextlib.suppress(KeyboardInterrupt):
        run(follow)


@main.command()
@click.pass_obj
def status(ctx: Context) -> None:
    """Every node in WALLET_URL: role, term, leader, applied index, lag behind the most advanced
    commit, how many of its peers it is connected to (a cut link shows as 1/2 on both of its ends)
    and its audit hash; `-o json` has every field, commit index included."""
    rows: list[dict[str, Any]] = []
    client = ctx.client  # a bad --url/--ca is a usage error, not a row per node
    for url in ctx.urls:
        try:
            rows.append({"url": url, **client.status_of(url)})
        except Exception as exc:  # a dead node is a row, not a crash
            rows.append({"url": url, "error": f"{exc.__class__.__name__}: {exc}"})
    live = [r for r in rows if "error" not in r]
    top = max((r["commit_index"] for r in live), default=0)
    for r in live:
        r["lag"] = top - r["applied_index"]

    ctx.emit(rows, lambda: status_table(rows))
    for r in rows:
        if "error" in r and ctx.output != "json":
            err_console.print(f"[red]{r['url']}[/]: {r['error']}", soft_wrap=True)
    if not live:
        sys.exit(EXIT_UNREACHABLE)


def short_address(url: str) -> str:
    """A node's URL as short as still tells nodes apart: `127.0.0.1:8702`, or `wallet-2` for
    `http://wallet-2.wallet-peers.ns.svc:8700` (the pod's name)."""
    host, _, port = url.split("://")[-1].rstrip("/").rpartition(":")
    if not host:
        host, port = port, ""
    if host.replace(".", "").isdigit() or host.startswith("[") or "." not in host:
        return f"{host}:{port}" if port else host
    return host.split(".")[0]


def status_table(rows: list[dict[str, Any]]) -> Table:
    """One row per node, narrow enough for an 80-column terminal with the names Kubernetes gives pods
    (`wallet-0`) and indexes in the millions: a down node is named by its address, and why it is
    down is printed below the table rather than in it."""
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for header in ("node", "role", "term", "leader", "applied", "lag", "peers", "audit hash"):
        numeric = header in ("term", "applied", "lag", "peers")
        t.add_column(header, justify="right" if numeric else "left", overflow="fold")
    for r in rows:
        if "error" in r:
            t.add_row(short_address(r["url"]), "[red]down[/]", "", "", "", "", "", "")
            continue
        peers = [m for m in r["members"] if m["name"] != r["name"]]
        up = sum(m["connected"] for m in peers)
        t.add_row(
            r["name"],
            r["role"],
            str(r["term"]),
            str(r["leader"] or "-"),
            str(r["applied_index"]),
            str(r["lag"]),
            f"{up}/{len(peers)}" if up == len(peers) else f"[red]{up}/{len(peers)}[/]",
            r["audit_hash"][:12],
        )
    return t


@main.group()
def audit() -> None:
    """Audit the hash chain."""


@audit.command("verify")
@click.pass_obj
def audit_verify(ctx: Context) -> None:
    """Recompute the audit chain from the event stream and compare it with every node.

    Passes when the recomputed chain matches a majority of nodes; names any node that differs.
    """
    statuses = {}
    client = ctx.client  # a bad --url/--ca is a usage error, not an unreachable node
    for url in ctx.urls:
        try:
            statuses[url] = client.status_of(url)
        except Exception as exc:
            err_console.print(f"[yellow]{url} unreachable:[/] {exc}")
    if not statuses:
        err_console.print("[red]cluster unreachable[/]")
        sys.exit(EXIT_UNREACHABLE)
    target = max(s["audit_index"] for s in statuses.values())
    wanted = {s["audit_index"] for s in statuses.values()}
    computed: dict[int, str] = {}
    chain = bytes(32)
    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("recomputing", total=target)
        for event in run(lambda: list(ctx.client.events(0, target))) if target else []:
            chain = hashlib.sha256(chain + base64.b64decode(event["entry"])).digest()
            if chain.hex() != event["audit_hash"]:
                err_console.print(f"[red]entry {event['index']}: the stream's hash is not the recomputed one[/]")
                sys.exit(EXIT_DISAGREEMENT)
            if event["index"] in wanted:
                computed[event["index"]] = chain.hex()
            progress.update(task, completed=event["index"])
    verdicts = {
        s["name"]: computed.get(s["audit_index"], "") == s["audit_hash"] if s["audit_index"] else True
        for s in statuses.values()
    }
    agree = [n for n, ok in verdicts.items() if ok]
    result = {
        "entries": target,
        "audit_hash": chain.hex(),
        "agree": agree,
        "disagree": [n for n, ok in verdicts.items() if not ok],
        "nodes": len(ctx.urls),
    }
    ctx.emit(
        result,
        lambda: (
            f"recomputed {target} entries → {chain.hex()[:16]}…; "
            f"agree: {', '.join(agree) or 'none'}; disagree: {', '.join(result['disagree']) or 'none'}"
        ),
    )
    if len(agree) <= len(ctx.urls) // 2 or result["disagree"]:
        sys.exit(EXIT_DISAGREEMENT)


# -- tools ---------------------------------------------------------------------------------------


@main.command()
@click.option("--threads", "-n", type=click.IntRange(1, 256), default=4, show_default=True)
@click.option("--seconds", "-t", type=click.FloatRange(1, 3600), default=10, show_default=True)
@click.option("--replicas", help="Start local clusters of these sizes, e.g. 1,3,5 (default: use WALLET_URL)")
@click.option("--as", "signer", default="minter", show_default=True, help="Minter key funding the wallets")
@click.option("--json-out", default="bench.json", show_default=True)
@click.option("--plot", "plot_path", default="bench.png", show_default=True)
@click.pass_obj
def bench(
    ctx: Context, threads: int, seconds: float, replicas: str | None, signer: str, json_out: str, plot_path: str
) -> None:
    """Random transfers between 100×threads funded wallets for some seconds; throughput and latency."""
    from .. import loadgen

    sizes = _sizes(replicas) if replicas else [None]
    results = []
    for size in sizes:
        with Progress(console=err_console, transient=True) as progress:
            task = progress.add_task(
                f"funding {100 * threads} wallets" + (f" ({size} replicas)" if size else ""), total=100 * threads
            )
            advance = partial(progress.advance, task)
            if size is None:
                key = run(partial(ctx.signer, signer))
                results.append(run(partial(loadgen.run, ctx.urls, key, threads, seconds, None, advance, ctx.trust)))
            else:
                results.append(_bench_local(size, threads, seconds, advance))
    data = [r.as_dict() for r in results]
    with open(json_out, "w") as f:
        json.dump(data, f, indent=2)
    try:
        loadgen.plot(results, plot_path)
    except ImportError:
        err_console.print("[yellow]matplotlib is not installed (pip install 'walletcluster[bench]'): no plot[/]")

    def table() -> Table:
        t = Table(
            "replicas",
            "threads",
            "seconds",
            "transfers",
            "transfers/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "errors",
        )
        for r in results:
            t.add_row(
                str(r.replicas or "-"),
                str(r.threads),
                str(r.seconds),
                str(r.transfers),
                str(r.transfers_per_s),
                *(str(r.latency_ms[q]) for q in ("p50", "p95", "p99", "max")),
                str(r.errors),
            )
        t.caption = f"{json_out}, {plot_path}"
        return t

    ctx.emit(data, table)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        fail_usage(f"--replicas {text!r}: a comma-separated list of cluster sizes like 1,3,5")
    if any(s < 1 or s > 9 for s in sizes):
        fail_usage("--replicas: sizes from 1 to 9")
    return sizes


def _bench_local(size: int, threads: int, seconds: float, advance: Callable[[int], None]) -> Any:
    import tempfile

    from .. import loadgen
    from ..ledger.signing import public_hex
    from ..localcluster import LocalCluster

    minter = SigningKey.generate()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(tmp, [public_hex(minter)], size)
        cluster.start_all()
        try:
            cluster.wait_ready(timeout=60)
            trust = {"ca": cluster.ca_file}
            return run(lambda: loadgen.run(cluster.urls, minter, threads, seconds, size, advance, trust))
        finally:
            cluster.stop_all()


@main.command()
@click.pass_context
def shell(click_ctx: click.Context) -> None:
    """An interactive prompt with completion (commands, subcommands, key names)."""
    from .shell import WalletShell

    WalletShell(main, click_ctx.obj, click_ctx.parent.params if click_ctx.parent else {}).cmdloop()


@main.command()
@click.argument("shell_name", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell_name: str) -> None:
    """Print the shell completion script: eval "$(walletctl completion bash)"."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell_name)
    assert cls is not None
    click.echo(cls(main, {}, "walletctl", "_WALLETCTL_COMPLETE").source())


main.add_command(backup)
main.add_command(restore)

if __name__ == "__main__":
    main()
