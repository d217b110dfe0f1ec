"""The operator on a real node: helm install -> first Workflow, a changed entry, failover, 100 Workflows, 200 entries.

On the cluster ``KUBECONFIG`` names, or the testbed of e2e/testbed.py
(``python e2e/testbed.py prepare`` first), started here and stopped at the end.
Everything runs in pods: the chart (default values but the local image and
the in-cluster Temporal dev server), the operator, the worker pods. Not a
test: prints a table (``--readme`` also writes it into benchmarks/README.md).

1. ``helm install`` -> the operator leads and the dev server is Ready ->
   examples/orders applied -> its worker pod Ready -> the first Workflow CR
   ``Succeeded``.
2. A changed LuaWorkflow (order_processor with one more field in its result)
   applied -> a Workflow created after it returns that field (Workflows made
   one after another until one does: today the change rolls the worker pods).
3. Failover: the operator pod deleted (``kubectl delete pod``: SIGTERM) and a
   Workflow CR created at that moment -> its execution started (Temporal's
   start time); the same after a crash (SIGKILL through the node's containerd,
   then the pod force-deleted: the Lease is not released, the standby waits it
   out, ``operator.leaderElection.leaseSeconds`` 15 by default). ``--failovers``
   rounds each.
4. ``--n`` Workflow CRs created at once (concurrent API requests) -> all
   ``Succeeded``; create -> execution started, p50/p99 (Temporal's start time:
   same clock, the node is this machine); the operator's memory (peak RSS
   from its /metrics, sampled, and its container's cgroup peak).
5. ``--entries`` entry CRs (a client, a worker, workflow.lua and function.lua
   entries half and half) created at once -> every Lua entry Ready at its
   generation; -> the TemporalWorker Ready (its pod serving the bundle of all).

    .venv/bin/python benchmarks/k8s_cluster.py [--n 100] [--entries 200] [--failovers 3] [--readme]
"""

from __future__ import annotations

import os
import sys

if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import re
import statistics
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.append(str(REPO / "e2e"))
sys.path.append(str(HERE))

import _common  # noqa: E402
import k8s  # noqa: E402
import testbed  # noqa: E402
from k8s_operator import _app, _pct  # noqa: E402

MOONTIDE = str(Path(sys.executable).with_name("moontide"))
ORDER = {"payment": {"amount": 1}, "wait": "10ms"}


def _workflow(name: str) -> dict[str, Any]:
    return {"apiVersion": "moontide.io/v1alpha1", "kind": "Workflow", "metadata": {"name": name},
            "spec": {"workflow": "app.workflows:order_processor", "worker": "app:temporal_worker", "input": [ORDER]}}


async def _create_all(kubeconfig: str, ns: str, docs: list[dict[str, Any]]) -> dict[str, float]:
    """Create the objects at once (one API request each, concurrently); name -> wall time its create returned."""
    os.environ["KUBECONFIG"] = kubeconfig
    from moontide.k8s import kube

    created: dict[str, float] = {}
    async with kube.Kube() as k:
        async def one(doc: dict[str, Any]) -> None:
            await k.create(doc, namespace=ns)
            created[doc["metadata"]["name"]] = time.time()

        await asyncio.gather(*(one(d) for d in docs))
    return created


def _start_times(address: str, wids: list[str]) -> dict[str, float]:
    async def go(client: Any) -> dict[str, float]:
        out = {}
        for wid in wids:
            desc = await client.get_workflow_handle(wid).describe()
            out[wid] = desc.start_time.timestamp()
        return out

    return dict(k8s.temporal_call(address, go))


def _phase(c: k8s.Cluster, ns: str, name: str) -> dict[str, Any]:
    return (c.get("workflows.moontide.io", name, ns) or {}).get("status") or {}


class _Memory:
    """Samples the operator pod's RSS (its /metrics, through the API server's proxy) every 0.5 s."""

    def __init__(self, c: k8s.Cluster, ns: str, pod: str) -> None:
        self.c, self.ns, self.pod = c, ns, pod
        self.peak = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> float:
        text = self.c.pod_get(self.ns, self.pod, "/metrics")
        m = re.search(r"^process_resident_memory_bytes ([0-9.e+]+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.rss())
            except Exception:  # noqa: BLE001 - a sample lost, not the run
                pass
            self.stop.wait(0.5)

    def __enter__(self) -> _Memory:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def _ready(cr: dict[str, Any]) -> bool:
    """Ready=True for its generation (on a real node a TemporalWorker is Ready only with a pod available)."""
    return any(c["type"] == "Ready" and c["status"] == "True"
               and c.get("observedGeneration") == cr["metadata"]["generation"]
               for c in (cr.get("status") or {}).get("conditions") or [])


def _changed_code(c: k8s.Cluster, ns: str, manifests: str, version: int, *, roll: bool) -> float:
    """Seconds from ``kubectl apply`` of the app with a changed order_processor (a compatible change: a
    ``version`` field in its result) until a Workflow created after it returns that field. Workflows are
    created one after another, each waited for, as a user retrying would. ``roll``: the same apply also
    changes the TemporalWorker (a pod annotation), which rolls its pods; else the pods reload in place."""
    changed = manifests.replace("return { charged = charge.id, status = status }",
                                f"return {{ charged = charge.id, status = status, version = {version} }}")
    assert changed != manifests, "order_processor.lua no longer ends as this benchmark expects"
    docs = list(yaml.safe_load_all(changed))
    if roll:
        worker = next(d for d in docs if d["kind"] == "TemporalWorker")
        worker["spec"].setdefault("deployment", {})["podAnnotations"] = {"bench/version": str(version)}
    t0 = time.time()
    c.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))
    for i in range(600):
        name = f"changed-{version}-{i}"
        c.apply(ns, [_workflow(name)])
        status = k8s.eventually(lambda name=name: (s := _phase(c, ns, name)).get("phase") in ("Succeeded", "Failed")
                                and s, timeout=300, what=f"Workflow {name}", interval=0.1)
        if (status.get("result") or {}).get("version") == version:
            return time.time() - t0
    raise RuntimeError("no Workflow ran the changed code")


def _cgroup_peak(c: k8s.Cluster, ns: str, pod: str) -> float | None:
    """The operator container's cgroup memory peak (cgroup v1 max_usage, or v2 memory.peak), bytes."""
    for f in ("/sys/fs/cgroup/memory/memory.max_usage_in_bytes", "/sys/fs/cgroup/memory.peak"):
        r = c.kubectl("exec", "-n", ns, pod, "--", "cat", f, check=False, timeout=30)
        if r.returncode == 0 and r.stdout.strip().isdigit():
            return float(r.stdout.strip())
    return None


def _failover(c: k8s.Cluster, rel: k8s.Release, name: str, crash: bool) -> float:
    """Seconds from the operator pod's deletion (or crash) to the start of a Workflow created at that moment."""
    (pod,) = rel.operator_pods()
    pod_name = pod["metadata"]["name"]
    t0 = time.time()
    if crash:
        c.crash(rel.namespace, pod_name)
        c.kubectl("delete", "pod", pod_name, "-n", rel.namespace, "--grace-period=0", "--force", "--wait=false",
                  check=False)
    else:
        c.kubectl("delete", "pod", pod_name, "-n", rel.namespace, "--wait=false")
    c.apply(rel.namespace, [_workflow(name)])
    status = k8s.eventually(lambda: _phase(c, rel.namespace, name).get("runId") and _phase(c, rel.namespace, name),
                            timeout=300, what=f"{name} started", interval=0.1)
    started = _start_times(rel.temporal, [status["workflowId"]])[status["workflowId"]]
    k8s.eventually(lambda: _phase(c, rel.namespace, name).get("phase") == "Succeeded", timeout=120,
                   what=f"{name} Succeeded")
    rel.wait_operator()
    return started - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="Workflow CRs created at once")
    ap.add_argument("--entries", type=int, default=200, help="entry CRs created at once")
    ap.add_argument("--failovers", type=int, default=3, help="rounds of each failover and of each code change")
    ap.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    args = ap.parse_args()
    rows: list[tuple[str, str]] = []
    notes: list[str] = []

    def row(what: str, seconds: float) -> None:
        rows.append((what, f"{seconds:.1f}"))
        print(f"{what}: {seconds:.1f} s", flush=True)

    with testbed.connect() as c:
        prefix = f"bench-{uuid.uuid4().hex[:5]}"
        entries_ns = f"{prefix}-entries"
        c.kubectl("create", "namespace", entries_ns)
        # 1. helm install -> first Workflow
        t0 = time.time()
        rel = k8s.install(c, mode="namespaced", prefix=prefix, image=os.environ.get("MOONTIDE_E2E_IMAGE")
                          or testbed.image_ref(), values={"watch.namespaces": [prefix, entries_ns]})
        try:
            t_ready = time.time()
            row("helm install -> operator leading, dev server Ready", t_ready - t0)
            text = subprocess.run([MOONTIDE, "manifests", str(REPO / "examples" / "orders")], capture_output=True,
                                  text=True, check=True).stdout
            c.kubectl("apply", "-n", rel.namespace, "-f", "-", input=text)
            worker = k8s.eventually(lambda: c.list("deployments", rel.namespace,
                                                   "app.kubernetes.io/component=worker"), timeout=120,
                                    what="the worker Deployment")[0]["metadata"]["name"]
            c.kubectl("rollout", "status", "deployment", worker, "-n", rel.namespace, "--timeout=300s", timeout=320)
            t_worker = time.time()
            row("... examples/orders applied -> worker pod Ready", t_worker - t_ready)
            c.apply(rel.namespace, [_workflow("first")])
            k8s.eventually(lambda: _phase(c, rel.namespace, "first").get("phase") == "Succeeded", timeout=300,
                           what="the first Workflow", interval=0.1)
            row("... Workflow applied -> Succeeded", time.time() - t_worker)
            row("helm install -> first Workflow Succeeded (total)", time.time() - t0)

            # 2. a changed Lua entry: apply -> a new execution runs the new code
            version = 1
            for roll in (False, True):
                took = []
                for _ in range(args.failovers):
                    version += 1
                    took.append(_changed_code(c, rel.namespace, text, version, roll=roll))
                what = ("... the same with the TemporalWorker changed too (pods roll)" if roll else
                        "a LuaWorkflow changed (kubectl apply) -> a new Workflow runs the new code (reloaded in place)")
                row(f"{what}, median of {len(took)}", statistics.median(took))
                notes.append(f"{what}: " + ", ".join(f"{t:.1f}" for t in took) + " s")

            # 3. failover
            for crash in (False, True):
                took = [_failover(c, rel, f"failover-{'crash' if crash else 'delete'}-{i}", crash)
                        for i in range(args.failovers)]
                what = ("operator crashed (SIGKILL, Lease not released)" if crash
                        else "operator pod deleted (SIGTERM)")
                row(f"{what} -> a new Workflow started, median of {len(took)}", statistics.median(took))
                notes.append(f"{what}: " + ", ".join(f"{t:.1f}" for t in took) + " s")

            # 4. a burst of Workflows
            (op,) = rel.operator_pods()
            op_name = op["metadata"]["name"]
            names = [f"burst-{i}" for i in range(args.n)]
            with _Memory(c, rel.namespace, op_name) as mem:
                before = mem.rss()
                t_burst = time.time()
                created = asyncio.run(_create_all(c.kubeconfig, rel.namespace, [_workflow(n) for n in names]))
                t_created = time.time()

                def all_done() -> list[dict[str, Any]] | None:
                    items = [w for w in c.list("workflows.moontide.io", rel.namespace)
                             if w["metadata"]["name"].startswith("burst-")]
                    phases = [(w.get("status") or {}).get("phase") for w in items]
                    return items if len(items) == args.n and all(p == "Succeeded" for p in phases) else None

                items = k8s.eventually(all_done, timeout=900, what="the burst to succeed", interval=0.5)
                t_done = time.time()
            wids = {w["metadata"]["name"]: w["status"]["workflowId"] for w in items}
            starts = _start_times(rel.temporal, list(wids.values()))
            lat = [starts[wids[n]] - created[n] for n in names]
            row(f"{args.n} Workflow CRs: created at once (API requests)", t_created - t_burst)
            row(f"{args.n} Workflow CRs: first create -> all Succeeded", t_done - t_burst)
            rows.append((f"{args.n} Workflow CRs: create -> execution started, p50 / p99 (s)",
                         f"{statistics.median(lat):.2f} / {_pct(lat, 99):.2f}"))
            peak = _cgroup_peak(c, rel.namespace, op_name)
            rows.append(("operator RSS before / peak during the burst (MiB)",
                         f"{before / 2**20:.0f} / {mem.peak / 2**20:.0f}"))
            if peak:
                rows.append(("operator container cgroup memory peak since its start (MiB)", f"{peak / 2**20:.0f}"))

            # 5. entry CRs
            crs = _app(args.entries)
            t_e = time.time()
            asyncio.run(_create_all(c.kubeconfig, entries_ns, crs))
            t_e_created = time.time()
            lua = {c_["metadata"]["name"] for c_ in crs if c_["kind"] in ("LuaWorkflow", "LuaFunction")}
            t_lua = None

            def entries_ready() -> bool:
                nonlocal t_lua
                items = c.list("moontide", entries_ns)
                ok = {i["metadata"]["name"] for i in items if _ready(i)}  # the worker: its pod available too
                if t_lua is None and lua <= ok:
                    t_lua = time.time()
                return len(ok) == len(crs)

            k8s.eventually(entries_ready, timeout=600, what="every entry CR Ready", interval=0.05)
            t_all = time.time()
            row(f"{args.entries} entry CRs: created at once (API requests)", t_e_created - t_e)
            row(f"{args.entries} entry CRs: first create -> every Lua entry Ready", (t_lua or t_all) - t_e)
            row(f"{args.entries} entry CRs: all created -> every Lua entry Ready (goal <= 2 s)",
                (t_lua or t_all) - t_e_created)
            row(f"{args.entries} entry CRs: first create -> all Ready (the worker's pod serving all)", t_all - t_e)
        finally:
            rel.remove()
            c.kubectl("delete", "namespace", entries_ns, "--wait=false", check=False)

    table = _common.table(["measure", "seconds"], rows)
    text = "\n".join([table, "", *(f"- {n}" for n in notes), "",
                      f"{_common.stamp()}; {_common.machine()}; load average at the end {_common.load_average()}."])
    print(text)
    if args.readme:
        _common.update_readme("k8s_cluster", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
