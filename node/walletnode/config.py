"""Node configuration: who am I in the cluster, where are my peers, what are my ports.

Two ways in. In Kubernetes the pod hostname `<name>-<ordinal>` gives the Raft id and the
cluster name, and peers are `<name>-<i>.<service>.<namespace>.svc:<raft port>` for every i below
`replicas`. Outside Kubernetes, `--id N --cluster host:port,host:port,...` lists the Raft
addresses in id order.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

HOSTNAME = re.compile(r"^(?P<name>[a-z0-9]([-a-z0-9]*[a-z0-9])?)-(?P<ordinal>[0-9]+)$")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Member:
    id: int
    name: str
    raft_address: str  # host:port, as every member dials it


@dataclass(frozen=True)
class NodeConfig:
    id: int
    name: str
    cluster_name: str
    cluster_id: str  # the signing domain: signatures for one cluster are void in another
    members: tuple[Member, ...]
    raft_bind: str
    http_host: str
    http_port: int
    data_dir: str
    minters: tuple[str, ...] = ()
    join: bool = False
    founding: bool = True  # one of the members a new cluster starts with (else it waits to be added)

    @property
    def self_member(self) -> Member:
        return next(m for m in self.members if m.id == self.id)

    @property
    def peer_addresses(self) -> list[str]:
        return [m.raft_address for m in self.members if m.id != self.id]


def raft_id(member: int) -> int:
    """Members are numbered from 0 (pod ordinals); Raft ids from 1 (0 means "none")."""
    return member + 1


def identity_from_hostname(hostname: str) -> tuple[str, int]:
    """`wallet-2` -> ("wallet", 2); anything else is a clear error."""
    match = HOSTNAME.match(hostname)
    if match is None:
        raise ConfigError(
            f"hostname {hostname!r} is not <name>-<ordinal> (like a StatefulSet pod); pass --id and --cluster instead"
        )
    return match["name"], int(match["ordinal"])


def pod_member(name: str, ordinal: int, service: str, namespace: str, raft_port: int) -> Member:
    domain = f"{service}.{namespace}.svc" if namespace else service
    return Member(ordinal, f"{name}-{ordinal}", f"{name}-{ordinal}.{domain}:{raft_port}")


def members_from_list(addresses: str, name: str) -> tuple[Member, ...]:
    parts = [a.strip() for a in addresses.split(",") if a.strip()]
    if not parts:
        raise ConfigError("--cluster needs at least one host:port")
    for part in parts:
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"--cluster entry {part!r} is not host:port")
    return tuple(Member(i, f"{name}-{i}", addr) for i, addr in enumerate(parts))


def resolve(
    *,
    node_id: int | None,
    cluster: str | None,
    replicas: int,
    service: str | None,
    namespace: str,
    name: str | None,
    cluster_id: str | None,
    raft_port: int,
    http_host: str,
    http_port: int,
    data_dir: str,
    minters: tuple[str, ...],
    join: bool = False,
    hostname: str | None = None,
) -> NodeConfig:
    for minter in minters:
        if not re.fullmatch(r"[0-9a-f]{64}", minter):
            raise ConfigError(f"minter {minter!r} is not a 64-hex-character ed25519 public key")
    if node_id is None:
        host_name, node_id = identity_from_hostname(hostname or socket.gethostname())
        name = name or host_name
        if node_id >= replicas and not join:
            raise ConfigError(f"ordinal {node_id} is not below replicas={replicas}; pass --join to be added")
        founding = node_id < replicas
        ordinals = sorted(set(range(replicas)) | {node_id})
        members = tuple(pod_member(name, i, service or name, namespace, raft_port) for i in ordinals)
        bind = f"0.0.0.0:{raft_port}"
    else:
        if cluster is None:
            raise ConfigError("--id needs --cluster host:port,host:port,... (Raft addresses in id order)")
        name = name or "wallet"
        members = members_from_list(cluster, name)
        if not 0 <= node_id < len(members):
            raise ConfigError(f"--id {node_id} is not an index into --cluster ({len(members)} members)")
        bind = members[node_id].raft_address
        founding = not join
    me = next(m for m in members if m.id == node_id)
    return NodeConfig(
        id=node_id,
        name=me.name,
        cluster_name=name,
        cluster_id=cluster_id or name,
        members=members,
        raft_bind=bind,
        http_host=http_host,
        http_port=http_port,
        data_dir=data_dir,
        minters=minters,
        join=join,
        founding=founding,
    )
