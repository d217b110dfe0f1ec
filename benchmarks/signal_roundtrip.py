"""Signal round trip: a Lua workflow against the same flow in native Python (sandboxed and not).

One long-lived workflow per variant loops: wait for a message, then reply
through an activity. A round trip is: the client sends a message (a Temporal
signal) -> the workflow's receive returns -> it schedules the ``reply``
activity -> the activity runs and completes a future in this process. The
latency is from just before the send to that future's completion.

- ``lua``: a Moontide app served by ``AppRuntime(serve=True)``; the client
  sends with ``AppRuntime.send`` (the public API), the workflow is
  ``process.inbox():receive()`` + ``funcs.call("reply", msg.id)``, and the
  function.lua ``reply`` logs ``reply:<id>``: a logging handler here completes
  the future.
- ``native`` / ``native-sandboxed``: the same loop with the Temporal Python SDK
  (signal handler + ``workflow.wait_condition`` + ``workflow.execute_activity``
  of a plain sync Python function that completes the future), on the
  unsandboxed runner and on the SDK's default sandboxed runner.

Every worker runs in this process, with ``build_worker``'s options (100
concurrent tasks, 2+2 pollers, 1 s sticky timeout, 100 activity threads),
against the same Temporal dev server, in one run. Round trips are sequential
and interleaved: one trip of each variant in turn, the first one rotating, so
any drift of the machine or the server is shared by all of them.

    /work/venv/bin/python benchmarks/signal_roundtrip.py [--n 200] [--readme]
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

# Moontide's funcs.call defaults, so both sides schedule the same activity.
TIMEOUT = timedelta(seconds=60)
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=30), maximum_attempts=5)


@activity.defn(name="bench_reply")
def reply(rid: int) -> bool:
    _complete(rid)
    return True


@workflow.defn(name="NativeEcho")
class NativeEcho:
    """Wait for a "ping" message, reply through an activity; a message with stop ends it."""

    def __init__(self) -> None:
        self.inbox: list[dict[str, Any]] = []

    @workflow.signal(name="ping")
    def ping(self, message: dict[str, Any]) -> None:
        self.inbox.append(message)

    @workflow.run
    async def run(self) -> int:
        n = 0
        while True:
            await workflow.wait_condition(lambda: bool(self.inbox))
            message = self.inbox.pop(0)
            if message.get("stop"):
                return n
            await workflow.execute_activity(reply, message["id"], start_to_close_timeout=TIMEOUT,
                                            retry_policy=RETRY)
            n += 1


LUA_LOOP = """
return function()
  local inbox = process.inbox()
  local n = 0
  while true do
    local msg = inbox:receive()
    if msg.stop then return n end
    funcs.call("reply", msg.id)
    n = n + 1
  end
end
"""
LUA_REPLY = """
return function(id)
  logger.info("reply:" .. id)
  return true
end
"""

#: Futures of round trips in flight, by id; completed from activity threads.
_waiting: dict[int, asyncio.Future[None]] = {}
_loop: asyncio.AbstractEventLoop | None = None


def _complete(rid: int) -> None:
    fut = _waiting.get(int(rid))
    if fut is not None and _loop is not None:
        _loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))


def _write_app(root: Any, task_queue: str) -> Any:
    import textwrap

    root.mkdir(parents=True, exist_ok=True)
    (root / "loop.lua").write_text(textwrap.dedent(LUA_LOOP).lstrip())
    (root / "reply.lua").write_text(textwrap.dedent(LUA_REPLY).lstrip())
    (root / "app.yaml").write_text("\n".join([
        'version: "1.0"', "namespace: app", "entries:",
        "  - name: client", "    kind: temporal.client", "    address: 127.0.0.1:1",
        "  - name: worker", "    kind: temporal.worker", "    client: client", f"    task_queue: {task_queue}",
        "  - name: loop", "    kind: workflow.lua", "    source: file://loop.lua", "    modules: [funcs, process]",
        "  - name: reply", "    kind: function.lua", "    source: file://reply.lua", "    modules: [logger]",
    ]) + "\n")
    return root


async def main() -> None:
    import argparse
    import concurrent.futures
    import logging
    import os
    import statistics
    import sys
    import tempfile
    import time
    import uuid
    from pathlib import Path

    from temporalio.client import Client
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common as c

    from moontide.runtime import AppRuntime

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200, help="measured round trips per variant (default 200)")
    p.add_argument("--warmup", type=int, default=20, help="uncounted round trips per variant first (default 20)")
    p.add_argument("--variants", default=",".join(c.VARIANTS), help="comma-separated subset of " + ", ".join(c.VARIANTS))
    p.add_argument("--address", help="an existing Temporal server (default: start an in-memory dev server)")
    p.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    args = p.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]

    global _loop
    _loop = asyncio.get_running_loop()

    class Replies(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith("reply:"):
                _complete(int(message.split(":", 1)[1].split()[0]))

    lua_log = logging.getLogger("moontide.lua")
    lua_log.setLevel(logging.INFO)
    lua_log.addHandler(Replies())
    lua_log.propagate = False
    logging.getLogger("moontide.workflow").setLevel(logging.CRITICAL)  # long history on purpose

    load = os.getloadavg()[0]
    ids = iter(range(1, 1 << 62))
    samples: dict[str, list[float]] = {v: [] for v in variants}

    with c.server_from_args(args.address) as address, tempfile.TemporaryDirectory(prefix="moontide-bench-") as tmp:
        client = await Client.connect(address)
        senders: dict[str, Any] = {}
        stack: list[Any] = []
        try:
            for v in variants:
                tq = c.new_task_queue(f"signal-{v}")
                if v == "lua":
                    rt = AppRuntime(_write_app(Path(tmp) / tq, tq), temporal=address, serve=True)
                    await rt.start()
                    stack.append(rt.stop)
                    pid = await rt.spawn("app:loop", None)

                    async def send_lua(message: dict[str, Any], rt: Any = rt, pid: Any = pid) -> None:
                        await rt.send(pid, "ping", message)

                    async def result_lua(rt: Any = rt, pid: Any = pid) -> Any:
                        return await rt.result(pid)

                    senders[v] = (send_lua, result_lua)
                else:
                    runner: dict[str, Any] = {"workflow_runner": UnsandboxedWorkflowRunner()} if v == "native" else {}
                    worker = Worker(
                        client, task_queue=tq, workflows=[NativeEcho], activities=[reply],
                        activity_executor=concurrent.futures.ThreadPoolExecutor(max_workers=100),
                        max_concurrent_workflow_tasks=100, max_concurrent_activities=100,
                        max_concurrent_workflow_task_polls=5, max_concurrent_activity_task_polls=2,
                        sticky_queue_schedule_to_start_timeout=timedelta(seconds=1), **runner)
                    task = asyncio.create_task(worker.run())

                    async def stop_worker(worker: Any = worker, task: Any = task) -> None:
                        await worker.shutdown()
                        await task

                    stack.append(stop_worker)
                    handle = await client.start_workflow(NativeEcho.run, id=f"echo-{v}-{uuid.uuid4().hex[:8]}",
                                                         task_queue=tq)

                    async def send_native(message: dict[str, Any], handle: Any = handle) -> None:
                        await handle.signal(NativeEcho.ping, message)

                    async def result_native(handle: Any = handle) -> Any:
                        return await handle.result()

                    senders[v] = (send_native, result_native)

            async def round_trip(v: str) -> float:
                rid = next(ids)
                fut = _waiting[rid] = _loop.create_future()  # type: ignore[union-attr]
                t0 = time.perf_counter()
                await senders[v][0]({"id": rid})
                await asyncio.wait_for(fut, 60)
                elapsed = time.perf_counter() - t0
                del _waiting[rid]
                return elapsed

            for v in variants:
                for _ in range(args.warmup):
                    await round_trip(v)
            # Interleaved trip by trip, the first variant rotating: a variant
            # measured right after another one's burst runs slower on the dev
            # server, so no variant gets a turn of its own.
            for i in range(args.n):
                k = i % len(variants)
                for v in variants[k:] + variants[:k]:
                    samples[v].append(await round_trip(v))
                if (i + 1) % 50 == 0 or i + 1 == args.n:
                    print(f"{i + 1}/{args.n}: " + ", ".join(
                        f"{v} p50 {statistics.median(samples[v]) * 1000:.2f} ms" for v in variants),
                        file=sys.stderr, flush=True)
            for v in variants:
                await senders[v][0]({"stop": True})
                done = await asyncio.wait_for(senders[v][1](), 60)
                if done != args.warmup + args.n:
                    raise RuntimeError(f"{v}: the workflow replied {done} times, expected {args.warmup + args.n}")
        finally:
            for stop in reversed(stack):
                await stop()

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, max(0, round(q * len(xs)) - 1))] * 1000

    stats = {v: {"p50": pct(samples[v], 0.50), "p99": pct(samples[v], 0.99),
                 "mean": statistics.mean(samples[v]) * 1000} for v in variants}
    rows = []
    for v in variants:
        s = stats[v]
        ratio = "" if v == "lua" or "lua" not in stats else \
            f"{stats['lua']['p50'] / s['p50']:.2f}× / {stats['lua']['p99'] / s['p99']:.2f}×"
        rows.append([c.label(v), f"{s['p50']:.2f}", f"{s['p99']:.2f}", f"{s['mean']:.2f}", ratio])
    out = c.table(["variant", "p50 ms", "p99 ms", "mean ms", "Lua / this (p50 / p99)"], rows)
    verdicts = []
    for v in ("native", "native-sandboxed"):
        if "lua" in stats and v in stats:
            ratio = stats["lua"]["p50"] / stats[v]["p50"]
            verdicts.append(f"- Lua p50 ≤ 1.1× {c.label(v)}: {ratio:.2f}× — {'met' if ratio <= 1.1 else 'NOT met'}")
    server = args.address or "dev server in memory"
    text = (f"{out}\n\n" + "\n".join(verdicts)
            + f"\n\n`--n {args.n} --warmup {args.warmup}`, {server}, workers and client in one process, "
            f"variants interleaved trip by trip; load average {load:.1f} at the start; {c.stamp()}; {c.machine()}.")
    print(text)
    if args.readme:
        c.update_readme("signal_roundtrip", text)


if __name__ == "__main__":
    # Run as the module `signal_roundtrip`, not `__main__`: the sandboxed
    # runner re-imports the workflow's module by name.
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import signal_roundtrip

    asyncio.run(signal_roundtrip.main())
