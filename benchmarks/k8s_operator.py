"""The operator's latency: Workflow apply -> execution started, and reconciling 200 entry CRs.

Against a real Kubernetes API server (KUBECONFIG, or the testbed the e2e suite
uses, started here), a Temporal dev server and ``moontide operator`` as a local
process, in one run:

- **apply -> started** (sequential): one Workflow CR at a time is created
  through the API; latency to the Temporal execution's start time (the
  server's clock, same machine) and to the CR's status showing the run
  (``status.runId``, read back through the API), p50/p99 over ``--n`` CRs.
- **burst**: ``--n`` Workflow CRs in one ``kubectl apply``; seconds until
  every one has started, and the CPU seconds the operator process used
  meanwhile (as for the 200 entry CRs below).
- **200 entry CRs**: an app of 1 client, 1 worker, 99 workflow.lua and 99
  function.lua entries in one ``kubectl apply``; seconds until every CR is
  Ready and the worker's bundle holds all 200 (the worker itself is
  Ready=False on the testbed, where no pod runs), from the apply's start and
  from its end; how many times the worker Deployment's template changed (its
  generation: rolls); then the seconds from changing one LuaWorkflow to the
  worker Deployment's new bundle hash.

Goals: p50 apply -> started <= 1 s (issue 5); 200 entry CRs applied -> all
Ready <= 2 s after the apply (issue 14). Not a test: prints a table
(``--readme`` also writes it into benchmarks/README.md).

    .venv/bin/python benchmarks/k8s_operator.py [--n 100] [--entries 200] [--entries-only] [--readme]
"""

from __future__ import annotations

import os
import sys

# This file is named operator.py, as the standard library's operator module: when it runs as a
# script, its directory leads sys.path and would shadow that module. Take it out first.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import statistics
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.append(str(REPO / "e2e"))
sys.path.append(str(REPO / "tests"))
sys.path.append(str(HERE))

import _common  # noqa: E402
import moontide_testing  # noqa: E402
import tools  # noqa: E402

MOONTIDE = str(Path(sys.executable).with_name("moontide"))


@contextlib.contextmanager
def cluster() -> Iterator[str]:
    """A kubeconfig: $KUBECONFIG, or the testbed started on free ports (stopped at the end)."""
    if os.environ.get("KUBECONFIG"):
        yield os.environ["KUBECONFIG"]
        return
    scripts = Path(os.environ.get("MOONTIDE_K8S_TESTBED_SCRIPTS") or REPO.parent / "shared" / "k8s-testbed")
    rundir = Path(tempfile.mkdtemp(prefix="moontide-bench-testbed-"))
    port = moontide_testing.free_port_range(3)
    subprocess.run(["bash", str(scripts / "start.sh"), str(rundir), str(port)], check=True, capture_output=True,
                   timeout=180)
    try:
        yield str(rundir / "kubeconfig")
    finally:
        subprocess.run(["bash", str(scripts / "stop.sh"), str(rundir)], check=False)


class Kubectl:
    def __init__(self, kubeconfig: str) -> None:
        self.bin = str(tools.binaries()["kubectl"])
        self.env = {**os.environ, "KUBECONFIG": kubeconfig}

    def __call__(self, *args: str, input: str | None = None) -> str:
        return subprocess.run([self.bin, *args], input=input, capture_output=True, text=True, check=True,
                              env=self.env, timeout=120).stdout

    def items(self, kind: str, ns: str) -> list[dict[str, Any]]:
        return list(json.loads(self(("get"), kind, "-n", ns, "-o", "json"))["items"])


def _app(n_entries: int) -> list[dict[str, Any]]:
    """CRs of an app with ``n_entries`` entries: a client, a worker, workflows and functions half and half."""
    crs: list[dict[str, Any]] = []

    def cr(kind: str, entry_id: str, **spec: Any) -> None:
        from moontide.tools.manifests import cr_name

        crs.append({"apiVersion": "moontide.io/v1alpha1", "kind": kind, "metadata": {"name": cr_name(entry_id)},
                    "spec": {"entryId": entry_id, **spec}})

    cr("TemporalClient", "bench:client")
    cr("TemporalWorker", "bench:worker", client="client", task_queue="bench")
    rest = n_entries - 2
    for i in range(rest - rest // 2):
        cr("LuaWorkflow", f"bench.wf:w{i}", method="main", modules=["funcs"],
           source=f"local function main(x)\n  return funcs.call('bench.fn:f{i % (rest // 2)}', x)\nend\n"
                  "return { main = main }\n")
    for i in range(rest // 2):
        cr("LuaFunction", f"bench.fn:f{i}", source=f"return function(x) return {{ n = {i}, x = x }} end\n")
    return crs


def _ready(cr: dict[str, Any], n: int) -> bool:
    """Ready for its generation; the worker: its bundle holds all ``n`` entries (on the testbed no pod runs, so
    it is Ready=False Progressing, waiting for one)."""
    conds = (cr.get("status") or {}).get("conditions") or []
    if cr["kind"] == "TemporalWorker":
        return any(c["type"] == "Ready" and f"{n} entries" in c.get("message", "")
                   and c.get("observedGeneration") == cr["metadata"]["generation"] for c in conds)
    return any(c["type"] == "Ready" and c["status"] == "True"
               and c.get("observedGeneration") == cr["metadata"]["generation"] for c in conds)


async def _until_all_ready(kubeconfig: str, ns: str, n: int) -> float:
    """The monotonic time when all ``n`` entry CRs are ready. Polls the worker alone every 50 ms until its bundle
    holds them all, then every CR every 100 ms (listing 200 CRs 20 times a second would load the API server
    the operator writes to)."""
    os.environ["KUBECONFIG"] = kubeconfig
    from moontide.k8s import kube
    from moontide.k8s.kinds import BY_KIND, ENTRY_RESOURCES

    deadline = time.monotonic() + 300
    async with kube.Kube() as k:
        while time.monotonic() < deadline:
            workers = await k.list(kube.custom_resource(BY_KIND["TemporalWorker"]), ns)
            if workers and _ready({**workers[0], "kind": "TemporalWorker"}, n):
                break
            await asyncio.sleep(0.05)
        while time.monotonic() < deadline:
            lists = await asyncio.gather(*(k.list(kube.custom_resource(r), ns) for r in ENTRY_RESOURCES))
            items = [{**i, "kind": r.kind} for r, found in zip(ENTRY_RESOURCES, lists) for i in found]
            if len(items) == n and all(_ready(i, n) for i in items):
                return time.monotonic()
            await asyncio.sleep(0.1)
    raise TimeoutError("every entry CR Ready")


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(check: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(interval)
    raise TimeoutError(what)


def _parse_time(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()


async def _sequential(kubeconfig: str, ns: str, temporal: str, n: int) -> tuple[list[float], list[float]]:
    """Create Workflow CRs one at a time; (apply -> started, apply -> status recorded) in seconds."""
    os.environ["KUBECONFIG"] = kubeconfig
    from temporalio.client import Client

    from moontide.k8s import kube
    from moontide.k8s.kinds import WORKFLOW

    client = await Client.connect(temporal)
    started, recorded = [], []
    async with kube.Kube() as k:
        for i in range(n):
            name = f"seq-{i}"
            body = {"apiVersion": "moontide.io/v1alpha1", "kind": "Workflow", "metadata": {"name": name},
                    "spec": {"workflow": "bench.wf:w0", "worker": "bench:worker", "input": [i]}}
            t0 = time.time()
            await k.create(body, namespace=ns)
            while True:
                cr = await k.get(kube.custom_resource(WORKFLOW), name, namespace=ns)
                status = cr.get("status") or {}
                if status.get("runId"):
                    recorded.append(time.time() - t0)
                    break
                await asyncio.sleep(0.005)
            desc = await client.get_workflow_handle(status["workflowId"]).describe()
            started.append(desc.start_time.timestamp() - t0)
    return started, recorded


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))]


def _entries_table(n: int, applied: float, ready: float, generations: int, change: float,
                   cpu: float) -> list[str]:
    return [
        f"| {n} entry CRs: kubectl apply | {applied:.2f} |",
        f"| {n} entry CRs: apply -> all Ready, worker bundle of {n} | {ready:.2f} |",
        f"| {n} entry CRs: apply done -> all Ready (goal <= 2 s) | {ready - applied:.2f} |",
        f"| {n} entry CRs: worker Deployment generations (rolls) | {generations} |",
        f"| {n} entry CRs: the operator's CPU seconds, apply -> all Ready | {cpu:.2f} |",
        f"| change one LuaWorkflow (of {n}) -> new Deployment hash | {change:.2f} |",
    ]


def _entries_rows(n: int, applied: float, ready: float, generations: int, change: float, cpu: float) -> int:
    print("\n".join(["| measure | seconds |", "|---|---|",
                     *_entries_table(n, applied, ready, generations, change, cpu)]))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="Workflow CRs (sequential, and again in a burst)")
    ap.add_argument("--entries", type=int, default=200, help="entry CRs in the reconcile test")
    ap.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    ap.add_argument("--entries-only", action="store_true", help="only the entry CRs part (no Workflows)")
    args = ap.parse_args()
    load_start = os.getloadavg()[0]

    with cluster() as kubeconfig, _common.dev_server() as temporal:
        kubectl = Kubectl(kubeconfig)
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "helm" / "moontide" / "crds"))
        kubectl("wait", "--for", "condition=established", "crd", "-l", "app.kubernetes.io/part-of=moontide")
        ns = f"bench-{uuid.uuid4().hex[:6]}"
        kubectl("create", "namespace", ns)
        log = open(Path(tempfile.gettempdir()) / f"moontide-bench-operator-{ns}.log", "wb")  # noqa: SIM115
        port = moontide_testing.free_port()
        op = subprocess.Popen([MOONTIDE, "operator", "-n", ns, "--temporal-address", temporal, "--health-port",
                               str(port), "--worker-image", "bench"], env=kubectl.env, stdout=log,
                              stderr=subprocess.STDOUT)
        try:
            def up() -> bool:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                        return r.status == 200
                except OSError:
                    return False

            _wait(up, 60, "the operator")
            # 1. reconcile N entry CRs
            crs = _app(args.entries)
            cpu0 = _cpu(op.pid)
            t0 = time.monotonic()
            kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                     "items": crs}))
            applied = time.monotonic() - t0

            reconcile_all = asyncio.run(_until_all_ready(kubeconfig, ns, len(crs))) - t0
            entries_cpu = _cpu(op.pid) - cpu0
            worker_name = next(c["metadata"]["name"] for c in crs if c["kind"] == "TemporalWorker")
            before = json.loads(kubectl("get", "deployment", worker_name, "-n", ns, "-o", "json"))
            generations = before["metadata"]["generation"]
            old_hash = before["spec"]["template"]["metadata"]["annotations"]["moontide.io/bundle-hash"]
            wf0 = next(c for c in crs if c["kind"] == "LuaWorkflow")
            t1 = time.monotonic()
            kubectl("patch", "luaworkflows", wf0["metadata"]["name"], "-n", ns, "--type", "merge", "-p",
                    json.dumps({"spec": {"source": wf0["spec"]["source"] + "-- changed\n"}}))

            def rolled() -> bool:
                dep = json.loads(kubectl("get", "deployment", worker_name, "-n", ns, "-o", "json"))
                return dep["spec"]["template"]["metadata"]["annotations"]["moontide.io/bundle-hash"] != old_hash

            _wait(rolled, 60, "the new bundle hash", interval=0.02)
            change = time.monotonic() - t1
            if args.entries_only:
                return _entries_rows(args.entries, applied, reconcile_all, generations, change, entries_cpu)
            # 2. sequential Workflow applies
            started, recorded = asyncio.run(_sequential(kubeconfig, ns, temporal, args.n))
            # 3. a burst
            burst = [{"apiVersion": "moontide.io/v1alpha1", "kind": "Workflow", "metadata": {"name": f"burst-{i}"},
                      "spec": {"workflow": "bench.wf:w1", "worker": "bench:worker", "input": [i]}}
                     for i in range(args.n)]
            cpu2 = _cpu(op.pid)
            t2 = time.monotonic()
            kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                     "items": burst}))
            burst_applied = time.monotonic() - t2

            def burst_done() -> bool:
                items = [w for w in kubectl.items("workflows.moontide.io", ns) if w["metadata"]["name"]
                         .startswith("burst-")]
                return len(items) == args.n and all((w.get("status") or {}).get("runId") for w in items)

            _wait(burst_done, 300, "the burst", interval=0.1)
            burst_s = time.monotonic() - t2
            burst_cpu = _cpu(op.pid) - cpu2
        finally:
            op.terminate()
            op.wait(30)
            log.close()
            with contextlib.suppress(Exception):
                kubectl("delete", "namespace", ns, "--wait=false")

    ms = lambda s: f"{s * 1000:.0f}"  # noqa: E731
    rows = [
        "| measure | p50 | p99 | mean |",
        "|---|---|---|---|",
        f"| Workflow apply -> execution started (ms, n={args.n}) | {ms(statistics.median(started))} | "
        f"{ms(_pct(started, 99))} | {ms(statistics.mean(started))} |",
        f"| Workflow apply -> run recorded in status (ms, n={args.n}) | {ms(statistics.median(recorded))} | "
        f"{ms(_pct(recorded, 99))} | {ms(statistics.mean(recorded))} |",
        "",
        "| measure | seconds |",
        "|---|---|",
        f"| {args.n} Workflow CRs: kubectl apply | {burst_applied:.2f} |",
        f"| {args.n} Workflow CRs: apply -> all started and recorded | {burst_s:.2f} |",
        f"| {args.n} Workflow CRs: the operator's CPU seconds, apply -> all recorded | {burst_cpu:.2f} |",
        *_entries_table(args.entries, applied, reconcile_all, generations, change, entries_cpu),
        "",
        f"- goal p50 apply -> started <= 1 s: {statistics.median(started) * 1000:.0f} ms — "
        f"{'met' if statistics.median(started) <= 1 else 'NOT met'}",
        f"- goal 200 entry CRs all Ready <= 2 s after the apply: {reconcile_all - applied:.2f} s — "
        f"{'met' if reconcile_all - applied <= 2 else 'NOT met'}",
        "",
        f"{dt.date.today().isoformat()}; load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end "
        f"(2 cores shared with other jobs: the apply's own time moves with it).",
    ]
    text = "\n".join(rows)
    print(text)
    if args.readme:
        _common.update_readme("operator", text, script="k8s_operator")
    return 0


if __name__ == "__main__":
    sys.exit(main())
