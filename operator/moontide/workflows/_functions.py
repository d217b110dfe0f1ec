"""``function.lua`` entries as Temporal activities, on pooled Lua runtimes.

The activity type is the entry ID. A runtime with the function loaded is kept
in a per-entry pool and reused, so a call costs a coroutine, not a new Lua
state. Functions may block (``time.sleep``, HTTP, calls to other functions):
activities run on a thread pool, and those calls block that thread only.
A function that returns ``nil, err`` fails the activity with ``err.kind`` as
the error type (retryable only when ``err.retryable``); one that raises fails
it retryably (a bug or a transient fault); an unknown function ID fails it at
once as NotFound, never retrying.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from temporalio import activity
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from .. import errors
from ..lua import code as code_mod
from ..lua import host as host_mod
from ..lua import runtime as rt_mod

__all__ = ["Functions", "activity_for"]

_log = logging.getLogger("moontide.functions")


class Functions:
    """Every function of an app, callable by ID from activities or from other functions.

    Runtimes are pooled: a call checks one out, so a slow call (HTTP, sleep)
    holds only its own. Each runtime keeps the functions it has run loaded,
    like a warm process: module-level state lives on between calls.
    """

    def __init__(self, codes: dict[str, code_mod.LuaCode], *, pool_size: int = 8,
                 memory_limit: int = 64 << 20, instruction_budget: int = 2_000_000_000,
                 processes: Any = None, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.codes = codes
        #: answers process.* from function code (an AppRuntime: spawn/result/send/cancel/terminate
        #: coroutines), run on ``loop`` while the calling activity thread waits
        self.processes = processes
        self.loop = loop
        self.pool_size = pool_size
        self.memory_limit = memory_limit
        self.instruction_budget = instruction_budget
        self._idle: list[tuple[rt_mod.Runtime, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def _take(self) -> tuple[rt_mod.Runtime, dict[str, Any]]:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return rt_mod.Runtime(memory_limit=self.memory_limit, instruction_budget=self.instruction_budget), {}

    def _give_back(self, item: tuple[rt_mod.Runtime, dict[str, Any]]) -> None:
        with self._lock:
            if len(self._idle) < self.pool_size:
                self._idle.append(item)

    def call(self, fid: str, args: list[Any], *, depth: int = 0) -> Any:
        """Run function ``fid`` with JSON ``args``; return its JSON result or raise MoontideError."""
        code = self.codes.get(fid)
        if code is None:
            raise errors.NotFound(f"no function.lua entry {fid!r} in this app "
                                  f"(functions: {', '.join(sorted(self.codes)) or 'none'})")
        if depth > 32:
            raise errors.Invalid(f"{fid}: funcs.call nested more than 32 deep")
        rt, loaded = self._take()
        host = _CallHost(rt, self, code, depth)
        healthy = True
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
            if healthy:
                self._give_back((rt, loaded))


class _CallHost(host_mod.FunctionHost):
    """Answers one function call's host calls and blocking requests, in its thread."""

    def __init__(self, rt: rt_mod.Runtime, functions: Functions, code: code_mod.LuaCode, depth: int) -> None:
        super().__init__(rt)
        self.functions = functions
        self.code = code
        self.depth = depth
        self.futures: dict[int, tuple[bool, Any]] = {}

    def _run(self, fid: str, args_json: str) -> tuple[bool, Any]:
        full = fid if ":" in fid else f"{self.code.namespace}:{fid}"
        try:
            return True, self.functions.call(full, json.loads(args_json), depth=self.depth + 1)
        except errors.MoontideError as e:
            return False, e

    def _resume(self, ok: bool, value: Any) -> tuple[bool, Any]:
        return (True, self.runtime.to_lua(value)) if ok else (False, self.runtime.error_to_lua(value))

    def wait(self, op: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
        if op == "call":
            return self._resume(*self._run(args[0], args[1]))
        if op == "sleep":
            _sleep(int(args[0]) / 1e9)
            return True, True
        if op == "await":
            return self._resume(*self.futures.pop(int(args[0]), (False, errors.NotFound("no such future"))))
        if op in _PROCESS_OPS:
            return self._resume(*self._process(op, args))
        return False, self.runtime.error_to_lua(errors.MoontideError(f"{op} is not available in functions",
                                                                     kind="Unavailable"))

    def _process(self, op: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
        """process.spawn/exec/send/cancel/terminate through the worker's AppRuntime (Temporal client)."""
        procs, loop = self.functions.processes, self.functions.loop
        if procs is None or loop is None:
            return False, errors.MoontideError(f"{op} is not available here (no Temporal client)",
                                               kind="Unavailable", retryable=False)

        def full(entry_id: str) -> str:
            return entry_id if ":" in entry_id else f"{self.code.namespace}:{entry_id}"

        async def run() -> Any:
            if op in ("process.spawn", "process.exec"):
                entry_id, host, args_json, opts_json = args[-4:]
                opts = json.loads(opts_json) if opts_json else None
                pid = await procs.spawn(full(entry_id), full(host), *json.loads(args_json), options=opts)
                return str(pid) if op == "process.spawn" else await procs.result(pid)
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

    def op_funcs_async(self, fid: str, args_json: str, opts_json: str | None) -> int:
        handle = len(self.futures) + 1
        self.futures[handle] = self._run(fid, args_json)
        return handle

    def op_future_done(self, handle: int) -> bool:
        return int(handle) in self.futures


_PROCESS_OPS = frozenset({"process.spawn", "process.exec", "process.send", "process.cancel", "process.terminate"})


def _sleep(seconds: float) -> None:
    # Inside an activity, wake up early when the activity is canceled.
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if activity.in_activity() and activity.is_cancelled():
            raise errors.Canceled("canceled while sleeping")
        time.sleep(min(left, 0.5))


def activity_for(functions: Functions) -> Any:
    """The dynamic activity a worker registers: runs the function named by the activity type."""

    @activity.defn(dynamic=True)
    def run_function(args: Sequence[RawValue]) -> Any:
        info = activity.info()
        fid = info.activity_type
        converter = activity.payload_converter()
        try:
            return functions.call(fid, [converter.from_payload(a.payload) for a in args])
        except errors.MoontideError as e:
            _log.warning("%s failed (attempt %d): [%s] %s", fid, info.attempt, e.kind, str(e).splitlines()[0])
            raise _application_error(e) from None

    return run_function


def _application_error(e: errors.MoontideError) -> ApplicationError:
    details = () if e.details is None else (e.details,)
    retryable = e.retryable
    if isinstance(e, errors.LuaError) and e.kind == "LuaError":
        # Lua raised a plain error: a bug or a transient fault, the retry
        # policy decides. A raised error object keeps its own retryable.
        retryable = True
    return ApplicationError(str(e), *details, type=e.kind, non_retryable=not retryable)

