"""Lua workflows on Temporal: one dynamic workflow that runs any ``workflow.lua`` entry.

The workflow type is the entry ID. Each execution gets its own Lua runtime;
its Lua thread runs until it asks for something that may block (an activity,
a timer, a future), the driver awaits the matching Temporal command, and
resumes the thread with the recorded result. On replay the same results come
back from history in the same order, so the same Lua code takes the same path.

Runs unsandboxed: the Lua sandbox (no clock, no I/O, ordered ``pairs``, seeded
``math.random``) keeps workflow code deterministic, and the driver itself only
uses ``temporalio.workflow`` APIs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutError

from .. import durations, errors
from ..lua import code as code_mod
from ..lua import host as host_mod
from ..lua import runtime as rt_mod
from ._codebook import MEMO_CODE, CodeBook
from ._options import ActivityDefaults, activity_options

__all__ = ["WorkflowSettings", "workflow_class"]

_log = logging.getLogger("moontide.workflow")


@dataclass(frozen=True)
class WorkflowSettings:
    instruction_budget: int = 20_000_000
    """Lua VM instructions one activation may run (well under Temporal's 2 s deadlock limit)."""
    memory_limit: int = 64 << 20
    """Bytes one execution's Lua runtime may allocate."""
    activity: ActivityDefaults = ActivityDefaults()


def failure_of(e: BaseException) -> errors.MoontideError:
    """What an activity failure means to Lua: kind, message, retryable."""
    cause = e.cause if isinstance(e, ActivityError) and e.cause is not None else e
    if isinstance(cause, ApplicationError):
        return errors.MoontideError(cause.message, kind=cause.type or "Internal", retryable=not cause.non_retryable)
    if isinstance(cause, TimeoutError):
        return errors.Timeout(f"activity timed out ({cause.type.name.lower() if cause.type else 'timeout'})")
    if isinstance(cause, CancelledError):
        return errors.Canceled("activity canceled")
    return errors.MoontideError(str(cause), kind="Internal")


def _lua_failure(err: errors.MoontideError) -> BaseException:
    if isinstance(err, errors.BudgetExceeded):
        # Not an ApplicationError: the workflow *task* fails, the execution
        # stays open and the worker goes on serving other workflows.
        return RuntimeError(f"[moontide {err.kind}] {err}")
    return ApplicationError(str(err), type=err.kind, non_retryable=True)


class Execution(host_mod.BaseHost):
    """One workflow execution: its Lua runtime and the driver loop."""

    def __init__(self, book: CodeBook, settings: WorkflowSettings, shards: rt_mod.Shards) -> None:
        self.book = book
        self.settings = settings
        self.rt = shards.acquire(self)
        super().__init__(self.rt, logger=_log)
        self.futures: dict[int, asyncio.Task[tuple[bool, Any]]] = {}
        self.code: code_mod.LuaCode | None = None

    # -- the loop -------------------------------------------------------
    async def run(self, raw_args: Sequence[RawValue]) -> Any:
        info = workflow.info()
        self.code = self._pinned_code(info.workflow_type)
        try:
            fn = code_mod.instantiate(self.rt, self.code, host=self, seed=workflow.random().getrandbits(64))
        except errors.BudgetExceeded as e:
            raise _lua_failure(e) from None
        except errors.MoontideError as e:
            raise ApplicationError(str(e), type=e.kind, non_retryable=True) from None
        converter = workflow.payload_converter()
        args = [self.rt.to_lua(converter.from_payload(a.payload)) for a in raw_args]
        thread = self.rt.start(fn, self, *args)
        step = thread.step()
        while isinstance(step, rt_mod.Yield):
            handler = getattr(self, "wait_" + step.op, None)
            if handler is None:
                resume: tuple[Any, ...] = (False, self.rt.error_to_lua(
                    errors.MoontideError(f"{step.op} is not available in workflows", kind="Unavailable")))
            else:
                resume = await handler(*step.args)
            step = thread.step(*resume)
        if isinstance(step, rt_mod.Failed):
            raise _lua_failure(step.error)
        return self._result(step.values)

    def _pinned_code(self, workflow_type: str) -> code_mod.LuaCode:
        digest = workflow.memo_value(MEMO_CODE, None)
        if digest:
            code = self.book.by_digest(str(digest))
            if code is None:
                raise RuntimeError(f"this execution runs Lua code {digest[:12]} which this worker does not have; "
                                   "run a worker that has that version")
            return code
        try:
            return self.book.workflow(workflow_type)
        except errors.NotFound as e:
            raise ApplicationError(e.message, type=e.kind, non_retryable=True) from None

    def _result(self, values: tuple[Any, ...]) -> Any:
        value = values[0] if values else None
        err = values[1] if len(values) > 1 else None
        if value is None and err is not None:
            e = self.rt.error_from_lua(err)
            details = () if e.details is None else (e.details,)
            raise ApplicationError(e.message, *details, type=e.kind, non_retryable=not e.retryable)
        try:
            return self.rt.from_lua(value, "result")
        except errors.Invalid as e:
            raise ApplicationError(f"the workflow's result cannot cross to JSON: {e.message}",
                                   type="Invalid", non_retryable=True) from None

    def _ok(self, value: Any) -> tuple[bool, Any]:
        return True, self.rt.to_lua(value)

    def _err(self, e: errors.MoontideError) -> tuple[bool, Any]:
        return False, self.rt.error_to_lua(e)

    # -- blocking ops (Lua yields) ----------------------------------------
    async def wait_call(self, fid: str, args_json: str, opts_json: str | None) -> tuple[bool, Any]:
        ok, value = await self._activity(fid, args_json, opts_json)
        return self._ok(value) if ok else self._err(value)

    async def wait_sleep(self, ns: int) -> tuple[bool, Any]:
        await workflow.sleep(ns / 1e9)
        return True, True

    async def wait_await(self, handle: int) -> tuple[bool, Any]:
        task = self.futures.get(int(handle))
        if task is None:
            return self._err(errors.NotFound(f"no future {handle}"))
        ok, value = await task
        return self._ok(value) if ok else self._err(value)

    async def _activity(self, fid: str, args_json: str, opts_json: str | None) -> tuple[bool, Any]:
        assert self.code is not None
        full = fid if ":" in fid else f"{self.code.namespace}:{fid}"
        if full not in self.book.functions:
            return False, errors.NotFound(f"funcs.call: no function.lua entry {full!r} in this app")
        try:
            options = activity_options(opts_json, self.settings.activity)
        except errors.MoontideError as e:
            return False, e
        try:
            result = await workflow.execute_activity(full, args=json.loads(args_json), **options)
        except ActivityError as e:
            return False, failure_of(e)
        return True, result

    # -- synchronous ops (host calls) -------------------------------------
    def op_log(self, level: str, message: str, fields: str | None = None) -> None:
        if not workflow.unsafe.is_replaying():  # a replay does not log twice
            info = workflow.info()
            super().op_log(level, f"[{info.workflow_type} {info.workflow_id}] {message}", fields)

    def op_now(self) -> int:
        return workflow.time_ns()

    def op_uuid_v4(self) -> str:
        return str(workflow.uuid4())

    def op_uuid_v7(self) -> str:
        return host_mod.uuid7(workflow.time_ns() // 1_000_000, workflow.random().getrandbits(74))

    def op_funcs_async(self, fid: str, args_json: str, opts_json: str | None) -> int:
        handle = len(self.futures) + 1
        self.futures[handle] = asyncio.ensure_future(self._activity(fid, args_json, opts_json))
        return handle

    def op_future_done(self, handle: int) -> bool:
        task = self.futures.get(int(handle))
        return task is not None and task.done()

    def op_future_cancel(self, handle: int) -> bool:
        task = self.futures.get(int(handle))
        return bool(task and task.cancel())

    def op_duration(self, text: Any) -> int:
        return durations.parse(text)


#: (book, settings, runtimes) per task queue: the SDK builds workflow instances
#: itself, so the one dynamic class finds its worker's code by the task queue.
_served: dict[str, tuple[CodeBook, WorkflowSettings, rt_mod.Shards]] = {}


@workflow.defn(dynamic=True, sandboxed=False)
class LuaWorkflow:
    @workflow.run
    async def run(self, args: Sequence[RawValue]) -> Any:
        book, settings, shards = _served[workflow.info().task_queue]
        return await Execution(book, settings, shards).run(args)


def workflow_class(task_queue: str, book: CodeBook, settings: WorkflowSettings) -> type:
    """The dynamic workflow class, set up to serve ``book``'s Lua workflows on ``task_queue``."""
    shards = rt_mod.Shards(memory_limit=settings.memory_limit, instruction_budget=settings.instruction_budget)
    _served[task_queue] = (book, settings, shards)
    return LuaWorkflow
