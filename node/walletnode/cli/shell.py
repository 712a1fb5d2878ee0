"""`walletctl shell`: a prompt that runs walletctl commands, with readline completion."""

from __future__ import annotations

import cmd
import shlex
from typing import Any

import click

from .walletctl import Context


class WalletShell(cmd.Cmd):
    intro = "walletctl shell: type a command (e.g. `balance`, `send bob 1.00 USD --as alice`), `help`, or `quit`."
    prompt = "wallet> "

    def __init__(self, group: click.Group, ctx: Context, options: dict[str, Any]) -> None:
        super().__init__()
        self.group = group
        self.ctx = ctx
        self.options = options

    def default(self, line: str) -> None:
        try:
            args = shlex.split(line)
        except ValueError as exc:
            print(f"error: {exc}")
            return
        try:
            self.group.main(args=self._global_args() + args, prog_name="walletctl", standalone_mode=False, obj=self.ctx)
        except click.ClickException as exc:
            exc.show()
        except click.Abort:
            print("aborted")
        except SystemExit:
            pass  # a command's exit code ends the command, not the shell

    def _global_args(self) -> list[str]:
        args = []
        if self.options.get("url"):
            args += ["--url", self.options["url"]]
        if self.options.get("home"):
            args += ["--home", self.options["home"]]
        return args

    def do_quit(self, _: str) -> bool:
        """Leave the shell."""
        return True

    do_exit = do_quit
    do_EOF = do_quit  # noqa: N815 - cmd's name for end of input

    def emptyline(self) -> bool:
        return False

    def completenames(self, text: str, *ignored: Any) -> list[str]:
        return [name for name in [*self.group.commands, "quit"] if name.startswith(text)]

    def completedefault(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        words = shlex.split(line[:begidx])
        command = self.group.commands.get(words[0]) if words else None
        options = []
        if isinstance(command, click.Group):
            if len(words) == 1:
                return [name for name in command.commands if name.startswith(text)]
            command = command.commands.get(words[1])
        if command is not None:
            options = [opt for p in command.params for opt in getattr(p, "opts", []) if opt.startswith("-")]
        names = self.ctx.keystore.names()
        return [c for c in [*names, *options] if c.startswith(text)]

    def do_help(self, arg: str) -> None:
        self.default(f"{arg} --help" if arg else "--help")
