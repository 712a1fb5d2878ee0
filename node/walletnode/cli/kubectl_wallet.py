"""`kubectl wallet`: walletctl's commands against a WalletCluster, from any machine kubectl works on.

kubectl runs an executable named ``kubectl-wallet`` found on PATH for ``kubectl wallet ...``;
installing walletcluster puts this one there. ``kubectl wallet status wallet`` finds the
WalletCluster "wallet" (namespace and credentials from the kube context, or --kubeconfig,
--context, -n as for kubectl), port-forwards a local port to every member for the duration of the
command (attested reads ask every replica; one port-forward of the Service reaches only one), and
runs walletctl's own command in this process with those URLs. The keystore is walletctl's:
WALLET_HOME or --home.

The forwards are ``kubectl port-forward`` processes, one per member, rather than the Kubernetes
Python client's portforward: a plugin runs where kubectl runs, so the user's own kubectl brings
every authentication plugin and kubeconfig rule they rely on, and it multiplexes any number of
connections over one stream per pod (the Python client gives one socket per stream, so it would
need a relay of our own) - and the plugin needs no Kubernetes client library.

Trust: a port-forward goes through the API server with the user's credentials to the very pod, so
node identity keys are learnt from each member's /v1/status as walletctl does. Seam: once the
operator publishes the cluster's CA and the members' identity keys (in the WalletCluster's status
or a Secret), ``open_cluster`` is where they are fetched and handed to walletctl (WALLET_CA, pinned
node keys), and the URLs become https.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import Any

import click

from . import walletctl

PLUGIN = "kubectl wallet"
RESOURCE = "walletclusters.ledger.walletcluster.io"
# The container port of the ledger's HTTP API, by name (the operator's builders name it).
HTTP_PORT_NAME = "http"
FORWARD_TIMEOUT_S = 30.0
FORWARDING = re.compile(r"^Forwarding from 127\.0\.0\.1:(\d+) ->")
# walletctl commands that make no sense here: completion scripts name walletctl, and bench would
# measure the port-forwards (its --replicas mode needs no Kubernetes: use walletctl).
LEFT_OUT = {"completion", "bench"}
# Commands that only touch the local keystore: no cluster argument, no port-forward.
LOCAL = {"keys"}


@dataclass(frozen=True)
class Access:
    """How to reach the Kubernetes cluster: kubectl's own flags, passed on to every kubectl call."""

    kubeconfig: str | None
    context: str | None
    namespace: str | None

    def command(self, *args: str) -> list[str]:
        flags = [f"--kubeconfig={self.kubeconfig}"] if self.kubeconfig else []
        flags += [f"--context={self.context}"] if self.context else []
        flags += [f"--namespace={self.namespace}"] if self.namespace else []
        return ["kubectl", *flags, *args]


def unreachable(message: str) -> click.exceptions.Exit:
    """walletctl's exit status for a cluster it cannot reach, after the reason (as given: not re-wrapped)."""
    click.echo(message, err=True)
    return click.exceptions.Exit(walletctl.EXIT_UNREACHABLE)


def find_cluster(access: Access, name: str) -> dict[str, Any]:
    """The WalletCluster object; a clear error if there is none or the API cannot be asked."""
    try:
        done = subprocess.run(
            access.command("get", RESOURCE, name, "--ignore-not-found", "-o", "json"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        raise unreachable("kubectl get walletcluster did not answer within 60s") from None
    if done.returncode != 0:  # kubectl's last line sums up (its client-side retries come before it)
        raise unreachable(f"kubectl: {(done.stderr.strip().splitlines() or ['failed'])[-1]}")
    if not done.stdout.strip():
        where = f"namespace {access.namespace!r}" if access.namespace else "the current namespace"
        raise click.BadParameter(f"no WalletCluster {name!r} in {where}", param_hint="'CLUSTER'")
    return dict(json.loads(done.stdout))


def member_pods(cluster: dict[str, Any]) -> list[str]:
    """Pods <name>-0 .. <name>-(n-1): n is the Raft membership the operator last saw (status.replicas),
    or spec.replicas before it has seen one."""
    name = cluster["metadata"]["name"]
    status, spec = cluster.get("status") or {}, cluster.get("spec") or {}
    count = status.get("replicas") or spec.get("replicas") or 0
    return [f"{name}-{i}" for i in range(int(count))]


class Forward:
    """One ``kubectl port-forward`` to a pod's HTTP port, on a free local port chosen by kubectl."""

    def __init__(self, access: Access, pod: str) -> None:
        self.pod = pod
        self.proc = subprocess.Popen(
            access.command("port-forward", "--address=127.0.0.1", f"pod/{pod}", f":{HTTP_PORT_NAME}"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._port: queue.Queue[int | None] = queue.Queue()
        self._last: collections.deque[str] = collections.deque(maxlen=5)
        # kubectl writes a line per connection for as long as it runs: read to the end, or it blocks.
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._last.append(line.strip())
            match = FORWARDING.match(line)
            if match:
                self._port.put(int(match.group(1)))
        self._port.put(None)

    def local_port(self, timeout: float) -> int | None:
        """The local port once kubectl listens, or None if it failed (see ``problem``)."""
        try:
            return self._port.get(timeout=timeout)
        except queue.Empty:
            self._last.append(f"no forward within {timeout:.0f}s")
            return None

    @property
    def problem(self) -> str:
        return "; ".join(line for line in self._last if line) or "kubectl port-forward ended"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections while held (bound, never listening): the URL of a
    member that cannot be forwarded, so that walletctl still counts it (a majority stays a majority
    of every member) and shows it down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def trust_of(access: Access, cluster: dict[str, Any], directory: str) -> dict[str, str]:
    """walletctl's environment to trust this cluster's members: WALLET_CA, the CA bundle the
    operator published (ConfigMap named in status.tls.caConfigMap, written into `directory`), and
    WALLET_NODE_KEYS, the members' identity keys from status.nodeKeys (pinned for attested reads)."""
    status = cluster.get("status") or {}
    config_map = (status.get("tls") or {}).get("caConfigMap")
    if not config_map:
        raise unreachable(f"WalletCluster {cluster['metadata']['name']!r} publishes no CA yet (status.tls.caConfigMap)")
    done = subprocess.run(
        access.command("get", "configmap", config_map, "-o", "jsonpath={.data.ca\\.crt}"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0 or "BEGIN CERTIFICATE" not in done.stdout:
        raise unreachable(f"cannot read the CA bundle from ConfigMap {config_map}: {done.stderr.strip()}")
    ca_file = os.path.join(directory, "ca.crt")
    with open(ca_file, "w") as f:
        f.write(done.stdout)
    keys = ",".join(f"{pod}={key}" for pod, key in sorted((status.get("nodeKeys") or {}).items()))
    return {"WALLET_CA": ca_file, "WALLET_NODE_KEYS": keys}


@contextmanager
def open_cluster(access: Access, name: str) -> Iterator[tuple[list[str], dict[str, str]]]:
    """Port-forwards to every member of WalletCluster ``name``; yields their URLs, in member order,
    and the environment that makes walletctl trust them (see ``trust_of``)."""
    cluster = find_cluster(access, name)
    pods = member_pods(cluster)
    if not pods:
        raise unreachable(f"WalletCluster {name!r} has no members yet (kubectl get wc {name})")
    with ExitStack() as stack:
        at = replace(access, namespace=cluster["metadata"]["namespace"])
        trust = trust_of(at, cluster, stack.enter_context(tempfile.TemporaryDirectory()))
        forwards = [Forward(at, pod) for pod in pods]
        for forward in forwards:
            stack.callback(forward.stop)
        urls = []
        deadline = time.monotonic() + FORWARD_TIMEOUT_S
        for forward in forwards:
            port = forward.local_port(max(0.0, deadline - time.monotonic()))
            if port is None:
                walletctl.err_console.print(
                    f"[yellow]{forward.pod}: no port-forward:[/] {forward.problem}", highlight=False
                )
                port = stack.enter_context(refusing_port())
            urls.append(f"https://127.0.0.1:{port}")  # the certificates name 127.0.0.1 and localhost
        yield urls, trust


# kubectl's flags, accepted after the command as kubectl accepts them.
ACCESS_OPTIONS = [
    click.Option(["--kubeconfig"], help="kubeconfig file (default: kubectl's: KUBECONFIG or ~/.kube/config)"),
    click.Option(["--context"], help="kube context (default: the current one)"),
    click.Option(["--namespace", "-n"], help="namespace (default: the context's)"),
]


def wrapped(command: click.Command, local: bool) -> click.Command:
    """walletctl's ``command`` with walletctl's --home/--output (and, unless ``local``, a CLUSTER
    argument and kubectl's flags) in front of its own parameters; runs it with a walletctl Context
    whose URLs are the forwards."""
    if isinstance(command, click.Group):
        group = click.Group(command.name, help=command.help, short_help=command.short_help)
        for name, sub in command.commands.items():
            group.add_command(wrapped(sub, local), name)
        return group
    shared = [p for p in walletctl.main.params if p.name in ("home", "output")]

    def run(**kwargs: Any) -> Any:
        home, output = kwargs.pop("home"), kwargs.pop("output")
        ctx = click.get_current_context()
        if local:
            ctx.obj = walletctl.Context("", home, output)
            return ctx.invoke(command.callback, **kwargs)  # type: ignore[arg-type]
        if shutil.which("kubectl") is None:
            raise click.UsageError("kubectl is not on PATH: kubectl wallet runs it for the port-forwards")
        access = Access(*(kwargs.pop(k) for k in ("kubeconfig", "context", "namespace")))
        with open_cluster(access, kwargs.pop("cluster")) as (urls, trust):
            # walletctl's environment too: `shell` starts walletctl's group again for each line.
            os.environ.update(WALLET_URL=",".join(urls), WALLET_HOME=home, **trust)
            ctx.obj = walletctl.Context(
                ",".join(urls), home, output, ca=trust["WALLET_CA"], node_keys=trust["WALLET_NODE_KEYS"]
            )
            return ctx.invoke(command.callback, **kwargs)  # type: ignore[arg-type]

    params = [*shared, *command.params]
    if not local:
        params = [click.Argument(["cluster"]), *params, *ACCESS_OPTIONS]
    names = [opt for p in params for opt in p.opts if opt.startswith("-")]
    assert len(names) == len(set(names)), f"{command.name}: options clash: {sorted(names)}"
    return click.Command(
        command.name,
        callback=run,
        params=params,
        help=(command.help or "") + ("" if local else "\n\nCLUSTER is the WalletCluster's name."),
        short_help=command.short_help,
        context_settings=command.context_settings,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """walletctl against a WalletCluster: `kubectl wallet COMMAND CLUSTER ...` port-forwards to every
    member for the duration of the command. Examples:

    \b
      kubectl wallet status wallet -n ledgers
      kubectl wallet balance wallet alice
      kubectl wallet send wallet bob 25.00 USD --as alice
    """


for _name, _command in walletctl.main.commands.items():
    if _name not in LEFT_OUT:
        main.add_command(wrapped(_command, local=_name in LOCAL), _name)


def entry() -> None:
    main(prog_name=PLUGIN)


if __name__ == "__main__":
    entry()
