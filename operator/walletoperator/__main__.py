"""`python -m walletoperator` / `walletcluster-operator`: run the operator against the kubeconfig."""

from __future__ import annotations

import argparse
import logging
import secrets
import time

import kopf

from . import backups, handlers  # noqa: F401 - registers the handlers


def default_priority() -> int:
    return (2**31 - int(time.time())) * 1024 + secrets.randbelow(1024)


def main() -> None:
    parser = argparse.ArgumentParser(prog="walletcluster-operator", description=__doc__)
    parser.add_argument("--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)")
    parser.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)")
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="liveness endpoint URL; its host and port also serve Prometheus metrics at /metrics",
    )
    parser.add_argument(
        "--peering", default=None, help="kopf peering name for HA (several replicas, one active); default: standalone"
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority; the highest live one works, the others stand by (default: the earlier started, the "
        "higher, so a new replica does not take over from a working one; plus a random part, as kopf freezes every "
        "operator of a tied priority)",
    )
    parser.add_argument("--log-format", choices=["json", "plain"], default="json")
    args = parser.parse_args()
    kopf.configure(log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # a line per liveness probe otherwise
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        memo=kopf.Memo(liveness=args.liveness),
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=args.priority if args.priority is not None else default_priority(),
    )


if __name__ == "__main__":
    main()
