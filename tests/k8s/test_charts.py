"""The Helm charts: lint-clean, bad values rejected by values.schema.json with the key that is wrong,
the rendered manifests accepted by a real API server, and least-privilege RBAC."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..metrics import ALERTS, DASHBOARD
from .kube import REPO, Helm, HelmError, Kubectl, wait_until

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(300, func_only=True)]

OPERATOR = REPO / "charts" / "walletcluster-operator"
LEDGER = REPO / "charts" / "walletcluster"
MINTER = "ab" * 32


def render(helm: Helm, chart: Path, namespace: str, *args: str) -> list[dict[str, Any]]:
    out = helm.run("template", "rel", str(chart), "--namespace", namespace, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def sets(values: dict[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


@pytest.mark.parametrize("chart", [OPERATOR, LEDGER], ids=lambda c: c.name)
def test_helm_lint_strict_is_clean(helm: Helm, chart: Path) -> None:
    result = helm.run("lint", "--strict", str(chart))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


BAD_OPERATOR_VALUES = [
    ({"replicaCount": "0"}, "at '/replicaCount': minimum: got 0, want 1"),
    ({"replicaCount": "two"}, "at '/replicaCount': got string, want integer"),
    ({"image.pullPolicy": "Sometimes"}, "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent'"),
    ({"image.repository": ""}, "at '/image/repository': minLength"),
    ({"watchNamespaces": "{Bad_NS}"}, "at '/watchNamespaces/0': 'Bad_NS' does not match pattern"),
    ({"watchNamespaces": "{a,a}"}, "at '/watchNamespaces': items at 0 and 1 are equal"),
    ({"logFormat": "xml"}, "at '/logFormat': value must be one of 'json', 'plain'"),
    ({"livenessPort": "80"}, "at '/livenessPort': minimum: got 80, want 1,024"),
    ({"resources.requests.cpu": "lots"}, "at '/resources/requests/cpu': 'lots' does not match pattern"),
    ({"resources.request.cpu": "1"}, "additional properties 'request' not allowed"),
    ({"replicas": "2"}, "additional properties 'replicas' not allowed"),
    ({"monitoring.podMonitor.interval": "soon"}, "at '/monitoring/podMonitor/interval': 'soon' does not match pattern"),
    ({"monitoring.podMonitor.enabled": "yes"}, "at '/monitoring/podMonitor/enabled': got string, want boolean"),
    ({"monitoring.prometheusRule.enable": "true"}, "additional properties 'enable' not allowed"),
]

BAD_LEDGER_VALUES = [
    ({"replicas": "4"}, "at '/replicas': value must be one of 1, 3, 5, 7"),
    ({"replicas": "three"}, "at '/replicas': got string, want integer"),
    ({"minters[0]": "ABC"}, "at '/minters/0': 'ABC' does not match pattern '^[0-9a-f]{64}$'"),
    ({"minters[0]": MINTER.upper()}, "at '/minters/0'"),
    ({"storage.size": "0"}, "at '/storage/size': minimum: got 0, want 1"),
    ({"storage.size": "-1Gi"}, "at '/storage/size': '-1Gi' does not match pattern"),
    ({"storage.size": "0Gi"}, "at '/storage/size': '0Gi' does not match pattern"),
    ({"storage.size": "lots"}, "at '/storage/size': 'lots' does not match pattern"),
    ({"storage.reclaimPolicy": "Keep"}, "at '/storage/reclaimPolicy': value must be one of 'Retain', 'Delete'"),
    ({"storage.storageClassName": "Fast_SSD"}, "at '/storage/storageClassName'"),
    ({"raft.heartbeatMs": "5"}, "at '/raft/heartbeatMs': minimum: got 5, want 10"),
    ({"raft.electionTimeoutMs": "200"}, "raft.electionTimeoutMs must exceed three heartbeats"),
    ({"service.type": "ExternalName"}, "at '/service/type': value must be one of 'ClusterIP'"),
    ({"service.port": "70000"}, "at '/service/port': maximum: got 70,000, want 65,535"),
    ({"image": ""}, "at '/image': minLength: got 0, want 1"),
    ({"imagePullPolicy": "Sometimes"}, "at '/imagePullPolicy': value must be one of"),
    ({"name": "Wallet_1"}, "at '/name': 'Wallet_1' does not match pattern"),
    ({"name": "w" * 53}, "at '/name': maxLength: got 53, want 52"),
    ({"paused": "maybe"}, "at '/paused': got string, want boolean"),
    ({"replica": "3"}, "additional properties 'replica' not allowed"),
    (
        {"backup.endpoint": "s3.example.com", "backup.bucket": "ledgers", "backup.credentialsSecret.name": "keys"},
        "at '/backup/endpoint': 's3.example.com' does not match pattern",
    ),
    ({"backup.endpoint": "https://s3.example.com", "backup.bucket": "ledgers"}, "at '/backup': missing property"),
    (
        {"backup.endpoint": "https://s3", "backup.bucket": "Ledgers", "backup.credentialsSecret.name": "k"},
        "at '/backup/bucket': 'Ledgers' does not match pattern",
    ),
    (
        {
            "backup.endpoint": "https://s3",
            "backup.bucket": "ledgers",
            "backup.credentialsSecret.name": "k",
            "backup.schedule": "nightly",
        },
        "at '/backup/schedule': 'nightly' does not match pattern",
    ),
    ({"bootstrap.recovery.target.index": "5"}, "at '/bootstrap/recovery': missing property 'source'"),
    ({"bootstrap.recovery.source.endpoint": "https://s3"}, "at '/bootstrap/recovery/source': missing properties"),
]


@pytest.mark.parametrize(
    ("chart", "values", "message"),
    [(OPERATOR, v, m) for v, m in BAD_OPERATOR_VALUES] + [(LEDGER, v, m) for v, m in BAD_LEDGER_VALUES],
    ids=[f"operator-{next(iter(v))}={next(iter(v.values()))}"[:60] for v, _ in BAD_OPERATOR_VALUES]
    + [f"ledger-{next(iter(v))}={next(iter(v.values()))}"[:60] for v, _ in BAD_LEDGER_VALUES],
)
def test_bad_values_are_rejected_with_a_clear_message(
    helm: Helm, chart: Path, values: dict[str, str], message: str
) -> None:
    with pytest.raises(HelmError) as failure:
        helm.run("template", "rel", str(chart), *sets(values))
    assert message in failure.value.stderr, failure.value.stderr


def test_a_release_name_that_is_no_walletcluster_name_is_rejected(helm: Helm) -> None:
    with pytest.raises(HelmError) as failure:
        helm.run("template", "x" * 53, str(LEDGER))
    assert "longer than 52 characters" in failure.value.stderr, failure.value.stderr


def server_dry_run(kubectl: Kubectl, docs: list[dict[str, Any]]) -> str:
    stream = yaml.safe_dump_all(docs)
    return kubectl.run("apply", "--dry-run=server", "-f", "-", input=stream).stdout


def as_stored(kubectl: Kubectl, doc: dict[str, Any]) -> dict[str, Any]:
    """The object as the API server would store it (defaults applied, CEL rules checked)."""
    out = kubectl.run("apply", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(doc)).stdout
    return dict(json.loads(out))


OPERATOR_VARIANTS = {
    "all-namespaces": {},
    "watch-namespaces-with-peering": {"replicaCount": "2", "watchNamespaces": "{NS}"},
    "all-namespaces-with-peering": {"peering.enabled": "true", "logFormat": "plain"},
    # PodMonitor and PrometheusRule need the Prometheus Operator's CRDs, which this cluster lacks.
    "with-grafana-dashboard": {"monitoring.grafanaDashboard.enabled": "true"},
}


@pytest.fixture
def crds(kubectl: Kubectl) -> None:
    """The charts' CRDs, applied for real: a dry run of a custom resource needs its kind served."""
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(OPERATOR / "crds"))
    for crd in ("walletclusters.ledger.walletcluster.io", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        kubectl.run("wait", "--for", "condition=established", f"crd/{crd}", "--timeout=60s")


@pytest.mark.parametrize("variant", list(OPERATOR_VARIANTS))
def test_operator_chart_is_accepted_by_the_api_server(
    helm: Helm, kubectl: Kubectl, namespace: str, crds: None, variant: str
) -> None:
    values = {k: v.replace("NS", namespace) for k, v in OPERATOR_VARIANTS[variant].items()}
    docs = render(helm, OPERATOR, namespace, "--include-crds", *sets(values))
    kinds = sorted({d["kind"] for d in docs})
    assert "CustomResourceDefinition" in kinds and "Deployment" in kinds
    out = server_dry_run(kubectl, docs)
    assert "customresourcedefinition.apiextensions.k8s.io/walletclusters.ledger.walletcluster.io" in out
    assert "(server dry run)" in out
    assert out.count("(server dry run)") == len(docs), out


def test_walletcluster_chart_is_accepted_by_the_api_server(
    helm: Helm, kubectl: Kubectl, namespace: str, crds: None
) -> None:
    for values in (
        {"minters[0]": MINTER},
        {
            "name": "ledger",
            "replicas": "5",
            "minters": "{" + MINTER + "," + "cd" * 32 + "}",
            "resources.requests.cpu": "250m",
            "resources.limits.memory": "512Mi",
            "storage.size": "10Gi",
            "storage.storageClassName": "fast",
            "storage.reclaimPolicy": "Delete",
            "raft.heartbeatMs": "50",
            "raft.electionTimeoutMs": "500",
            "service.type": "NodePort",
            "service.port": "8080",
            "nodeSelector.disk": "ssd",
            "tolerations[0].key": "ledger",
            "tolerations[0].operator": "Exists",
            "paused": "true",
            "labels.team": "payments",
        },
    ):
        (wallet,) = render(helm, LEDGER, namespace, *sets(values))
        assert "created (server dry run)" in server_dry_run(kubectl, [wallet])
        # The API server's defaults and CEL rules agree with the chart: nothing is changed or added.
        assert as_stored(kubectl, wallet)["spec"] == wallet["spec"]


def test_walletcluster_defaults_are_the_crds(helm: Helm, kubectl: Kubectl, namespace: str, crds: None) -> None:
    """With only the minters set, the chart writes out exactly the spec the CRD's defaults make."""
    (wallet,) = render(helm, LEDGER, namespace, "--set", f"minters[0]={MINTER}")
    bare = {**wallet, "spec": {"minters": [MINTER]}}
    assert wallet["spec"] == as_stored(kubectl, bare)["spec"]


def rbac_rules(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {
        f"{d['kind']}/{d['metadata'].get('namespace', '')}/{d['metadata']['name']}": d["rules"]
        for d in docs
        if d["kind"] in ("ClusterRole", "Role")
    }


def permissions(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


# Everything the operator may do in a namespace it watches (the calls of kopf and of
# operator/walletoperator); a change here must be deliberate.
NAMESPACED = (
    {("ledger.walletcluster.io", "walletclusters", v) for v in ("get", "list", "watch", "patch")}
    | {("ledger.walletcluster.io", "walletbackups", v) for v in ("get", "list", "watch", "patch")}
    | {
        ("ledger.walletcluster.io", "walletclusters/status", "patch"),
        ("ledger.walletcluster.io", "walletbackups/status", "patch"),
        ("", "pods/log", "get"),  # spec.bootstrap.recovery: why the restore tries again
        ("", "events", "create"),
        ("", "secrets", "get"),
        ("", "secrets", "create"),
        ("", "secrets", "patch"),
        ("apps", "statefulsets", "get"),
        ("apps", "statefulsets", "create"),
        ("apps", "statefulsets", "patch"),
        ("", "pods", "list"),
        ("", "pods", "delete"),
    }
    | {
        (group, resource, verb)
        for group, resource in (
            ("", "configmaps"),
            ("", "services"),
            ("", "serviceaccounts"),
            ("policy", "poddisruptionbudgets"),
            ("networking.k8s.io", "networkpolicies"),
            ("cert-manager.io", "certificates"),  # with spec.tls.issuerRef
        )
        for verb in ("create", "patch")
    }
)
CRD_WATCH = {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")}


def test_rbac_is_least_privilege(helm: Helm) -> None:
    for values in OPERATOR_VARIANTS.values():
        docs = render(helm, OPERATOR, "ops", *sets({k: v.replace("NS", "ledgers") for k, v in values.items()}))
        for name, rules in rbac_rules(docs).items():
            for rule in rules:
                for field in ("verbs", "resources", "apiGroups"):
                    assert "*" not in rule[field], f"{name}: wildcard in {field}: {rule}"
                    assert not any("*" in item for item in rule[field]), f"{name}: wildcard in {field}: {rule}"

    # All namespaces: the operator's ClusterRole with exactly these permissions (kopf needs no
    # namespaces then), and the two ClusterRoles that extend Kubernetes' default roles to WalletClusters.
    roles = rbac_rules(render(helm, OPERATOR, "ops"))
    assert sorted(roles) == [f"ClusterRole//rel-walletcluster-operator-ops{s}" for s in ("", "-edit", "-view")]
    assert permissions(roles["ClusterRole//rel-walletcluster-operator-ops"]) == NAMESPACED | CRD_WATCH
    group = "ledger.walletcluster.io"
    readable = (
        "walletclusters",
        "walletclusters/status",
        "walletclusters/scale",
        "walletbackups",
        "walletbackups/status",
    )
    assert permissions(roles["ClusterRole//rel-walletcluster-operator-ops-view"]) == {
        (group, resource, verb) for resource in readable for verb in ("get", "list", "watch")
    }
    assert permissions(roles["ClusterRole//rel-walletcluster-operator-ops-edit"]) == {
        (group, kind, verb)
        for kind in ("walletclusters", "walletbackups")
        for verb in ("create", "update", "patch", "delete", "deletecollection")
    } | {(group, "walletclusters/scale", verb) for verb in ("update", "patch")}

    # Watched namespaces: a Role in each, and a ClusterRole that can only list and watch (here without
    # the aggregated roles: rbac.aggregateToDefaultRoles=false).
    docs = render(
        helm,
        OPERATOR,
        "ops",
        *("--set", "watchNamespaces={a,b}", "--set", "replicaCount=2", "--set", "rbac.aggregateToDefaultRoles=false"),
    )
    roles = rbac_rules(docs)
    assert sorted(roles) == [
        "ClusterRole//rel-walletcluster-operator-ops",
        "Role/a/rel-walletcluster-operator-ops",
        "Role/b/rel-walletcluster-operator-ops",
    ]
    assert permissions(roles["ClusterRole//rel-walletcluster-operator-ops"]) == CRD_WATCH | {
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
    }
    peering = {("kopf.dev", "kopfpeerings", v) for v in ("list", "watch", "patch")}
    assert permissions(roles["Role/a/rel-walletcluster-operator-ops"]) == NAMESPACED | peering
    # The peering object may be patched only by its name.
    (patch_rule,) = [r for r in roles["Role/a/rel-walletcluster-operator-ops"] if "resourceNames" in r]
    assert patch_rule == {
        "apiGroups": ["kopf.dev"],
        "resources": ["kopfpeerings"],
        "resourceNames": ["rel-walletcluster-operator"],
        "verbs": ["patch"],
    }
    bindings = [d for d in docs if d["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    assert len(bindings) == 3
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "rel-walletcluster-operator", "namespace": "ops"}
        ]


def test_operator_deployment(helm: Helm) -> None:
    def deployment(*args: str) -> dict[str, Any]:
        (d,) = [d for d in render(helm, OPERATOR, "ops", *args) if d["kind"] == "Deployment"]
        return d

    d = deployment()
    labels = d["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/name": "walletcluster-operator",
        "app.kubernetes.io/instance": "rel",
        "app.kubernetes.io/version": "0.1.0",
        "app.kubernetes.io/component": "operator",
        "app.kubernetes.io/part-of": "walletcluster",
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": "walletcluster-operator-0.1.0",
    }
    pod = d["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "walletcluster/operator:dev"
    assert container["args"] == ["--log-format=json", "--liveness=http://0.0.0.0:8080/healthz", "--all-namespaces"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert d["spec"]["strategy"] == {"type": "Recreate"}, "one operator at a time without peering"

    args = deployment("--set", "replicaCount=3", "--set", "watchNamespaces={a,b}")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert args[2:] == ["--namespace=a", "--namespace=b", "--peering=rel-walletcluster-operator"]


def test_notes_tell_what_to_do_next(helm: Helm) -> None:
    notes = helm.run("install", "op", str(OPERATOR), "--dry-run=client", "-n", "ops").stdout
    assert "helm install wallet charts/walletcluster" in notes and "kind: WalletCluster" in notes
    notes = helm.run("install", "wallet", str(LEDGER), "--dry-run=client", "-n", "ledgers").stdout
    assert "WARNING: no minters are set" in notes
    notes = helm.run(
        "install", "wallet", str(LEDGER), "--dry-run=client", "-n", "ledgers", "--set", f"minters[0]={MINTER}"
    ).stdout
    assert "WARNING" not in notes and "kubectl wallet status wallet -n ledgers" in notes


def test_the_crds_come_from_the_single_source_of_truth(helm: Helm, tmp_path: Path) -> None:
    """charts/walletcluster-operator/crds/{walletcluster,walletbackup}.yaml link to crds/, and helm
    follows the links: the packaged chart carries the very same bytes."""
    helm.run("package", str(OPERATOR), "--destination", str(tmp_path))
    for name in ("walletcluster.yaml", "walletbackup.yaml"):
        link = OPERATOR / "crds" / name
        assert link.is_symlink() and link.resolve() == (REPO / "crds" / name).resolve()
        with tarfile.open(tmp_path / "walletcluster-operator-0.1.0.tgz") as tgz:
            member = tgz.extractfile(f"walletcluster-operator/crds/{name}")
            assert member is not None
            assert member.read() == (REPO / "crds" / name).read_bytes()
    shown = helm.run("show", "crds", str(OPERATOR)).stdout
    for crd in (
        "walletclusters.ledger.walletcluster.io",
        "walletbackups.ledger.walletcluster.io",
        "kopfpeerings.kopf.dev",
    ):
        assert f"name: {crd}" in shown


def test_default_roles_include_walletclusters(helm: Helm, kubectl: Kubectl, namespace: str) -> None:
    """With the chart's aggregated ClusterRoles, Kubernetes' "edit" role may manage WalletClusters
    and WalletBackups and "view" may read them (checked by the API server's authorizer, as those users)."""
    aggregated = [
        d
        for d in render(helm, OPERATOR, namespace, "-s", "templates/aggregated-roles.yaml")
        if d["kind"] == "ClusterRole"
    ]
    names = [d["metadata"]["name"] for d in aggregated]
    try:
        for role in aggregated:
            kubectl.apply(role)
        for user, role in (("ed", "edit"), ("vi", "view")):
            kubectl.run(
                "create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}", f"--user={user}", "-n", namespace
            )

        def can(user: str, verb: str, subresource: str = "", kind: str = "walletclusters") -> bool:
            sub = [f"--subresource={subresource}"] if subresource else []
            what = f"{kind}.ledger.walletcluster.io"
            answer = kubectl.run("auth", "can-i", verb, what, *sub, "-n", namespace, "--as", user, check=False)
            return answer.stdout.strip() == "yes"

        wait_until("aggregation into the edit role", lambda: can("ed", "create"), timeout=30)
        assert can("ed", "delete") and can("ed", "patch", "scale")
        assert not can("ed", "patch", "status"), "the status is the operator's"
        wait_until("aggregation into the view role", lambda: can("vi", "list"), timeout=30)
        assert can("vi", "get", "status") and not can("vi", "create") and not can("vi", "patch", "scale")
        assert can("ed", "create", kind="walletbackups") and can("vi", "list", kind="walletbackups")
        assert not can("vi", "create", kind="walletbackups") and not can("ed", "patch", "status", "walletbackups")
    finally:
        kubectl.run("delete", "clusterrole", *names, "--ignore-not-found", check=False)


MONITORING = {
    "monitoring.podMonitor.enabled": "true",
    "monitoring.podMonitor.labels.release": "prometheus",
    "monitoring.prometheusRule.enabled": "true",
    "monitoring.grafanaDashboard.enabled": "true",
}


def test_monitoring_objects_are_off_by_default_and_carry_the_one_rules_file_and_dashboard(helm: Helm) -> None:
    assert {d["kind"] for d in render(helm, OPERATOR, "ops")} & {"PodMonitor", "PrometheusRule"} == set()
    lint = helm.run("lint", "--strict", str(OPERATOR), *sets(MONITORING))
    assert "0 chart(s) failed" in lint.stdout and "[WARNING]" not in lint.stdout, lint.stdout

    docs = {f"{d['kind']}/{d['metadata']['name']}": d for d in render(helm, OPERATOR, "ops", *sets(MONITORING))}
    ledgers, operator = (
        docs["PodMonitor/rel-walletcluster-operator-ledgers"],
        docs["PodMonitor/rel-walletcluster-operator"],
    )
    assert ledgers["metadata"]["labels"]["release"] == "prometheus"
    assert ledgers["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "walletcluster",
        "app.kubernetes.io/component": "ledger",
    }
    assert ledgers["spec"]["namespaceSelector"] == {"any": True}
    (endpoint,) = ledgers["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("http", "/metrics", "15s")
    assert endpoint["relabelings"] == [
        {"sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"], "targetLabel": "walletcluster"}
    ]
    assert operator["spec"]["podMetricsEndpoints"][0]["port"] == "liveness"
    assert operator["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "walletcluster-operator"

    rule = docs["PrometheusRule/rel-walletcluster-operator"]
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text()), "the rules file, unchanged"
    dashboard = docs["ConfigMap/rel-walletcluster-operator-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["walletcluster.json"]) == json.loads(DASHBOARD.read_text())

    watching = render(helm, OPERATOR, "ops", *sets({**MONITORING, "watchNamespaces": "{a,b}"}))
    (scoped,) = [d for d in watching if d["metadata"]["name"] == "rel-walletcluster-operator-ledgers"]
    assert scoped["spec"]["namespaceSelector"] == {"matchNames": ["a", "b"]}
