"""`python -m walletoperator` / `walletcluster-operator`: run the operator against the kubeconfig."""

from __future__ import annotations

import argparse
import logging
import secrets

import kopf

from . import handlers  # noqa: F401 - registers the handlers


def main() -> None:
    parser = argparse.ArgumentParser(prog="walletcluster-operator", description=__doc__)
    parser.add_argument("--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)")
    parser.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL")
    parser.add_argument(
        "--peering", default=None, help="kopf peering name for HA (several replicas, one active); default: standalone"
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority; the highest live one works, the others stand by (default: random, so that replicas "
        "never tie: kopf freezes every operator of a tied priority)",
    )
    parser.add_argument("--log-format", choices=["json", "plain"], default="json")
    args = parser.parse_args()
    kopf.configure(log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness,
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=args.priority if args.priority is not None else secrets.randbelow(2**31),
    )


if __name__ == "__main__":
    main()
