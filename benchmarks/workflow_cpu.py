"""Worker CPU per workflow: a Lua workflow against the same workflow in native Python (sandboxed and not).

Each workflow makes two activity calls in sequence (``funcs.call`` of a
function.lua entry on the Lua side; ``workflow.execute_activity`` of a plain
sync Python function, run on a thread pool of 100 like Moontide's blocking
functions (its pure ones run inline on the event loop), on the
native side). Every variant runs against the same Temporal dev server in one
run, each with its worker in a subprocess of its own; the figure is that
process's CPU time (user + system, all threads, from /proc/<pid>/stat) from
the first start to the last result, divided by the number of workflows. Each
repetition starts a fresh worker per variant and warms it up with a few
workflows (not counted). By default the variants run together: all workers at
once, all ``--n`` workflows per variant started at once and interleaved, so
load from anything else on the machine hits every variant alike, and Lua's
ratio is also given per repetition. ``--sequential`` runs one variant after
the other instead, each alone, for its own workflows/s.

    /work/venv/bin/python benchmarks/workflow_cpu.py [--n 200] [--reps 3] [--sequential] [--readme]
"""

from __future__ import annotations

import os
import sys

# A script's folder leads sys.path, so a benchmark named like a standard module
# (benchmarks/operator.py once did) would shadow it: look in benchmarks/ last.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

#: Goals from issue 2: Lua CPU per workflow over each native variant's.
GOALS = {"native": 1.0, "native-sandboxed": 0.6}


class Variant:
    """One variant's worker subprocess and what its workflows need (type, memo, task queue)."""

    def __init__(self, variant: str, address: str, tmp: Path, profile: Path | None = None) -> None:
        self.name = variant
        self.tq = c.new_task_queue(f"cpu-{variant}")
        app = c.write_app(tmp / self.tq, self.tq, variant=variant) if c.is_lua(variant) else None
        lua_type, native_type = c.TYPES["two_calls"]
        self.wf_type = c.TYPED["two_calls"] if variant == "lua-typed" else lua_type if c.is_lua(variant) else native_type
        self.memo = c.lua_memo(app, self.wf_type) if app else None
        self.worker = c.WorkerProc(variant, address, self.tq, app_dir=app, profile=profile)

    async def run(self, client: Any, n: int, prefix: str) -> None:
        results = await c.run_workflows(client, self.wf_type, list(range(n)), self.tq, memo=self.memo,
                                        prefix=f"{prefix}-{self.name}")
        bad = [r for i, r in enumerate(results) if r != i + 2]
        if bad:
            raise RuntimeError(f"{self.name}: wrong results, e.g. {bad[:3]}")


async def measure(client: Any, variants: list[str], address: str, n: int, warmup: int, tmp: Path, *,
                  together: bool, profile_dir: Path | None = None) -> dict[str, dict[str, float]]:
    """One repetition: a fresh worker per variant; worker CPU and wall time of ``n`` workflows each.

    ``together``: all variants' workers run at once and their workflows start
    interleaved, so whatever else loads the machine loads every variant alike.
    Otherwise one variant after the other.
    """
    out: dict[str, dict[str, float]] = {}

    async def timed(v: Variant) -> None:
        cpu0, t0 = v.worker.cpu_seconds(), time.perf_counter()
        await v.run(client, n, "cpu")
        t1, cpu1 = time.perf_counter(), v.worker.cpu_seconds()
        out[v.name] = {"cpu_ms": (cpu1 - cpu0) * 1000 / n, "wf_s": n / (t1 - t0), "wall_s": t1 - t0}

    groups = [variants] if together else [[v] for v in variants]
    for group in groups:
        vs = [Variant(v, address, tmp, profile_dir / f"{v}.pstats" if profile_dir else None) for v in group]
        try:
            if warmup:
                await asyncio.gather(*(v.run(client, warmup, "warm") for v in vs))
            await asyncio.gather(*(timed(v) for v in vs))
        finally:
            for v in vs:
                v.worker.close()
    return out


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200, help="workflows per variant and repetition (default 200)")
    p.add_argument("--reps", type=int, default=3, help="repetitions; figures are medians (default 3)")
    p.add_argument("--warmup", type=int, default=10, help="uncounted workflows per fresh worker (default 10)")
    p.add_argument("--variants", default=",".join(c.VARIANTS), help="comma-separated, from " + ", ".join(c.VARIANTS + c.EXTRA_VARIANTS))
    p.add_argument("--address", help="an existing Temporal server (default: start an in-memory dev server)")
    p.add_argument("--db-filename", help="start the dev server on this SQLite file instead of in memory")
    p.add_argument("--sequential", action="store_true", help="one variant after another, each alone (its own "
                   "workflows/s); default: all variants' workers at once, their workflows interleaved, so "
                   "whatever else loads the machine loads every variant alike (paired)")
    p.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    p.add_argument("--profile", metavar="DIR", help="after the measured runs, run each variant once more under "
                   "cProfile (all threads) and print where its CPU goes; DIR keeps the <variant>.pstats files")
    args = p.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    together = not args.sequential

    from temporalio.client import Client

    samples: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    load0 = c.load_average()
    with c.server_from_args(args.address, args.db_filename) as address, \
            tempfile.TemporaryDirectory(prefix="moontide-bench-") as tmp:
        client = await Client.connect(address)
        for rep in range(args.reps):
            order = variants[rep % len(variants):] + variants[:rep % len(variants)]
            got = await measure(client, order, address, args.n, args.warmup, Path(tmp), together=together)
            for v in order:
                samples[v].append(got[v])
                print(f"rep {rep + 1}/{args.reps} {v:17s} {got[v]['cpu_ms']:6.2f} ms CPU/workflow  "
                      f"{got[v]['wf_s']:6.1f} workflows/s", file=sys.stderr, flush=True)
        if args.profile:
            pdir = Path(args.profile)
            pdir.mkdir(parents=True, exist_ok=True)
            await measure(client, variants, address, args.n, args.warmup, Path(tmp), together=together,
                          profile_dir=pdir)
            for v in variants:  # the profile counts the warm-up workflows too
                print(f"\n== profile: {c.label(v)} ({pdir / f'{v}.pstats'})\n"
                      + c.profile_summary(pdir / f"{v}.pstats", args.n + args.warmup), file=sys.stderr)
    load1 = c.load_average()

    med = {v: {k: c.median([s[k] for s in samples[v]]) for k in ("cpu_ms", "wf_s")} for v in variants}

    def paired(v: str) -> float:
        """Median over repetitions of Lua's CPU over this variant's in the same repetition."""
        return c.median([a["cpu_ms"] / b["cpu_ms"] for a, b in zip(samples["lua"], samples[v])])

    rows = []
    for v in variants:
        cpu = [s["cpu_ms"] for s in samples[v]]
        rows.append([c.label(v), f"{med[v]['cpu_ms']:.1f}", f"{min(cpu):.1f}–{max(cpu):.1f}", f"{med[v]['wf_s']:.1f}",
                     "" if v == "lua" or "lua" not in med else f"{med['lua']['cpu_ms'] / med[v]['cpu_ms']:.2f}×",
                     "" if v == "lua" or "lua" not in med else f"{paired(v):.2f}×"])
    wf_s = "workflows/s (median)" if not together else "workflows/s (median, all variants at once)"
    out = c.table(["variant", "worker CPU ms/workflow (median)", f"range of {args.reps}", wf_s,
                   "Lua / this (medians)", "Lua / this (median of per-rep ratios)"], rows)
    verdicts = []
    for v, goal in GOALS.items():
        if "lua" in med and v in med:
            ratio = med["lua"]["cpu_ms"] / med[v]["cpu_ms"]
            verdicts.append(f"- Lua ≤ {goal}× {c.label(v)}: {ratio:.2f}× (per-rep ratios: "
                            + ", ".join(f"{a['cpu_ms'] / b['cpu_ms']:.2f}" for a, b in zip(samples["lua"], samples[v]))
                            + f") — {'met' if ratio <= goal else 'NOT met'}")
    server = args.address or (f"dev server on SQLite file {args.db_filename}" if args.db_filename
                              else "dev server in memory (no --db-filename)")
    mode = "variants together, workflows interleaved" if together else "variants one after another"
    text = (f"{out}\n\n" + "\n".join(verdicts) + f"\n\n`--n {args.n} --reps {args.reps} --warmup {args.warmup}"
            f"{'' if together else ' --sequential'}` ({mode}), {server}; {c.stamp()}; {c.machine()}; "
            f"load average {load0} at start, {load1} at end.")
    print(text)
    if args.readme:
        c.update_readme("workflow_cpu" if together else "workflow_cpu_sequential", text, script="workflow_cpu")


if __name__ == "__main__":
    asyncio.run(main())
