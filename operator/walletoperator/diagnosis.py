"""Why a cluster is not coming up, in words, from what Kubernetes and the nodes report.

Pure functions of a pod's status (the scheduler's reason, the kubelet's image and container
errors) and of the nodes' /v1/status (peers a member cannot resolve or reach). The operator puts
the result in its conditions and Events, so `kubectl describe wc` says what is wrong instead of
"no member reports a leader".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .spec import RESTORE_CONTAINER

# Waiting reasons of a container whose image the kubelet cannot get.
IMAGE_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"})
# Waiting reasons of a container that cannot be created or keeps failing.
CONTAINER_REASONS = frozenset(
    {"CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)


@dataclass(frozen=True)
class Problem:
    reason: str  # for conditions and Events: PodUnschedulable, ImagePullFailed, ...
    subject: str  # the pod or member it is about
    message: str

    @property
    def key(self) -> tuple[str, str]:
        """What stays the same while the problem lasts (kubelet messages change from retry to retry)."""
        return (self.reason, self.subject)


def pod_problem(pod: Mapping[str, Any]) -> Problem | None:
    """The first thing that keeps this pod from running, or None."""
    name = str(pod["metadata"]["name"])
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            why = condition.get("message") or condition.get("reason") or "no reason given"
            return Problem("PodUnschedulable", name, f"{name} cannot be scheduled: {why}")
    for init in status.get("initContainerStatuses") or []:
        failed = _failure(init)
        if init.get("name") == RESTORE_CONTAINER and failed is not None:
            return Problem("RecoveryFailed", name, f"{name}: the restore from the backup failed: {failed}")
    containers = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    for container in containers:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        detail = f" ({waiting['message']})" if waiting.get("message") else ""
        if reason in IMAGE_REASONS:
            return Problem(
                "ImagePullFailed", name, f"{name}: image {container.get('image')} cannot be pulled: {reason}{detail}"
            )
        if reason in CONTAINER_REASONS:
            return Problem("ContainerFailing", name, f"{name}: container {container.get('name')}: {reason}{detail}")
    return None


def restore_running(pod: Mapping[str, Any]) -> bool:
    """The pod's restore init container is running (restoring, or waiting to try again)."""
    for init in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if init.get("name") == RESTORE_CONTAINER and "running" in (init.get("state") or {}):
            return True
    return False


def restore_problem(pod: str, last_line: str) -> Problem | None:
    """From the last line the running restore wrote: walletctl restore --retry says "error: ..."
    when an attempt failed, before it tries again."""
    if not last_line.startswith("error: "):
        return None
    return Problem(
        "RecoveryFailed", pod, f"{pod}: the restore from the backup failed: {last_line.removeprefix('error: ')}"
    )


def _failure(container: Mapping[str, Any]) -> str | None:
    """The last words of a container that exited with an error (now, or before its restart; not
    once it has succeeded)."""
    if ((container.get("state") or {}).get("terminated") or {}).get("exitCode") == 0:
        return None
    for state in (container.get("state") or {}, container.get("lastState") or {}):
        ended = state.get("terminated") or {}
        if ended.get("exitCode"):
            words = (ended.get("message") or "").strip().splitlines()
            return words[-1] if words else f"exit code {ended['exitCode']} ({ended.get('reason') or 'no message'})"
    return None


def peer_problems(statuses: Iterable[Mapping[str, Any]]) -> list[Problem]:
    """From the nodes' /v1/status: each member that cannot resolve or reach a peer, and why."""
    problems = []
    for status in statuses:
        for member in status.get("members") or []:
            error = member.get("error")
            if not error:
                continue
            reason = "PeerUnresolvable" if error.startswith("cannot resolve") else "PeerUnreachable"
            subject = f"{status['name']}->{member['name']}"
            problems.append(Problem(reason, subject, f"{status['name']}: {error}"))
    return problems


def new_problems(problems: Iterable[Problem], reported: frozenset[tuple[str, str]]) -> list[Problem]:
    """The problems not among those already `reported` (by key): what deserves a new Event."""
    return [p for p in problems if p.key not in reported]


def summary(problems: Iterable[Problem], most: int = 3) -> str:
    """One line for a condition's message: the first `most` problems and how many more."""
    listed = list(problems)
    text = "; ".join(p.message for p in listed[:most])
    return text + (f" (and {len(listed) - most} more)" if len(listed) > most else "")
