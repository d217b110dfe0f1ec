"""Processes on one process.host: messages/s, spawn+exit/s, memory per idle process (issue 4).

Not a test: it prints a table (and with ``--readme`` writes it into its section
of benchmarks/README.md). Everything runs in this one Python process, on one
asyncio loop, with real lupa:

- **messages/s**: a ``source`` process sends N messages (``{seq = i}``, a table,
  so each one is encoded to JSON in the sender and decoded into a fresh table
  in the receiver) to a ``sink`` process that receives them; timed from the
  spawn of both to the sink's result. Also the same with a number as payload,
  and request/reply round trips between two processes.
- **spawn+exit/s**: a Lua process spawns N children (``spawn_monitored``, in
  batches of 500) that return at once, and waits for every ``pid.exit``.
- **memory per idle process**: RSS growth over N processes blocked in
  ``process.inbox():receive()`` (after a warm-up, garbage collected), and the
  Lua heap growth of their runtimes.

Wall-clock rates depend on what else the machine runs; the CPU time of this
process is measured too, and the load average is printed with the results.

    /work/venv/bin/python benchmarks/processes.py --readme
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import re
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
sys.path.insert(0, str(HERE.parent / "operator"))

from moontide.processes import ProcessSystem  # noqa: E402
from moontide.runtime import load  # noqa: E402

GOAL_MESSAGES = 50_000
GOAL_IDLE_KIB = 64

APP = {
    "app.yaml": """
        version: "1.0"
        namespace: bench
        entries:
          - name: host
            kind: process.host
          - {name: sink, kind: process.lua, source: file://sink.lua, modules: [process]}
          - {name: source, kind: process.lua, source: file://source.lua, modules: [process]}
          - {name: echo, kind: process.lua, source: file://echo.lua, modules: [process]}
          - {name: client, kind: process.lua, source: file://client.lua, modules: [process]}
          - {name: spawner, kind: process.lua, source: file://spawner.lua, modules: [process]}
          - {name: noop, kind: process.lua, source: file://noop.lua, modules: [process]}
          - {name: idle, kind: process.lua, source: file://idle.lua, modules: [process]}
    """,
    "sink.lua": """
        return function(n)
          local inbox = process.inbox()
          for _ = 1, n do inbox:receive() end
          return n
        end
    """,
    "source.lua": """
        return function(sink, n, scalar)
          for i = 1, n do process.send(sink, "m", scalar and i or { seq = i }) end
          return n
        end
    """,
    "echo.lua": """
        return function(n)
          local inbox = process.inbox()
          for _ = 1, n do
            local msg = inbox:receive()
            process.send(msg:from(), "pong", { seq = msg.seq })
          end
        end
    """,
    "client.lua": """
        return function(echo, n)
          local inbox = process.inbox()
          for i = 1, n do
            process.send(echo, "ping", { seq = i })
            inbox:receive()
          end
          return n
        end
    """,
    "spawner.lua": """
        return function(n, batch)
          local events = process.events()
          local done = 0
          while done < n do
            local k = math.min(batch, n - done)
            for _ = 1, k do process.spawn_monitored("noop", "host") end
            for _ = 1, k do events:receive() end
            done = done + k
          end
          return done
        end
    """,
    "noop.lua": "return function() return true end",
    "idle.lua": """
        return function()
          return process.inbox():receive():topic()
        end
    """,
}


def write_app(root: Path) -> Path:
    for name, text in APP.items():
        (root / name).write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def trim() -> None:
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


async def timed(coro: Any) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for awaiting ``coro``."""
    w, c = time.perf_counter(), time.process_time()
    await coro
    return time.perf_counter() - w, time.process_time() - c


async def messages(system: ProcessSystem, n: int, *, scalar: bool) -> tuple[float, float]:
    async def run() -> None:
        sink = system.spawn("bench:sink", "bench:host", n)
        system.spawn("bench:source", "bench:host", sink, n, scalar)
        assert await system.result(sink) == n
    return await timed(run())


async def round_trips(system: ProcessSystem, n: int) -> tuple[float, float]:
    async def run() -> None:
        echo = system.spawn("bench:echo", "bench:host", n)
        assert await system.result(system.spawn("bench:client", "bench:host", echo, n)) == n
    return await timed(run())


async def spawn_exit(system: ProcessSystem, n: int) -> tuple[float, float]:
    async def run() -> None:
        assert await system.result(system.spawn("bench:spawner", "bench:host", n, 500)) == n
    return await timed(run())


async def idle_memory(system: ProcessSystem, n: int) -> tuple[float, float, float]:
    """(RSS KiB per process, Lua heap KiB per process, seconds to spawn them all)."""
    host = system.host("bench:host")
    warm = [system.spawn("bench:idle", "bench:host") for _ in range(300)]
    for pid in warm:
        await system.send(pid, "bye")
        await system.result(pid)
    await asyncio.sleep(0.1)
    trim()
    before, lua_before = rss(), _lua_heap(host)
    t = time.perf_counter()
    pids = [system.spawn("bench:idle", "bench:host") for _ in range(n)]
    while host._ready or not all(host.actors[p].activated for p in pids[-100:]):
        await asyncio.sleep(0.01)
    took = time.perf_counter() - t
    trim()
    per_rss = (rss() - before) / n / 1024
    per_lua = (_lua_heap(host) - lua_before) / n / 1024
    for pid in pids:
        await system.send(pid, "bye")
    for pid in pids:
        await system.result(pid)
    return per_rss, per_lua, took


def _lua_heap(host: Any) -> int:
    runtimes = list(host.shards._live)
    for rt in runtimes:
        rt.collect_garbage()
    return sum(rt.memory_used() for rt in runtimes)


async def main(args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        app = load(write_app(Path(tmp)))
        system = ProcessSystem(app)
        await system.start()
        try:
            load_avg = os.getloadavg()[0]
            await messages(system, 2000, scalar=False)  # warm-up: runtimes, modules, compiled code
            results: list[tuple[str, float, float, str]] = []

            def best(samples: list[tuple[float, float]], n: int) -> tuple[float, float]:
                return max(n / w for w, _ in samples), max(n / c for _, c in samples)

            table = [await messages(system, args.messages, scalar=False) for _ in range(args.repeat)]
            msg_wall, msg_cpu = best(table, args.messages)
            results.append(("messages/s, table payload `{seq = i}`", msg_wall, msg_cpu, f"≥ {GOAL_MESSAGES:,}"))
            scal = [await messages(system, args.messages, scalar=True) for _ in range(args.repeat)]
            results.append(("messages/s, number payload", *best(scal, args.messages), ""))
            rt = [await round_trips(system, args.messages // 4) for _ in range(args.repeat)]
            results.append(("request/reply round trips/s", *best(rt, args.messages // 4), ""))
            sp = [await spawn_exit(system, args.spawns) for _ in range(args.repeat)]
            results.append(("spawn+exit/s (spawn_monitored, pid.exit)", *best(sp, args.spawns), ""))
            per_rss, per_lua, took = await idle_memory(system, args.idle)
        finally:
            await system.stop()

    rows = [[name, f"{wall:,.0f}", f"{cpu:,.0f}", goal] for name, wall, cpu, goal in results]
    rows.append([f"memory per idle process (RSS growth / {args.idle:,})", f"{per_rss:.1f} KiB", "",
                 f"≤ {GOAL_IDLE_KIB} KiB"])
    rows.append(["  of which Lua heap (runtimes' allocation growth)", f"{per_lua:.1f} KiB", "", ""])
    rows.append([f"spawning {args.idle:,} idle processes until all wait", f"{took:.2f} s", "", ""])
    out = [_table(["measure", "wall", "per CPU-second", "goal"], rows), ""]
    met_msgs = msg_wall >= GOAL_MESSAGES
    out.append(f"- messages/s ≥ {GOAL_MESSAGES:,}: {msg_wall:,.0f} wall, {msg_cpu:,.0f} per CPU-second — "
               + ("met" if met_msgs else ("met per CPU-second, not in wall time on this loaded machine"
                                          if msg_cpu >= GOAL_MESSAGES else "not met")))
    out.append(f"- memory per idle process ≤ {GOAL_IDLE_KIB} KiB: {per_rss:.1f} KiB — "
               + ("met" if per_rss <= GOAL_IDLE_KIB else "not met"))
    out.append("")
    out.append(f"best of {args.repeat} runs; {args.messages:,} messages, {args.spawns:,} spawns, "
               f"{args.idle:,} idle processes; one process, one asyncio loop; load average {load_avg:.1f} at the "
               f"start; {time.strftime('%Y-%m-%d')}; {os.cpu_count()} cores ({_cpu()}), {platform.system()} "
               f"{platform.release()}, Python {platform.python_version()}, lupa {_version('lupa')}.")
    return "\n".join(out)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    cells = [headers] + rows
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in rows)])


def _cpu() -> str:
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


SECTION = """## Processes (issue 4)

`benchmarks/processes.py`: Lua processes on one `process.host`, in one Python
process on one asyncio loop, real lupa. Messages between two processes (a
`source` sending N messages to a `sink`: JSON-encoded in the sender's sandbox,
decoded into a fresh table in the receiver's), request/reply round trips,
spawn+exit (a Lua process spawning monitored children that return at once and
waiting for each `pid.exit`), and the memory of N processes blocked in
`process.inbox():receive()`. Wall-clock rates move with the machine's load;
the CPU time of the process is measured too. Goals (issue 4): ≥ 50,000
messages/s, ≤ 64 KiB per idle process.

    /work/venv/bin/python benchmarks/processes.py --readme
"""


def update_readme(text: str) -> None:
    begin, end = "<!-- processes:begin (generated by benchmarks/processes.py) -->", "<!-- processes:end -->"
    content = README.read_text() if README.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(content):
        content = pattern.sub(lambda _: block, content)
    else:
        content = content.rstrip("\n") + "\n\n" + SECTION + "\n" + block + "\n"
    README.write_text(content)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--spawns", type=int, default=20_000)
    p.add_argument("--idle", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    a = p.parse_args()
    text = asyncio.run(main(a))
    print(text)
    if a.readme:
        update_readme(text)
