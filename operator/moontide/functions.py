"""The function runner: every ``function.lua`` of an app, on pooled Lua runtimes.

Shared by workflow workers (``moontide.workflows`` runs each call as an
activity) and process hosts (``moontide.processes`` calls functions directly).
A runtime with the function loaded is kept in a pool and reused, so a call
costs a coroutine, not a new Lua state. Functions may block (``time.sleep``,
HTTP, calls to other functions): they run on a thread pool, and those calls
block that thread only.

A *pure* function (its modules, imports included, all in ``INLINE_MODULES``:
nothing that blocks or reaches outside Lua) runs inline on the caller's event
loop instead: for a short function the hop to a thread costs more than the
function. An inline attempt has a small instruction budget and memory cap;
past either it is thrown away and the call starts over on a thread with the
full limits, and that function runs on threads from then on (as it does once
its inline calls took over ``INLINE_SLOW`` of CPU ``INLINE_STRIKES`` times).
Log lines of an inline attempt are held and written when it ends, so a
restart never repeats them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from temporalio import activity

from . import errors, values
from .lua import _events
from .lua import code as code_mod
from .lua import host as host_mod
from .lua import runtime as rt_mod

__all__ = ["INLINE_BUDGET", "INLINE_MEMORY", "INLINE_MODULES", "INLINE_SLOW", "INLINE_STRIKES", "Functions", "Stopper"]

_log = logging.getLogger("moontide.functions")

#: Modules that neither block nor reach outside the Lua state: a function that
#: uses only these (imports included) may run inline on the event loop.
INLINE_MODULES = frozenset({"json", "base64", "hash", "errors", "uuid", "logger", "crypto", "ctx", "payload"})
#: Instructions an inline attempt may run: ~0.2-1 ms of CPU for plain, table,
#: string, sort or json code (benchmarks/README.md). Work past that pays for a hop.
INLINE_BUDGET = 10_000
#: Memory cap of the inline runtime (bytes, at most the worker's own cap).
INLINE_MEMORY = 16 << 20
#: Thread CPU seconds past which an inline call counts as slow; a function slow
#: INLINE_STRIKES times runs on threads for good. The instruction count does not
#: see every cost (``..`` copies whole strings, host calls run Python); strikes,
#: because a Python garbage collection can land in any one call.
INLINE_SLOW = 0.002
INLINE_STRIKES = 3


class Functions:
    """Every function of an app, callable by ID from activities or from other functions.

    Runtimes are pooled: a call checks one out, so a slow call (HTTP, sleep)
    holds only its own. Each runtime keeps the functions it has run loaded,
    like a warm process: module-level state lives on between calls.
    """

    def __init__(self, codes: dict[str, code_mod.LuaCode], *, pool_size: int = 8,
                 memory_limit: int = 64 << 20, instruction_budget: int = 2_000_000_000,
                 processes: Any = None, loop: asyncio.AbstractEventLoop | None = None, app: Any = None) -> None:
        self.codes = codes
        #: the ``entries.App`` (the registry and events modules read it; its event bus is the app runtime's)
        self.app = app
        #: answers process.* from function code (an AppRuntime: spawn/result/send/cancel/terminate
        #: coroutines), run on ``loop`` while the calling activity thread waits
        self.processes = processes
        self.loop = loop
        self.pool_size = pool_size
        self.memory_limit = memory_limit
        self.instruction_budget = instruction_budget
        self._idle: list[tuple[rt_mod.Runtime, dict[str, Any]]] = []
        self._lock = threading.Lock()
        #: the one runtime for inline calls: they run one at a time, on the event loop
        self._inline_rt: tuple[rt_mod.Runtime, dict[str, Any]] | None = None
        #: function ID -> may run inline (pure and never found too costly inline)
        self._inline: dict[str, bool] = {}
        self._slow: dict[str, int] = {}
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """Threads for calls that are not inline (one per concurrent activity)."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=self.pool_size,
                                                                   thread_name_prefix="moontide-fn")
        return self._executor

    def inline(self, fid: str) -> bool:
        """Whether a call of ``fid`` runs on the event loop (an unknown ID does: it fails at once)."""
        ok = self._inline.get(fid)
        if ok is None:
            def pure(code: code_mod.LuaCode) -> bool:
                return set(code.modules) <= INLINE_MODULES and all(pure(lib) for _, lib in code.imports)
            code = self.codes.get(fid)
            ok = self._inline[fid] = code is None or pure(code)
        return ok

    def _take(self) -> tuple[rt_mod.Runtime, dict[str, Any]]:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return rt_mod.Runtime(memory_limit=self.memory_limit, instruction_budget=self.instruction_budget,
                              stoppable=True), {}

    def _give_back(self, item: tuple[rt_mod.Runtime, dict[str, Any]]) -> None:
        with self._lock:
            if len(self._idle) < self.pool_size:
                self._idle.append(item)

    def call_inline(self, fid: str, args: list[Any], context: dict[str, Any] | None = None) -> tuple[bool, Any]:
        """Try ``fid`` on the inline runtime: (True, result), or (False, None) when it must go to a thread.

        Raises what ``call`` raises, except running past the inline limits.
        """
        item, self._inline_rt = self._inline_rt, None  # taken, not shared: safe even off the loop
        if item is None:
            item = rt_mod.Runtime(memory_limit=min(INLINE_MEMORY, self.memory_limit),
                                  instruction_budget=INLINE_BUDGET), {}
        held: list[Callable[[], None]] = []
        cpu = time.thread_time()
        try:
            result = self.call(fid, args, context=context, _item=item, _held=held)
        except errors.BudgetExceeded:
            self._inline[fid] = False  # past the inline limits: it starts over on a thread, and stays there
            return False, None
        except errors.MoontideError:
            self._inline_done(fid, item, held, cpu)
            raise
        self._inline_done(fid, item, held, cpu)
        return True, result

    def _inline_done(self, fid: str, item: tuple[rt_mod.Runtime, dict[str, Any]],
                     held: list[Callable[[], None]], cpu: float) -> None:
        if time.thread_time() - cpu > INLINE_SLOW:
            self._slow[fid] = strikes = self._slow.get(fid, 0) + 1
            if strikes >= INLINE_STRIKES:
                self._inline[fid] = False
        self._inline_rt = item
        for write in held:
            write()

    def call(self, fid: str, args: list[Any], *, depth: int = 0, stopper: Stopper | None = None,
             context: dict[str, Any] | None = None,
             _item: tuple[rt_mod.Runtime, dict[str, Any]] | None = None,
             _held: list[Callable[[], None]] | None = None) -> Any:
        """Run function ``fid`` with JSON ``args``; return its JSON result or raise MoontideError.

        ``context``: what the ctx module answers (the caller's context, with its with_context values).

        ``stopper`` ends the Lua code from another thread (the activity timed
        out or was canceled). ``_item``/``_held`` (from ``call_inline``): the
        runtime to run on, and where log lines go instead of the log; that
        runtime is not pooled.
        """
        code = self.codes.get(fid)
        if code is None:
            raise errors.NotFound(f"no function.lua entry {fid!r} in this app "
                                  f"(functions: {', '.join(sorted(self.codes)) or 'none'})")
        if depth > 32:
            raise errors.Invalid(f"{fid}: funcs.call nested more than 32 deep")
        rt, loaded = item = _item or self._take()
        host = _CallHost(rt, self, code, depth, held=_held, stopper=stopper, context=context)
        healthy = True
        if stopper is not None:
            stopper.attach(rt)
        try:
            fn = loaded.get(code.digest)
            if fn is None:
                fn = loaded[code.digest] = code_mod.instantiate(rt, code, host=host,
                                                                seed=int.from_bytes(os.urandom(8), "big"))
            thread = rt.start(fn, host, *[rt.to_lua(a) for a in args])
            step = thread.step()
            while isinstance(step, rt_mod.Yield):
                step = thread.step(*host.wait(step.op, step.args))
            if isinstance(step, rt_mod.Failed):
                healthy = not isinstance(step.error, errors.BudgetExceeded)
                raise step.error
            value = step.values[0] if step.values else None
            err = step.values[1] if len(step.values) > 1 else None
            if value is None and err is not None:
                raise rt.error_from_lua(err)
            return rt.from_lua(value, "result")
        except errors.BudgetExceeded:
            healthy = False
            raise
        finally:
            host.close_events()
            if stopper is not None:
                healthy = stopper.detach(rt) and healthy  # a stopped step may have left the runtime mid-way
            if healthy and _item is None:
                self._give_back(item)


class Stopper:
    """Ends a function call's Lua code from another thread: its activity timed out or was canceled.

    Lua code stops within a thousand instructions (``Runtime.stop``), in the
    call and in the functions it calls (each on a runtime of its own); a sleep
    or a blocking call ends at its next check (``_CallHost.wait``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runtimes: list[rt_mod.Runtime] = []
        self.reason: errors.MoontideError | None = None

    def stop(self, reason: errors.MoontideError) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
            for rt in self._runtimes:
                rt.stop(self.reason)

    def attach(self, rt: rt_mod.Runtime) -> None:
        with self._lock:
            self._runtimes.append(rt)
            if self.reason is not None:
                rt.stop(self.reason)

    def detach(self, rt: rt_mod.Runtime) -> bool:
        """Let go of ``rt``; whether it was never stopped (so it can be pooled)."""
        with self._lock:
            self._runtimes.remove(rt)
            if rt.stop_reason is None:
                return True
            rt.stop_reason = None
            return False


class _CallHost(host_mod.FunctionHost):
    """Answers one function call's host calls and blocking requests, in its thread."""

    def __init__(self, rt: rt_mod.Runtime, functions: Functions, code: code_mod.LuaCode, depth: int, *,
                 held: list[Callable[[], None]] | None = None, stopper: Stopper | None = None,
                 context: dict[str, Any] | None = None) -> None:
        super().__init__(rt)
        self.context = context or {}
        self.functions = functions
        self.code = code
        self.depth = depth
        self.held = held
        self.stopper = stopper
        self.futures: dict[int, tuple[bool, Any]] = {}
        #: timer/ticker channel -> [monotonic deadline, period (tickers) or None]
        self.timers: dict[str, list[Any]] = {}
        #: set when an event comes for a subscription (from the sender's thread): wakes a channel wait
        self.woken = threading.Event()

    def app(self) -> Any:
        return self.functions.app

    def event_bus(self) -> Any:
        if self.functions.app is None:  # Functions without an app (tests, tools): one bus of its own
            return _events.bus_for(self.functions)
        return super().event_bus()

    def event_notify(self) -> None:
        self.woken.set()

    def op_log(self, level: str, message: str, fields: str | None = None) -> None:
        if self.held is None:
            super().op_log(level, message, fields)
        else:  # an inline attempt: written if it ends inline, dropped if it starts over on a thread
            self.held.append(functools.partial(super().op_log, level, message, fields))

    def _run(self, fid: str, args_json: str, ctx_json: str | None = None) -> tuple[bool, Any]:
        full = fid if ":" in fid else f"{self.code.namespace}:{fid}"
        try:
            return True, self.functions.call(full, json.loads(args_json), depth=self.depth + 1,
                                             stopper=self.stopper, context=self.outgoing_context(ctx_json))
        except errors.MoontideError as e:
            return False, e

    def _resume(self, ok: bool, value: Any) -> tuple[bool, Any]:
        return (True, self.runtime.to_lua(value)) if ok else (False, self.runtime.error_to_lua(value))

    def wait(self, op: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
        if self.stopper is not None and self.stopper.reason is not None:
            return False, self.runtime.error_to_lua(self.stopper.reason)
        if activity.in_activity() and activity.is_cancelled():
            return False, self.runtime.error_to_lua(errors.Canceled(f"{op}: the activity was canceled"))
        if op == "call":
            return self._resume(*self._run(args[0], args[1], args[3] if len(args) > 3 else None))
        if op == "sleep":
            _sleep(int(args[0]) / 1e9, self.stopper)
            return True, True
        if op == "channel.receive":
            return self._receive(str(args[0]))
        if op == "channel.select":
            return self._select(json.loads(args[0]))
        if op in _PROCESS_OPS:
            return self._resume(*self._process(op, args))
        return False, self.runtime.error_to_lua(errors.Unavailable(f"{op} is not available in functions"))

    def _process(self, op: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
        """process.spawn/exec/send/cancel/terminate through the worker's AppRuntime (Temporal client)."""
        procs, loop = self.functions.processes, self.functions.loop
        if procs is None or loop is None:
            return False, errors.Unavailable(f"{op} is not available here (no Temporal client)", retryable=False)

        def full(entry_id: str) -> str:
            return entry_id if ":" in entry_id else f"{self.code.namespace}:{entry_id}"

        def host_ref(host: str) -> str:  # an entry ID, or a temporal.worker's task queue as it is
            return full(host) if full(host) in procs.app.entries else host

        async def run() -> Any:
            if op in ("process.spawn", "process.exec"):
                spawn = op == "process.spawn"
                if spawn:  # how, id, host, args, opts, name, messages, ctx (how: functions neither link nor monitor)
                    entry_id, host, args_json, opts_json, name, messages_json, ctx_json = [*args[1:], *[None] * 4][:7]
                else:  # id, host, args, opts, ctx, name, messages
                    entry_id, host, args_json, opts_json, ctx_json, name, messages_json = [*args, *[None] * 4][:7]
                opts = json.loads(opts_json) if opts_json else None
                pid = await procs.spawn(full(entry_id), host_ref(host), *json.loads(args_json), options=opts,
                                        name=name, messages=[(t, json.loads(p))
                                                             for t, p in values.startup_messages(messages_json)],
                                        context=self.outgoing_context(ctx_json))
                return str(pid) if spawn else await procs.result(pid)
            if op == "process.send":
                await procs.send(args[0], args[1], json.loads(args[2]))
            elif op == "process.cancel":
                await procs.cancel(args[0], args[1] if len(args) > 1 else None)
            else:
                await procs.terminate(args[0], args[1] if len(args) > 1 else None)
            return True

        try:
            return True, asyncio.run_coroutine_threadsafe(run(), loop).result()
        except errors.MoontideError as e:
            return False, e

    def op_funcs_async(self, fid: str, args_json: str, opts_json: str | None, ctx_json: str | None = None) -> int:
        handle = len(self.futures) + 1
        self.futures[handle] = self._run(fid, args_json, ctx_json)
        return handle


    def _future(self, handle: Any) -> tuple[bool, Any]:
        out = self.futures.get(int(handle))
        if out is None:
            raise errors.NotFound(f"no future {handle}")
        return out

    def op_future_result(self, handle: Any) -> Any:
        """A future here ran when it was made: {ok=, value=} or {ok=false, error=}."""
        ok, value = self._future(handle)
        if ok:
            return self.runtime.to_lua({"ok": True, "value": value})
        return self.runtime.to_lua({"ok": False, "error": self.runtime.error_to_lua(value)})

    def op_future_cancel(self, handle: Any) -> bool:
        self._future(handle)
        return False  # done already: nothing to cancel

    # -- channels a function can wait on: its futures (done when made), timers and tickers.
    # Its thread sleeps until the first is ready, waking early when it is stopped or canceled.
    def op_timer_after(self, ns: Any) -> str:
        tid = f"timer:{len(self.timers) + 1}"
        self.timers[tid] = [time.monotonic() + max(0, int(ns)) / 1e9, None]
        return tid

    def op_ticker_start(self, ns: Any) -> str:
        tid = f"ticker:{len(self.timers) + 1}"
        self.timers[tid] = [time.monotonic() + int(ns) / 1e9, int(ns) / 1e9]
        return tid

    def op_timer_stop(self, tid: Any) -> bool:
        entry = self.timers.get(str(tid))
        if entry is None or entry[0] is None:
            return False
        entry[0] = None
        return True

    op_ticker_stop = op_timer_stop

    def op_timer_reset(self, tid: Any, ns: Any) -> bool:
        entry = self.timers.get(str(tid))
        if entry is None or entry[0] is None:
            return False
        entry[0] = time.monotonic() + max(0, int(ns)) / 1e9
        return True

    def op_channel_close(self, channel: Any) -> bool:
        if str(channel).startswith("event:"):
            return self.event_close(str(channel))
        self.timers.pop(str(channel), None)
        return True

    def op_channel_poll(self, ids_json: str) -> Any:
        """select with a default case: the first ready channel, without waiting (None: none ready)."""
        channels = json.loads(ids_json)
        self._check(channels)
        first = next((c for c in channels if self._ready(c)), None)
        if first is None:
            return None
        if first.startswith("event:"):
            ok, value = self.event_take(first)
            out = self.runtime.to_lua({"id": first, "ok": ok})
            out["value" if ok else "error"] = value
            return out
        ok, value = self._take(first)
        return self.runtime.to_lua({"id": first, "ok": True, "value": value} if ok else
                                   {"id": first, "ok": False, "error": self.runtime.error_to_lua(value)})

    def _check(self, channels: list[str]) -> None:
        for c in channels:
            if not (c in self.timers or (c.startswith("future:") and c[7:].isdigit() and int(c[7:]) in self.futures)
                    or (self.subs and c in self.subs)):
                raise errors.NotFound(f"no channel {c!r} in function code (it has no inbox, events or topics)")

    def _ready(self, c: str) -> bool:
        if c.startswith("future:"):
            return True
        if c.startswith("event:"):
            return self.subs[c].ready()  # type: ignore[index]
        deadline = self.timers[c][0]
        return deadline is not None and time.monotonic() >= deadline

    def _take(self, c: str) -> tuple[bool, Any]:
        if c.startswith("future:"):
            return self._future(c[7:])
        entry = self.timers[c]
        if entry[1] is None:
            entry[0] = None  # fired: a one-shot timer gives one value
        else:  # a tick; ticks missed meanwhile are not queued (an unread tick is replaced)
            now = time.monotonic()
            entry[0] += entry[1] * max(1, int((now - entry[0]) // entry[1]) + 1)
        return True, time.time_ns()

    def _wait_ready(self, channels: list[str]) -> str:
        """The first channel (in case order) to be ready, sleeping until then (or until an event comes)."""
        while True:
            self.woken.clear()  # before looking: an event sent from now on wakes the wait below
            first = next((c for c in channels if self._ready(c)), None)
            if first is not None:
                return first
            deadlines = [self.timers[c][0] for c in channels if c in self.timers and self.timers[c][0] is not None]
            subscribed = any(c.startswith("event:") for c in channels)
            if not deadlines and not subscribed:
                raise errors.Invalid("channel wait in function code: no case can become ready (deadlock)")
            left = min(deadlines) - time.monotonic() if deadlines else _NAP
            _sleep(left, self.stopper, self.woken if subscribed else None)

    def _receive(self, channel: str) -> tuple[bool, Any]:
        try:
            self._check([channel])
            first = self._wait_ready([channel])
            if first.startswith("event:"):
                return self.event_take(first)
            return self._resume(*self._take(first))
        except errors.MoontideError as e:
            return False, self.runtime.error_to_lua(e)

    def _select(self, channels: list[str]) -> tuple[Any, ...]:
        try:
            self._check(channels)
            first = self._wait_ready(channels)
        except errors.MoontideError as e:
            return False, self.runtime.error_to_lua(e)
        if first.startswith("event:"):
            ok, value = self.event_take(first)
            return (True, first, value) if ok else (True, first, None, False)
        ok, value = self._take(first)
        if not ok:
            return True, first, None, self.runtime.error_to_lua(value)
        return True, first, self.runtime.to_lua(value)


_PROCESS_OPS = frozenset({"process.spawn", "process.exec", "process.send", "process.cancel", "process.terminate"})


#: Longest nap between checks for a stop or a cancel while a function waits
_NAP = 0.5


def _sleep(seconds: float, stopper: Stopper | None, woken: threading.Event | None = None) -> None:
    # Inside an activity, wake up early when the activity is canceled or stopped (or ``woken`` is set).
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if stopper is not None and stopper.reason is not None:
            raise stopper.reason
        if activity.in_activity() and activity.is_cancelled():
            raise errors.Canceled("canceled while sleeping")
        if woken is None:
            time.sleep(min(left, _NAP))
        elif woken.wait(min(left, _NAP)):
            return
