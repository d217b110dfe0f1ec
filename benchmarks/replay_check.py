"""Throughput of ``moontide replay`` (the check before a deploy) against the SDK's Replayer on native workflows.

Records one history of the two-call workflow per variant (Lua ``app:two_calls``
on a Moontide worker, ``NativeTwoCalls`` on a plain SDK worker), copies each
``--n`` times under distinct workflow and run IDs, and replays the copies:
the Lua ones through ``moontide.workflows.replay`` (what ``moontide replay``
runs: a report per history, the commands noted with their Lua lines), the
native ones through ``Replayer.workflow_replay_iterator``. Then the
examples' recorded histories (``tests/histories/orders``) the same way, ``--n``
in all. Histories per second (wall) and CPU per history of this process,
medians of ``--rounds`` rounds with the variants interleaved.

    .venv/bin/python benchmarks/replay_check.py [--n 1000] [--rounds 3] [--readme]
"""

from __future__ import annotations

import os
import sys

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

ROOT = Path(__file__).resolve().parents[1]


async def record(client: Any, variant: str, address: str, tmp: Path) -> tuple[Any, Path | None]:
    tq = c.new_task_queue(f"replaycheck-{variant}")
    app = c.write_app(tmp / tq, tq) if variant == "lua" else None
    lua_type, native_type = c.TYPES["two_calls"]
    memo = c.lua_memo(app, lua_type) if app else None
    with c.WorkerProc(variant, address, tq, app_dir=app):
        handle = await client.start_workflow(lua_type if app else native_type, 1, id=f"rc-{tq}", task_queue=tq,
                                             memo=memo)
        await handle.result()
    return await handle.fetch_history(), app


def copies(history: Any, n: int, tag: str) -> list[Any]:
    """``n`` copies of ``history`` with their own workflow and run IDs (one history per execution, as in life)."""
    from temporalio.client import WorkflowHistory

    out = []
    for i in range(n):
        events = [type(e)() for e in history.events]
        for new, old in zip(events, history.events):
            new.CopyFrom(old)
        events[0].workflow_execution_started_event_attributes.original_execution_run_id = f"{tag}-run-{i}"
        out.append(WorkflowHistory(f"{tag}-{i}", events))
    return out


async def replay_lua(app_dir: Path, histories: list[Any]) -> tuple[float, float]:
    from moontide.runtime import load
    from moontide.workflows import replay

    app = load(app_dir)
    c0, t0 = time.process_time(), time.perf_counter()
    bad = [r async for r in replay(app, histories) if not r.ok]
    t1, c1 = time.perf_counter(), time.process_time()
    if bad:
        raise RuntimeError(f"{len(bad)} did not replay: {bad[0]}")
    return t1 - t0, c1 - c0


async def replay_native(histories: list[Any]) -> tuple[float, float]:
    from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

    import _native

    replayer = Replayer(workflows=[_native.TwoCalls], workflow_runner=UnsandboxedWorkflowRunner())

    async def gen() -> Any:
        for h in histories:
            yield h

    c0, t0 = time.process_time(), time.perf_counter()
    async with replayer.workflow_replay_iterator(gen()) as results:
        failures = [r.replay_failure async for r in results if r.replay_failure is not None]
    t1, c1 = time.perf_counter(), time.process_time()
    if failures:
        raise RuntimeError(f"{len(failures)} did not replay: {failures[0]}")
    return t1 - t0, c1 - c0


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="histories per variant and round (default 1000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, variants interleaved; medians (default 3)")
    p.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    args = p.parse_args()

    from temporalio.client import Client

    from moontide.workflows import history_from_file

    load0 = c.load_average()
    with c.server_from_args(None) as address, tempfile.TemporaryDirectory(prefix="moontide-bench-") as tmp:
        client = await Client.connect(address)
        (lua_history, lua_app), (native_history, _) = [await record(client, v, address, Path(tmp))
                                                      for v in ("lua", "native")]
        assert lua_app is not None
        recorded = sorted((ROOT / "tests" / "histories" / "orders").glob("*.json"))
        orders = [h for i, path in enumerate(recorded)
                  for h in copies(history_from_file(path), -(-args.n // len(recorded)), f"orders{i}")][:args.n]
        runs = {
            "lua": lambda: replay_lua(lua_app, copies(lua_history, args.n, "lua")),
            "native": lambda: replay_native(copies(native_history, args.n, "native")),
            "orders": lambda: replay_lua(ROOT / "examples" / "orders", orders),
        }
        events = {"lua": len(lua_history.events), "native": len(native_history.events),
                  "orders": round(sum(len(h.events) for h in orders) / len(orders))}
        await runs["lua"]()  # warm-up: imports, compiled Lua
        samples: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
        names = list(runs)
        for i in range(args.rounds):
            for k in names[i % len(names):] + names[:i % len(names)]:
                wall, cpu = await runs[k]()
                samples[k].append((wall, cpu))
                print(f"round {i + 1}/{args.rounds} {k:7s} {args.n / wall:7.0f} histories/s, "
                      f"{cpu / args.n * 1000:.2f} ms CPU each", file=sys.stderr, flush=True)
    load1 = c.load_average()
    rate = {k: args.n / c.median([s[0] for s in v]) for k, v in samples.items()}
    cpu = {k: c.median([s[1] for s in v]) / args.n * 1000 for k, v in samples.items()}
    labels = {"lua": "Lua two-call workflow (`moontide replay`)", "native": "native two-call workflow (SDK Replayer)",
              "orders": "examples/orders histories (`moontide replay`)"}
    rows = [[labels[k], str(events[k]), f"{rate[k]:.0f}", f"{cpu[k]:.2f}",
             "" if k == "native" else f"{rate[k] / rate['native']:.2f}×"] for k in names]
    text = (c.table(["histories", "events each", "histories/s (median)", "CPU ms per history",
                     "rate / native"], rows)
            + f"\n\n`--n {args.n} --rounds {args.rounds}`; {c.stamp()}; {c.machine()}; "
              f"load average {load0} at start, {load1} at end.")
    print(text)
    if args.readme:
        c.update_readme("replay_check", text)


if __name__ == "__main__":
    asyncio.run(main())
