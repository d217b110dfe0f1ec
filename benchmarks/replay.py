"""Replay of a long history after cache eviction: a 1,000-activity Lua workflow against native Python.

Each variant's worker (a subprocess, as in the other benchmarks) runs one
workflow that calls a trivial activity ``--activities`` times in sequence;
the script then fetches the histories and replays each in this process with
``temporalio.worker.Replayer`` — what a worker does when an execution that
was evicted from its cache (or whose worker died) gets its next task: run
the workflow code again from the first event. The Lua history replays on
the class ``moontide.workflows.workflow_class`` makes for the app's code book
(registered under ``replay-<build id>``, the task queue a Replayer shows
workflow code).
One uncounted warm-up replay per variant, then ``--replays`` rounds with the
variants interleaved; figures are medians of wall time and of this process's
CPU time (all threads) per replay.

    /work/venv/bin/python benchmarks/replay.py [--activities 1000] [--replays 5] [--readme]
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
import concurrent.futures
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

GOAL = 1.2
REPLAY_BUILD_ID = "moontide-bench"


async def make_history(client: Any, variant: str, address: str, activities: int, tmp: Path) -> tuple[Any, Path | None]:
    tq = c.new_task_queue(f"replay-{variant}")
    app = c.write_app(tmp / tq, tq) if variant == "lua" else None
    lua_type, native_type = c.TYPES["many_calls"]
    wf_type = lua_type if variant == "lua" else native_type
    memo = c.lua_memo(app, lua_type) if app else None
    with c.WorkerProc(variant, address, tq, app_dir=app):
        t0 = time.perf_counter()
        handle = await client.start_workflow(wf_type, activities, id=f"replay-{tq}", task_queue=tq, memo=memo)
        result = await handle.result()
        took = time.perf_counter() - t0
    if result != activities:
        raise RuntimeError(f"{variant}: result {result!r}, expected {activities}")
    history = await handle.fetch_history()
    print(f"{variant}: ran {activities} activities in {took:.1f} s; history of {len(history.events)} events",
          file=sys.stderr, flush=True)
    return history, app


def replayer_for(variant: str, history: Any, app: Path | None, executor: Any = None) -> Any:
    from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

    kw: dict[str, Any] = {"workflow_task_executor": executor} if executor is not None else {}
    if variant == "lua":
        from moontide.runtime import load
        from moontide.workflows import CodeBook, WorkflowSettings, workflow_class

        assert app is not None
        # Register the book under the task queue the Replayer shows workflow code,
        # f"replay-{build_id}" (temporalio 1.35), not the history's: a Lua class
        # that looked its book up by task queue then finds it too. The worker's
        # own settings are the defaults (its entry sets only the cache size).
        cls = workflow_class(f"replay-{REPLAY_BUILD_ID}", CodeBook(load(app)), WorkflowSettings())
        c._work_around_shards_deadlock()
        return Replayer(workflows=[cls], build_id=REPLAY_BUILD_ID, **kw)
    import _native

    if variant == "native":
        return Replayer(workflows=[_native.ManyCalls], workflow_runner=UnsandboxedWorkflowRunner(),
                        build_id=REPLAY_BUILD_ID, **kw)
    return Replayer(workflows=[_native.ManyCalls], build_id=REPLAY_BUILD_ID, **kw)


async def replay_once(replayer: Any, history: Any) -> tuple[float, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    result = await replayer.replay_workflow(history)  # raises on a nondeterminism error
    t1, c1 = time.perf_counter(), time.process_time()
    if result.replay_failure is not None:
        raise RuntimeError(f"replay failed: {result.replay_failure}")
    return t1 - t0, c1 - c0


async def profile_replay(variant: str, history: Any, app: Path | None, out: Path, top: int) -> str:
    """One replay under cProfile (thread CPU clock): the loop thread plus the activation thread."""
    import cProfile
    import pstats

    profs: list[cProfile.Profile] = []
    lock = threading.Lock()

    def enable() -> None:
        prof = cProfile.Profile(time.thread_time_ns, 1e-9)
        with lock:
            profs.append(prof)
        prof.enable()

    def disable() -> None:
        profs[-1].disable()

    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, initializer=enable)
    replayer = replayer_for(variant, history, app, executor)
    main = cProfile.Profile(time.thread_time_ns, 1e-9)
    main.enable()
    await replayer.replay_workflow(history)
    main.disable()
    executor.submit(disable).result()
    executor.shutdown()
    stats = pstats.Stats(main)
    for prof in profs:
        stats.add(prof)
    stats.dump_stats(str(out))
    return c.profile_summary(out, 1, top=top)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--activities", type=int, default=1000, help="activities in the history (default 1000)")
    p.add_argument("--replays", type=int, default=5, help="measured replays per variant; medians (default 5)")
    p.add_argument("--variants", default=",".join(c.VARIANTS), help="comma-separated, from " + ", ".join(c.VARIANTS + c.EXTRA_VARIANTS))
    p.add_argument("--address", help="an existing Temporal server (default: start an in-memory dev server)")
    p.add_argument("--db-filename", help="start the dev server on this SQLite file instead of in memory")
    p.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    p.add_argument("--profile", metavar="DIR", help="also replay each history once under cProfile and print "
                   "where the time goes; DIR keeps the replay-<variant>.pstats files")
    args = p.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]

    from temporalio.client import Client

    load0 = c.load_average()
    with c.server_from_args(args.address, args.db_filename) as address, \
            tempfile.TemporaryDirectory(prefix="moontide-bench-") as tmp:
        client = await Client.connect(address)
        made = await asyncio.gather(*(make_history(client, v, address, args.activities, Path(tmp)) for v in variants))
        histories = dict(zip(variants, made))

        replayers = {v: replayer_for(v, *histories[v]) for v in variants}
        for v in variants:  # warm-up: imports, compiled Lua, sandbox module cache
            await replay_once(replayers[v], histories[v][0])
        samples: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
        for i in range(args.replays):
            for v in variants[i % len(variants):] + variants[:i % len(variants)]:
                samples[v].append(await replay_once(replayers[v], histories[v][0]))
                wall, cpu = samples[v][-1]
                print(f"replay {i + 1}/{args.replays} {v:17s} {wall * 1000:7.1f} ms wall {cpu * 1000:7.1f} ms CPU",
                      file=sys.stderr, flush=True)
        if args.profile:
            pdir = Path(args.profile)
            pdir.mkdir(parents=True, exist_ok=True)
            for v in variants:
                summary = await profile_replay(v, histories[v][0], histories[v][1], pdir / f"replay-{v}.pstats", 25)
                print(f"\n== profile of one replay: {c.label(v)}\n{summary.replace('ms/workflow', 'ms/replay')}",
                      file=sys.stderr)
        events = {v: len(histories[v][0].events) for v in variants}
    load1 = c.load_average()

    med = {v: (c.median([s[0] for s in samples[v]]), c.median([s[1] for s in samples[v]])) for v in variants}
    rows = []
    for v in variants:
        walls = [s[0] * 1000 for s in samples[v]]
        rows.append([c.label(v), str(events[v]), f"{med[v][0] * 1000:.0f}", f"{min(walls):.0f}–{max(walls):.0f}",
                     f"{med[v][1] * 1000:.0f}",
                     "" if v == "lua" or "lua" not in med else f"{med['lua'][0] / med[v][0]:.2f}×",
                     "" if v == "lua" or "lua" not in med else f"{med['lua'][1] / med[v][1]:.2f}×"])
    out = c.table(["variant", "history events", "replay ms wall (median)", f"range of {args.replays}",
                   "replay ms CPU (median)", "Lua / this (wall)", "Lua / this (CPU)"], rows)
    verdicts = []
    for v in ("native", "native-sandboxed"):
        if "lua" in med and v in med:
            ratio = med["lua"][0] / med[v][0]
            verdicts.append(f"- Lua ≤ {GOAL}× {c.label(v)} (wall): {ratio:.2f}× — {'met' if ratio <= GOAL else 'NOT met'}")
    server = args.address or (f"dev server on SQLite file {args.db_filename}" if args.db_filename
                              else "dev server in memory (no --db-filename)")
    text = (f"{out}\n\n" + "\n".join(verdicts) + f"\n\n`--activities {args.activities} --replays {args.replays}`, "
            f"{server}; {c.stamp()}; {c.machine()}; load average {load0} at start, {load1} at end.")
    print(text)
    if args.readme:
        c.update_readme("replay", text)


if __name__ == "__main__":
    asyncio.run(main())
