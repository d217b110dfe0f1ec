"""helm/moontide/README.md and values.schema.json, generated from the comments in values.yaml.

Each value is documented where it is set: a ``# -- text`` comment (continued
by more ``#`` lines) right above the key, as helm-docs reads them.
``python -m moontide.tools.chartdocs [CHART_DIR]`` (default ``helm/moontide``
under the current directory: the chart lives in the repository, not in the
installed package) rewrites both files; tests/controller/test_helm_chart.py
fails when they drift from values.yaml.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = ["descriptions", "main", "readme", "schema", "write"]

_KEY = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*):")


def descriptions(text: str) -> dict[str, str]:
    """``{dotted.key: description}`` from ``# --`` comments above keys."""
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    collecting = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending, collecting = [stripped[4:].strip()], True
            continue
        if stripped.startswith("#"):
            if collecting:
                pending.append(stripped[1:].strip())
            continue
        m = _KEY.match(line)
        if not m:
            collecting = False
            continue
        indent, key = len(m.group(1)), m.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if pending:
            out[".".join(k for _, k in stack)] = " ".join(p for p in pending if p)
        pending, collecting = [], False
    return out


def _type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _leaves(values: dict[str, Any], docs: dict[str, str], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in docs:
            out += _leaves(value, docs, f"{path}.")
        else:
            out.append((path, value))
    return out


def _node(value: Any, path: str, docs: dict[str, str]) -> dict[str, Any]:
    node: dict[str, Any] = {"type": _type(value)}
    if path in docs:
        node["description"] = docs[path]
    if isinstance(value, dict) and value and path not in docs:
        node["properties"] = {k: _node(v, f"{path}.{k}", docs) for k, v in value.items()}
        node["additionalProperties"] = False
    if path.endswith("pullPolicy"):
        node["enum"] = ["", "Always", "IfNotPresent", "Never"]
    if path == "operator.replicas":
        node["minimum"] = 0
    return node


def schema(text: str) -> dict[str, Any]:
    """A JSON schema of the values: types from the defaults, descriptions from the comments."""
    values = yaml.safe_load(text)
    docs = descriptions(text)
    return {
        "$schema": "https://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {k: _node(v, k, docs) for k, v in values.items()},
        "additionalProperties": False,
    }


def readme(text: str) -> str:
    values = yaml.safe_load(text)
    docs = descriptions(text)
    rows = []
    for path, value in _leaves(values, docs):
        shown = json.dumps(value) if not isinstance(value, (dict, list)) or len(json.dumps(value)) < 60 \
            else "see values.yaml"
        doc = docs.get(path, "").replace("|", "\\|")
        rows.append(f"| `{path}` | {_type(value)} | `{shown}` | {doc} |")
    return _README.format(rows="\n".join(rows))


_README = """# moontide (Helm chart)

<!-- generated from values.yaml by `python -m moontide.tools.chartdocs`; do not edit -->

Durable Lua workflows on Temporal, operated on Kubernetes: the moontide.io
CRDs, the operator (Kopf) with least-privilege RBAC, and optionally a Temporal
dev server to try it out. See docs/kubernetes.md in the repository.

```sh
helm install moontide helm/moontide -n moontide-system --create-namespace \\
  --set temporal.devServer.enabled=true
moontide manifests examples/orders | kubectl apply -n moontide-system -f -
```

CRDs are in `crds/`: Helm installs them with the chart but never upgrades or
deletes them. After upgrading the chart, apply them yourself:
`kubectl apply --server-side -f helm/moontide/crds/`.

The operator's RBAC is namespaced by default (a Role in each of
`watch.namespaces`, or the release namespace); `watch.allNamespaces=true`
makes it a ClusterRole. In both modes a small ClusterRole lets Kopf list and
watch CustomResourceDefinitions (and, with given namespaces, Namespaces).
The operator never deletes anything (owner references do), reads Secrets only
to start Workflows through a TemporalClient with
`apiKeySecretRef`/`tlsSecretRef`, applies the worker ServiceAccount (no
permissions, no token) where its pods run, and its Lease Role names one Lease.
The rules and why each is there: `templates/_rbac.tpl`.

## Uninstalling

`helm uninstall` first runs a pre-delete hook: a Job `<fullname>-cleanup`
running `moontide operator-cleanup`, with a ServiceAccount and rules of its
own that exist only while it runs. It

1. scales the operator to 0 and waits for its pods to go (nothing is
   recreated after this);
2. deletes the worker and service Deployments the operator made in the
   watched namespaces: no Moontide pod keeps running;
3. takes the finalizer `moontide.io/finalizer` off every Workflow there, so
   deleting a Workflow or its namespace never waits for an operator that is
   gone;
4. deletes the leader-election Lease.

Then Helm deletes the operator, its ServiceAccount and RBAC, the metrics
Service and the Temporal dev server (and its executions: its state is an
emptyDir).

It leaves:

- the CRDs (Helm never deletes a chart's `crds/`) and every custom resource:
  the entries, and the Workflows with their status;
- the bundle and code ConfigMaps and the worker ServiceAccount the operator
  made: they are owned by the TemporalWorker and ProcessService CRs, so the
  garbage collector deletes them with those CRs; the code history lets
  executions started before an uninstall replay on the workers of the next
  install;
- the executions on your own Temporal server, running ones included (with no
  worker they wait). To have each cancelled or terminated by its
  `deletionPolicy`, delete the Workflows *before* uninstalling, while the
  operator runs.

Everything, in this order:

```sh
kubectl delete workflows.moontide.io --all -n NAMESPACE    # the operator applies each deletionPolicy
helm uninstall moontide -n moontide-system
kubectl delete moontide --all -n NAMESPACE                 # the entry CRs, and what the operator made for them
kubectl delete crd -l app.kubernetes.io/part-of=moontide   # the CRDs, with any CR still in the cluster
```

A namespace can be deleted at any point after the uninstall: nothing in it
waits for the operator. Should the Job fail (`kubectl logs
job/<fullname>-cleanup`), the uninstall stops there with the operator scaled
to 0; running it again is safe. `helm uninstall --no-hooks` skips the Job (run
`moontide operator-cleanup -n NAMESPACE` yourself then), and
`uninstall.cleanup=false` renders none.

## Values

| key | type | default | description |
|---|---|---|---|
{rows}
"""


def write(chart: Path) -> None:
    """Rewrite ``chart``'s README.md and values.schema.json from its values.yaml."""
    text = (chart / "values.yaml").read_text()
    (chart / "values.schema.json").write_text(json.dumps(schema(text), indent=2) + "\n")
    (chart / "README.md").write_text(readme(text))


def main(argv: list[str]) -> int:
    chart = Path(argv[0] if argv else "helm/moontide")
    if not (chart / "values.yaml").is_file():
        print(f"chartdocs: no {chart / 'values.yaml'}: give the chart's directory (run from the repository root)",
              file=sys.stderr)
        return 2
    write(chart)
    print(f"chartdocs: wrote {chart / 'README.md'} and {chart / 'values.schema.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
