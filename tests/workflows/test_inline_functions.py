"""Pure functions run inline on the worker's event loop; the others on threads (issue 2, worker CPU).

A function.lua entry whose modules (imports included) are all pure runs in
the activity itself, on the event loop; one that may block (time, http,
funcs, process) runs on the ``moontide-fn`` thread pool. Where a call ran is
read from the thread that wrote its log lines (a logging handler), so nothing
here depends on timing. Each app is served by real in-process workers
against the session's dev server; every call is a real Temporal activity.
"""

from __future__ import annotations

import asyncio
import json
import logging
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity

from moontide_testing import TEMPORAL_ENTRIES, running
from moontide.workflows import _functions

#: The workflow every test runs: one funcs.call, its value or error as a table.
CALLER = """
return function(id, opts, ...)
  local f = funcs.new():with_options(opts)
  local v, err = f:call(id, ...)
  if err then return {kind = err:kind(), message = err:message()} end
  return {value = v}
end
"""
NO_RETRY = {"retry_policy": {"maximum_attempts": 1}}


def write_app(make_app: Callable[..., Path], functions: dict[str, tuple[str, str]], *,
              workflows: dict[str, str] | None = None, worker_options: dict[str, Any] | None = None) -> Path:
    """Workflows ``app:caller`` (and ``workflows``), functions ``app:<name>`` from (modules, source)."""
    files: dict[str, str] = {}
    lines = [textwrap.dedent(TEMPORAL_ENTRIES).strip("\n")]
    if worker_options:
        lines.append(f"    worker_options: {json.dumps(worker_options)}")
    entries = [(name, "workflow.lua", "[funcs]", src) for name, src in {"caller": CALLER, **(workflows or {})}.items()]
    entries += [(name, "function.lua", modules, src) for name, (modules, src) in functions.items()]
    for name, kind, modules, src in entries:
        files[f"{name}.lua"] = textwrap.dedent(src).lstrip("\n")
        lines.append(f"  - name: {name}\n    kind: {kind}\n    source: file://{name}.lua\n    modules: {modules}")
    files["app.yaml"] = "\n".join(lines) + "\n"
    return make_app(files)


class Seen(logging.Handler):
    """Lua log lines with the thread that wrote them and what the activity context said there."""

    def __init__(self, *, heartbeat: bool = False) -> None:
        super().__init__()
        self.heartbeat = heartbeat
        self.lines: list[tuple[str, str, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        in_activity = activity.in_activity()
        if in_activity and self.heartbeat:
            activity.heartbeat(record.getMessage())
        self.lines.append((record.getMessage(), threading.current_thread().name,
                           activity.info().activity_type if in_activity else None))

    def messages(self) -> list[str]:
        return [m for m, _, _ in self.lines]

    def threads(self, message: str) -> list[str]:
        return [t for m, t, _ in self.lines if m == message]


@pytest.fixture
def seen() -> Iterator[Seen]:
    handler = Seen()
    logger = logging.getLogger("moontide.lua")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


async def call(rt: Any, fid: str, *args: Any, opts: dict[str, Any] | None = None) -> Any:
    pid = await rt.spawn("app:caller", None, fid, opts or NO_RETRY, *args)
    return await rt.result(pid)


def on_loop(thread: str) -> bool:
    return thread == threading.current_thread().name  # the test's loop runs the in-process workers


async def test_a_pure_function_runs_inline_and_an_impure_one_on_a_thread(
        make_app: Callable[..., Path], temporal_address: str, seen: Seen) -> None:
    app = write_app(make_app, {
        "pure": ("[logger, json]", 'return function(x) logger.info("pure " .. json.encode(x)) return x + 1 end'),
        # time may block: never inline, even when this call would not
        "impure": ("[logger, time]", 'return function(x) logger.info("impure " .. x) return x + 1 end'),
    })
    async with running(app, temporal_address) as rt:
        assert await call(rt, "app:pure", 1) == {"value": 2}
        assert await call(rt, "app:impure", 1) == {"value": 2}
    [pure] = seen.threads("pure 1")
    [impure] = seen.threads("impure 1")
    assert on_loop(pure), pure
    assert impure.startswith("moontide-fn"), impure
    # activity.info() answers in both places
    assert [(m, a) for m, _, a in seen.lines] == [("pure 1", "app:pure"), ("impure 1", "app:impure")]


async def test_an_imported_impure_library_keeps_a_function_off_the_loop(
        make_app: Callable[..., Path], temporal_address: str, seen: Seen) -> None:
    app = make_app({"app.yaml": textwrap.dedent(TEMPORAL_ENTRIES).strip("\n") + "\n" + textwrap.indent(textwrap.dedent("""
          - name: caller
            kind: workflow.lua
            source: file://caller.lua
            modules: [funcs]
          - name: clock
            kind: library.lua
            source: "return {now = function() return time.now():unix() end}"
            modules: [time]
          - name: stamped
            kind: function.lua
            source: 'return function() local c = require("clock"); logger.info("stamped"); return c.now() > 0 end'
            modules: [logger]
            imports: {clock: clock}
        """), "  "), "caller.lua": CALLER})
    async with running(app, temporal_address) as rt:
        assert await call(rt, "app:stamped") == {"value": True}
    [thread] = seen.threads("stamped")
    assert thread.startswith("moontide-fn"), thread


async def test_past_the_inline_budget_a_call_starts_over_on_a_thread_and_logs_once(
        make_app: Callable[..., Path], temporal_address: str, seen: Seen) -> None:
    n = 20 * _functions.INLINE_BUDGET  # far past the inline budget, far under the full one
    app = write_app(make_app, {"sum": ("[logger]", """
        return function(n)
          logger.info("start " .. n)
          local s = 0
          for i = 1, n do s = s + i end
          logger.info("end " .. n)
          return s
        end
    """), "small": ("[logger]", 'return function(n) logger.info("small " .. n) return n end')})
    async with running(app, temporal_address) as rt:
        assert await call(rt, "app:sum", n) == {"value": n * (n + 1) // 2}
        assert await call(rt, "app:sum", 3) == {"value": 6}  # from now on on a thread, even when short
        assert await call(rt, "app:small", 3) == {"value": 3}  # other functions stay inline
    # the inline attempt's line was held and dropped: each line once, from the thread that finished
    assert seen.messages() == [f"start {n}", f"end {n}", "start 3", "end 3", "small 3"]
    assert all(t.startswith("moontide-fn") for m, t, _ in seen.lines if "small" not in m), seen.lines
    assert on_loop(seen.threads("small 3")[0])


async def test_past_the_inline_memory_cap_a_call_gets_the_full_cap_on_a_thread(
        make_app: Callable[..., Path], temporal_address: str, seen: Seen) -> None:
    # doubling a string costs a few instructions: only the memory caps stop it
    src = """
        return function(doublings)
          local s = "x"
          for _ = 1, doublings do s = s .. s end
          logger.info("built " .. #s)
          return #s
        end
    """
    app = write_app(make_app, {"grow": ("[logger]", src), "grow_t": ("[logger, time]", src)},
                    worker_options={"memory_limit_mb": 40})
    assert _functions.INLINE_MEMORY == 16 << 20
    async with running(app, temporal_address) as rt:
        assert await call(rt, "app:grow", 24) == {"value": 1 << 24}  # 24 MiB live: over 16, under 40
        # over the full cap: the same error as a function that always ran on a thread
        pure, impure = await call(rt, "app:grow", 25), await call(rt, "app:grow_t", 25)
    assert pure == impure and pure["kind"] == "BudgetExceeded" and "40 MiB" in pure["message"], (pure, impure)
    [thread] = seen.threads(f"built {1 << 24}")
    assert thread.startswith("moontide-fn"), thread


async def test_a_function_often_slow_inline_moves_to_a_thread(
        make_app: Callable[..., Path], temporal_address: str, seen: Seen) -> None:
    # few instructions, much copying: `..` copies the whole string each time (~200 MB here)
    app = write_app(make_app, {"quadratic": ("[logger]", """
        return function(n)
          local piece, s = string.rep("x", 200), ""
          for _ = 1, n do s = s .. piece end
          logger.info("built")
          return #s
        end
    """)})
    calls = _functions.INLINE_STRIKES + 1
    async with running(app, temporal_address) as rt:
        for _ in range(calls):
            assert await call(rt, "app:quadratic", 1500) == {"value": 300_000}
    threads = seen.threads("built")
    assert [on_loop(t) for t in threads] == [True] * _functions.INLINE_STRIKES + [False], threads


@pytest.mark.parametrize("modules", ["[errors]", "[errors, time]"], ids=["inline", "thread"])
async def test_errors_are_the_same_inline_and_on_a_thread(
        make_app: Callable[..., Path], temporal_address: str, modules: str) -> None:
    app = write_app(make_app, {
        "boom": (modules, 'return function() error("kaboom") end'),
        "declined": (modules, 'return function() return nil, errors.new{kind = "Declined", message = "no"} end'),
        "shapeless": (modules, "return function() return function() end end"),
    })
    async with running(app, temporal_address) as rt:
        boom = await call(rt, "app:boom")
        assert boom["kind"] == "Internal" and "boom.lua:1: kaboom" in boom["message"], boom  # Wippy: a runtime crash
        assert await call(rt, "app:declined") == {"kind": "Declined", "message": "no"}
        shapeless = await call(rt, "app:shapeless")
        assert shapeless["kind"] == "Invalid" and shapeless["message"].startswith("result: "), shapeless


async def test_heartbeats_and_cancellation_reach_a_function_on_a_thread(
        make_app: Callable[..., Path], temporal_address: str, seen: Seen) -> None:
    seen.heartbeat = True  # each log line heartbeats from where the function runs
    beating = """
        return function(n)
          for i = 1, n do
            logger.info("beat")
            local ok, err = time.sleep("200ms")
            if err then logger.info("woke " .. err:kind()) return nil, err end
          end
          return "done"
        end
    """
    app = write_app(make_app, {"beating": ("[logger, time]", beating)}, workflows={"canceller": """
        return function()
          local f = funcs.new():with_options{heartbeat_timeout = "1s", retry_policy = {maximum_attempts = 1}}
          local fut = f:async("app:beating", 18000)
          f:call("app:beating", 10)  -- 2 s, while the other one beats too
          fut:cancel()
          local _, err = fut:result()
          return err:kind()
        end
    """})
    async with running(app, temporal_address) as rt:
        # 2 s of beats with a 1 s heartbeat timeout: done only if the beats reach the server
        assert await call(rt, "app:beating", 10, opts={"heartbeat_timeout": "1s", **NO_RETRY}) == {"value": "done"}
        assert await rt.result(await rt.spawn("app:canceller", None)) == "Canceled"
        # the cancel request reaches the function at its next heartbeat: its sleep ends as canceled
        for _ in range(600):
            if "woke Canceled" in seen.messages():
                break
            await asyncio.sleep(0.05)
    assert "woke Canceled" in seen.messages(), seen.lines
    assert all(t.startswith("moontide-fn") for _, t, _ in seen.lines), seen.lines
