"""walletctl: keys, currencies, mint, transfer, balances and cluster status from the shell.

Reads WALLET_URL (comma-separated nodes), WALLET_HOME (keystore) and WALLET_PASSWORD. Exit codes:
0 ok, 2 usage error, 3 a command was rejected by the ledger, 4 the cluster could not be reached.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import partial
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from ..client import ClientError, ClusterUnavailable, Rejected, WalletClient, to_display, to_minor
from ..keystore import Keystore, KeystoreError

EXIT_REJECTED = 3
EXIT_UNREACHABLE = 4
console = Console()
err_console = Console(stderr=True)


class Context:
    def __init__(self, urls: str, home: str, output: str) -> None:
        self.urls = [u for u in urls.split(",") if u]
        self.keystore = Keystore(home)
        self.output = output
        self._client: WalletClient | None = None

    @property
    def client(self) -> WalletClient:
        if self._client is None:
            self._client = WalletClient(self.urls)
        return self._client

    def password(self, name: str) -> str:
        return os.environ.get("WALLET_PASSWORD") or (
            click.prompt(f"password for {name}", hide_input=True, default="", show_default=False)
            if sys.stdin.isatty()
            else ""
        )

    def signer(self, name: str) -> Any:
        return self.keystore.signing_key(name, self.password(name))

    def account(self, ref: str) -> str:
        """A key name, a full public key, or a unique prefix of a stored key's public key."""
        names = self.keystore.names()
        if ref in names:
            return self.keystore.public(ref)
        ref_l = ref.lower()
        if len(ref_l) == 64 and all(c in "0123456789abcdef" for c in ref_l):
            return ref_l
        candidates = sorted({k.public for k in self.keystore.list() if k.public.startswith(ref_l)})
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            fail_usage(f"{ref!r} is neither a key name, a 64-hex account, nor a prefix of a stored key")
        fail_usage(f"{ref!r} is ambiguous: " + ", ".join(c[:16] for c in candidates))

    def emit(self, data: Any, table: Callable[[], Any]) -> None:
        if self.output == "json":
            click.echo(json.dumps(data, indent=2))
        else:
            console.print(table())


def fail_usage(message: str) -> NoReturn:
    raise click.UsageError(message)


def run(ctx: Context, action: Callable[[], Any]) -> Any:
    try:
        return action()
    except ClusterUnavailable as exc:
        err_console.print(f"[red]cluster unreachable:[/] {exc}")
        sys.exit(EXIT_UNREACHABLE)
    except Rejected as exc:
        err_console.print(f"[red]rejected:[/] {exc}")
        sys.exit(EXIT_REJECTED if exc.status < 500 else EXIT_UNREACHABLE)
    except (KeystoreError, ClientError) as exc:
        raise click.UsageError(str(exc)) from None


def report(ctx: Context, what: str, result: str, extra: dict[str, Any]) -> None:
    ok = result in ("ok", "exists")
    ctx.emit({"result": result, **extra}, lambda: f"{what}: [{'green' if ok else 'red'}]{result}[/]")
    if not ok:
        sys.exit(EXIT_REJECTED)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="WALLET_URL",
    default="http://127.0.0.1:8701",
    show_default=True,
    help="Comma-separated node URLs (WALLET_URL)",
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
def main(click_ctx: click.Context, url: str, home: str, output: str) -> None:
    """Client for walletcluster ledgers."""
    click_ctx.obj = Context(url, home, output)


@main.group()
def keys() -> None:
    """Manage the keystore."""


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
    stored = run(ctx, lambda: ctx.keystore.create(name, password or ""))
    ctx.emit(
        {"name": stored.name, "public": stored.public, "encrypted": stored.encrypted},
        lambda: f"{stored.name} {stored.public}",
    )


@keys.command("list")
@click.pass_obj
def keys_list(ctx: Context) -> None:
    """List stored keys."""
    stored = run(ctx, ctx.keystore.list)

    def table() -> Table:
        t = Table("name", "public key", "encrypted")
        for k in stored:
            t.add_row(k.name, k.public, "yes" if k.encrypted else "no")
        return t

    ctx.emit([{"name": k.name, "public": k.public, "encrypted": k.encrypted} for k in stored], table)


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
    key = run(ctx, lambda: ctx.signer(signer))
    result = run(ctx, lambda: ctx.client.create_currency(key, code, scale))
    report(ctx, f"create {code}", result, {"code": code, "scale": scale})


def _amount(ctx: Context, amount: str, code: str) -> int:
    scales = run(ctx, ctx.client.currencies)
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
    key = run(ctx, lambda: ctx.signer(signer))
    result = run(ctx, lambda: ctx.client.mint(key, account, code, minor))
    report(ctx, f"mint {amount} {code} to {account[:12]}", result, {"to": account, "amount": minor, "currency": code})


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
    key = run(ctx, lambda: ctx.signer(signer))
    result = run(ctx, lambda: ctx.client.transfer(key, account, code, minor))
    report(ctx, f"send {amount} {code} to {account[:12]}", result, {"to": account, "amount": minor, "currency": code})


main.add_command(transfer, "send")


@main.command()
@click.argument("account", required=False)
@click.option("--stale", is_flag=True, help="Answer from the first node without a read barrier")
@click.pass_obj
def balance(ctx: Context, account: str | None, stale: bool) -> None:
    """Balances of ACCOUNT (default: every stored key)."""
    accounts = [(account, ctx.account(account))] if account else [(k.name, k.public) for k in ctx.keystore.list()]
    scales = run(ctx, ctx.client.currencies)
    consistency = "stale" if stale else "linearizable"
    rows = [(label, public, run(ctx, partial(ctx.client.balances, public, consistency))) for label, public in accounts]

    def table() -> Table:
        t = Table("account", "key", "currency", "balance")
        for label, public, balances in rows:
            for code, minor in sorted(balances.items()) or [("-", 0)]:
                t.add_row(label, public[:16], code, to_display(minor, scales.get(code, 0)) if code != "-" else "0")
        return t

    ctx.emit([{"account": public, "name": label, "balances": b} for label, public, b in rows], table)


main.add_command(balance, "bank")


@main.command()
@click.pass_obj
def status(ctx: Context) -> None:
    """Status of every node in WALLET_URL."""
    rows: list[dict[str, Any]] = []
    for url in ctx.urls:
        try:
            rows.append({"url": url, **ctx.client.status_of(url)})
        except Exception as exc:  # a dead node is a row, not a crash
            rows.append({"url": url, "error": str(exc)})
    if all("error" in r for r in rows):
        err_console.print("[red]cluster unreachable[/]")
        ctx.emit(rows, lambda: "")
        sys.exit(EXIT_UNREACHABLE)

    def table() -> Table:
        t = Table("node", "url", "role", "term", "leader", "commit", "applied", "audit index", "audit hash")
        for r in rows:
            if "error" in r:
                t.add_row("?", r["url"], "[red]down[/]", "", "", "", "", "", r["error"][:40])
            else:
                t.add_row(
                    r["name"],
                    r["url"],
                    r["role"],
                    str(r["term"]),
                    str(r["leader"]),
                    str(r["commit_index"]),
                    str(r["applied_index"]),
                    str(r["audit_index"]),
                    r["audit_hash"][:16],
                )
        return t

    ctx.emit(rows, table)


if __name__ == "__main__":
    main()
