"""Worker memory per cached execution: 1,000 workflows parked in a durable timer, Lua against native.

For each variant a fresh worker subprocess (cache size ``--n`` + 100, so every
parked execution stays cached) runs a few warm-up workflows to completion
(same code, a 10 ms sleep), collects garbage and reads its VmRSS; then ``--n``
workflows start and park in a one-hour timer (``time.sleep("1h")`` in Lua,
``workflow.sleep(3600)`` in Python). Once the server shows every one of them
parked (first workflow task completed, no task pending), the worker collects
garbage again (Python ``gc.collect()``, a full Lua ``collectgarbage()`` on every
shared runtime, ``malloc_trim(0)``) and VmRSS is read again. The figure is
(after - before) / n: everything one cached execution costs the worker process,
Temporal's Rust core included.

    /work/venv/bin/python benchmarks/memory_cached.py [--n 1000] [--reps 3] [--readme]
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

GOAL_KIB = 64


async def wait_parked(client: Any, ids: list[str], timeout: float = 600) -> None:
    """Until every workflow has finished its first task and sits in its timer (server's view)."""
    pending = list(ids)
    deadline = time.monotonic() + timeout
    sem = asyncio.Semaphore(50)

    async def parked(wid: str) -> bool:
        async with sem:
            d = await client.get_workflow_handle(wid).describe()
        raw = d.raw_description
        return (d.status is not None and d.status.name == "RUNNING" and d.history_length >= 5
                and not raw.HasField("pending_workflow_task"))

    while pending:
        flags = await asyncio.gather(*(parked(w) for w in pending))
        pending = [w for w, ok in zip(pending, flags) if not ok]
        if pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} workflows did not park in {timeout:.0f} s (e.g. {pending[0]})")
            await asyncio.sleep(1)


async def measure(client: Any, variant: str, address: str, n: int, warmup: int, tmp: Path) -> dict[str, Any]:
    tq = c.new_task_queue(f"mem-{variant}")
    app = c.write_app(tmp / tq, tq, max_cached=n + 100, variant=variant) if c.is_lua(variant) else None
    lua_type, native_type = c.TYPES["parked"]
    wf_type = lua_type if c.is_lua(variant) else native_type
    memo = c.lua_memo(app, lua_type) if app else None
    short, long = ("10ms", "1h") if c.is_lua(variant) else (0.01, 3600)
    with c.WorkerProc(variant, address, tq, app_dir=app, max_cached=n + 100) as w:
        await c.run_workflows(client, wf_type, [short] * warmup, tq, memo=memo, prefix=f"warm-{variant}")
        await asyncio.sleep(1)
        gc0 = w.command("gc")["gc"]
        rss0 = w.rss_kib()
        t0 = time.perf_counter()
        ids = await c.start_workflows(client, wf_type, [long] * n, tq, memo=memo, prefix=f"park-{variant}")
        await wait_parked(client, ids)
        t1 = time.perf_counter()
        await asyncio.sleep(1)
        gc1 = w.command("gc")["gc"]
        rss1 = w.rss_kib()
    return {"kib": (rss1 - rss0) / n, "rss0": rss0, "rss1": rss1, "park_s": t1 - t0, "gc0": gc0, "gc1": gc1}


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="parked workflows per variant (default 1000)")
    p.add_argument("--reps", type=int, default=3, help="repetitions, a fresh worker each; figures are medians (default 3)")
    p.add_argument("--warmup", type=int, default=20, help="workflows run to completion before the first reading")
    p.add_argument("--variants", default=",".join(c.VARIANTS), help="comma-separated, from " + ", ".join(c.VARIANTS + c.EXTRA_VARIANTS))
    p.add_argument("--address", help="an existing Temporal server (default: start an in-memory dev server)")
    p.add_argument("--db-filename", help="start the dev server on this SQLite file instead of in memory")
    p.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    args = p.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]

    from temporalio.client import Client

    samples: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    load0 = c.load_average()
    with c.server_from_args(args.address, args.db_filename) as address, \
            tempfile.TemporaryDirectory(prefix="moontide-bench-") as tmp:
        client = await Client.connect(address)
        for rep in range(args.reps):
            order = variants[rep % len(variants):] + variants[:rep % len(variants)]
            for v in order:
                s = await measure(client, v, address, args.n, args.warmup, Path(tmp))
                samples[v].append(s)
                extra = {k: s["gc1"][k] for k in ("lua_runtimes", "lua_memory_kib", "live_executions") if k in s["gc1"]}
                print(f"rep {rep + 1}/{args.reps} {v:17s} {s['kib']:6.1f} KiB/execution  RSS {s['rss0'] / 1024:.1f} -> "
                      f"{s['rss1'] / 1024:.1f} MiB  parked in {s['park_s']:.1f} s  {extra}", file=sys.stderr, flush=True)
    load1 = c.load_average()

    med = {v: c.median([s["kib"] for s in samples[v]]) for v in variants}
    rows = []
    for v in variants:
        kib = [s["kib"] for s in samples[v]]
        last = samples[v][-1]
        rows.append([c.label(v), f"{med[v]:.1f}", f"{min(kib):.1f}–{max(kib):.1f}",
                     f"{last['rss0'] / 1024:.0f} -> {last['rss1'] / 1024:.0f}",
                     "" if v == "lua" or "lua" not in med else f"{med['lua'] / med[v]:.2f}×"])
    out = c.table(["variant", "worker KiB per cached execution (median)", f"range of {args.reps}",
                   "RSS MiB before -> after (last rep)", "Lua / this"], rows)
    notes = []
    if "lua" in med:
        notes.append(f"- Lua ≤ {GOAL_KIB} KiB per cached execution: {med['lua']:.1f} KiB — "
                     f"{'met' if med['lua'] <= GOAL_KIB else 'NOT met'}")
        g = samples["lua"][-1]["gc1"]
        if "lua_memory_kib" in g:
            live = g.get("live_executions", args.n)
            notes.append(f"- of which inside Lua (last rep, after a full collect): {g['lua_memory_kib']} KiB over "
                         f"{g['lua_runtimes']} shared runtimes for {live} live executions "
                         f"= {g['lua_memory_kib'] / max(live, 1):.1f} KiB each (runtime base included)")
    server = args.address or (f"dev server on SQLite file {args.db_filename}" if args.db_filename
                              else "dev server in memory (no --db-filename)")
    text = (f"{out}\n\n" + "\n".join(notes) + f"\n\n`--n {args.n} --reps {args.reps} --warmup {args.warmup}`, "
            f"max_cached_workflows = {args.n + 100}, {server}; {c.stamp()}; {c.machine()}; "
            f"load average {load0} at start, {load1} at end.")
    print(text)
    if args.readme:
        c.update_readme("memory_cached", text)


if __name__ == "__main__":
    asyncio.run(main())
