"""Lua workflows on Temporal: one dynamic workflow that runs any ``workflow.lua`` entry.

The workflow type is the entry ID. Each execution has its own Lua globals and
coroutine (on a runtime shared with other executions, see ``lua.Shards``).
The Lua thread runs until it asks for something that may block (an activity,
a timer, a message, a child), the driver awaits the matching Temporal command
and resumes the thread with the result. On replay the same results come back
from history in the same order, so the same Lua code takes the same path.

Runs unsandboxed: the Lua sandbox (no clock, no I/O, ordered ``pairs``,
seeded ``math.random``) keeps workflow code deterministic, and the driver
only uses ``temporalio.workflow`` APIs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    TimeoutError,
)

from .. import durations, errors, values
from ..failures import error_of as failure_of
from ..protocol import (CANCEL_FROM_SIGNAL, DELIVER_ACTIVITY, MEMO_CODE, MEMO_CONTEXT, MEMO_EVENTS, MEMO_INBOX, STATUS_QUERY,
                        UPGRADE_SIGNAL, WorkflowPid,
                        deliver_task_queue)
from ..protocol import is_process_pid as is_local_pid
from ..lua import code as code_mod
from ..lua import host as host_mod
from ..lua import runtime as rt_mod
from . import _commands, _context, _search, _spawn
from ._codebook import CodeBook
from ._mailbox import Mailbox, message_payload
from ._options import ActivityDefaults, activity_options
from ._system import terminate_from_workflow

__all__ = ["STATUS_QUERY", "LuaWorkflow", "WorkflowSettings", "failure_of", "workflow_class"]

_log = logging.getLogger("moontide.workflow")

#: How the server rewords the reason of a cancel request a workflow sent (Temporal 1.2x+).
_SERVER_CANCEL_REASON = re.compile(r"^Cancel requested by workflow with run id \S+ with reason: ")

#: The built-in query answering where an execution is and what it waits for.
#: The pids that updates come from (``{update|<update id>}``): what Lua sends there answers them.
UPDATE_PID_PREFIX = "{update|"


@dataclass(frozen=True)
class WorkflowSettings:
    instruction_budget: int = 20_000_000
    """Lua VM instructions one activation may run (well under Temporal's 2 s deadlock limit)."""
    memory_limit: int = 64 << 20
    """Bytes one shared Lua runtime may allocate."""
    activity: ActivityDefaults = field(default_factory=ActivityDefaults)
    client_id: str = ""
    """The temporal.client entry of this worker (the first part of pids)."""
    worker_id: str = ""
    """The temporal.worker entry of this worker (the host part of pids)."""
    log_in_replay: bool = False
    """Log Lua logger lines again while replaying (worker_options.enable_logging_in_replay)."""
    newest_code: bool = False
    """Run every execution on the book's current code, pinned or not (a replay check of new code)."""
    auto_upgrade: frozenset[str] = frozenset()
    """Entry IDs of the workflows whose executions run the newest code (versioning behavior auto_upgrade)."""
    executions: dict[str, Any] | None = None
    """Run ID -> its ``Execution``, for a replay check to read what each did (None: not kept)."""
    watched: dict[str, Any] | None = None
    """Run ID -> its ``Execution``, for each that replays other code than the one it started with (the
    worker's ``ReplayGuard`` compares what it does with its history; None: no guard)."""


def _lua_failure(err: errors.MoontideError) -> BaseException:
    if isinstance(err, errors.BudgetExceeded):
        # Not an ApplicationError: the workflow *task* fails, the execution
        # stays open and the worker goes on serving other workflows.
        return RuntimeError(f"[moontide {err.kind}] {err}")
    return ApplicationError(str(err), type=err.kind, non_retryable=True)


class Execution(host_mod.BaseHost):
    """One workflow execution: its Lua thread, its mailbox and the driver loop."""

    def __init__(self, book: CodeBook, settings: WorkflowSettings, shards: rt_mod.Shards) -> None:
        self.book = book
        self.settings = settings
        self.rt = shards.acquire(self)
        super().__init__(self.rt, logger=_log)
        self.mailbox = Mailbox()
        self.code: code_mod.LuaCode | None = None
        self._blocking = "starting"
        #: the tasks of started operations (their coroutines wait side by side) -> their channel
        self._op_ids: dict[asyncio.Task[Any], str] = {}
        #: the channels of the select the execution waits in, while started operations run
        self._select_on: list[str] | None = None
        #: Temporal updates in flight: update id -> [state, outcome once answered]
        self.updates: dict[str, list[Any]] = {}
        self.pending: dict[int, str] = {}
        self.cancel_requested = False
        self.cancel_from: str | None = None
        self.thread: rt_mod.Thread | None = None
        #: (command, Lua line) of each Temporal command made, in order (``_commands``), when noted
        self.commands: list[tuple[str, str | None]] = []
        self.noting = settings.executions is not None
        self.workflow_id = ""
        #: running children started with process.spawn -> their parent close policy
        self.children: dict[str, Any] = {}
        #: once Lua has waited on process.events(), a failed linked child is only an event
        self.handles_events = False
        #: why this execution must fail now (a linked child failed), set outside the Lua thread
        self.fatal: errors.MoontideError | None = None
        self._main: asyncio.Task[Any] | None = None
        self._seq = 0
        self._warned_history = False

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    @property
    def blocking(self) -> str:
        return self._blocking

    @blocking.setter
    def blocking(self, what: str) -> None:
        # a started operation (one of several coroutines' waits) describes itself, not the execution
        task = asyncio.current_task()
        cid = self._op_ids.get(task) if self._op_ids and task is not None else None
        if cid is None:
            self._blocking = what
        else:
            self.mailbox.op_what[cid] = what

    @property
    def pid(self) -> str:
        return str(WorkflowPid(self.settings.client_id, self.settings.worker_id, workflow.info().workflow_id))

    # -- the loop -------------------------------------------------------
    async def run(self, raw_args: Sequence[RawValue]) -> Any:
        info = workflow.info()
        self.code = self._pinned_code(info.workflow_type)
        self.workflow_id = info.workflow_id
        if self.settings.executions is not None:
            self.settings.executions[info.run_id] = self
        if self.settings.watched is not None and workflow.unsafe.is_replaying() \
                and self.code.digest != workflow.memo_value(MEMO_CODE, None):
            # its history was (or may have been) made by other code: the guard checks the replay
            self.noting = True
            self.settings.watched[info.run_id] = self
        # left unread by the run before continue-as-new; they came first
        self.mailbox.messages[:0] = list(workflow.memo_value(MEMO_INBOX, None) or [])
        self.mailbox.events[:0] = list(workflow.memo_value(MEMO_EVENTS, None) or [])
        self.context = workflow.memo_value(MEMO_CONTEXT, None) or {}
        if not isinstance(self.context, dict):  # only a client that is not Moontide's sets one
            raise ApplicationError(f"{info.workflow_type}: memo {MEMO_CONTEXT} must be a JSON object",
                                   type="Invalid", non_retryable=True)
        try:
            fn = code_mod.instantiate(self.rt, self.code, host=self, seed=workflow.random().getrandbits(64))
        except errors.BudgetExceeded as e:
            raise _lua_failure(e) from None
        except errors.MoontideError as e:
            raise ApplicationError(str(e), type=e.kind, non_retryable=True) from None
        try:
            where = f"{info.workflow_type}: its input cannot be decoded"
            args = [values.from_payload(a.payload, f"argument {i}", where) for i, a in enumerate(raw_args, 1)]
        except errors.Invalid as e:
            # decided from the input alone: the execution fails, and fails the same way on replay
            raise ApplicationError(e.message, type=e.kind, non_retryable=True) from None
        self._main = asyncio.current_task()
        thread = self.thread = self.rt.start(fn, self, *[self.rt.to_lua(a) for a in args])
        step = thread.step()
        while isinstance(step, rt_mod.Yield):
            self._check_history()
            handler = getattr(self, "wait_" + step.op.replace(".", "_"), None)
            if handler is None:
                resume: tuple[Any, ...] = self._err(
                    errors.Unavailable(f"{step.op} is not available in workflows",
                                         retryable=False))
            else:
                try:
                    resume = await handler(*step.args)
                except asyncio.CancelledError:
                    # Temporal delivers a cancel request by cancelling what we
                    # await: Lua gets an event and a Canceled error, so saga
                    # code can compensate before it ends.
                    reason = _cancel_reason()
                    if self.fatal is not None:
                        raise _lua_failure(self.fatal) from None
                    if reason is None:
                        raise  # no cancel request: the SDK evicts this execution from its cache
                    self._note_cancel()
                    resume = self._event_wait_answer(step) or self._err(errors.Canceled(
                        f"canceled while {self.blocking}" + (f": {reason}" if reason else "")))
                except Exception:
                    if self.fatal is not None:  # e.g. a child start canceled before it was scheduled
                        raise _lua_failure(self.fatal) from None
                    raise
                else:
                    # An activity or child awaited when the request came ends
                    # as a Canceled failure instead: Lua still gets the event.
                    self._note_cancel(only_if_requested=True)
            if self.fatal is not None:  # what we awaited turned its cancellation into a failure
                raise _lua_failure(self.fatal)
            self.blocking = "running"
            step = thread.step(*resume)
        if isinstance(step, rt_mod.Failed):
            raise _lua_failure(step.error)
        return self._result(step.values)

    def note(self, command: str) -> None:
        """Remember a command this execution makes and the Lua line it is at (when its replay is checked)."""
        if self.noting:
            self.commands.append((command, self.thread.where() if self.thread is not None else None))

    def _note_cancel(self, *, only_if_requested: bool = False) -> None:
        reason = _cancel_reason()
        if self.cancel_requested or (only_if_requested and reason is None):
            return
        self.cancel_requested = True
        self.mailbox.event("pid.cancel", self.cancel_from, reason=reason or None)

    def link_down(self, pid: str, failure: errors.MoontideError) -> None:
        """A linked child failed: an event, and this execution fails unless Lua handles events."""
        self.mailbox.event("pid.link.down", pid, {"error": failure.as_dict()})
        if not self.handles_events and self.fatal is None and self._main is not None:
            self.fatal = errors.Terminated(f"linked process {pid} failed: {failure.message}")
            self._main.cancel()  # interrupts the Lua thread's wait; run() raises the failure

    def _check_history(self) -> None:
        info = workflow.info()
        if not self._warned_history and info.is_continue_as_new_suggested():
            self._warned_history = True
            if not workflow.unsafe.is_replaying():
                _log.error("[%s %s] history has %d events, past Temporal's suggested limit: call "
                           "workflow.continue_as_new(...) to start a fresh run before the server refuses it",
                           info.workflow_type, info.workflow_id, info.get_current_history_length())

    def _pinned(self, workflow_type: str) -> bool:
        """Whether this execution runs the code it is pinned to (else the book's newest)."""
        return not self.settings.newest_code and \
            self.book.types.get(workflow_type, workflow_type) not in self.settings.auto_upgrade

    def _pinned_code(self, workflow_type: str) -> code_mod.LuaCode:
        # an upgrade of this run (``moontide upgrade``) before the pin it started with
        digest = None
        if self._pinned(workflow_type):
            digest = self.book.upgraded(workflow.info().run_id) or workflow.memo_value(MEMO_CODE, None)
        if digest:
            code = self.book.by_digest(str(digest))
            if code is None:
                raise RuntimeError(f"this execution runs Lua code {digest[:12]} which this worker does not have; "
                                   "run a worker that has that version")
            return code
        try:
            code = self.book.workflow(workflow_type)
        except errors.NotFound as e:
            raise ApplicationError(e.message, type=e.kind, non_retryable=True) from None
        entry = self.book.app.entries.get(code.id)
        if self.settings.worker_id and entry is not None and not self.book.app.runs_on(entry, self.settings.worker_id):
            raise ApplicationError(f"workflow {code.id} runs on worker {self.book.app.routed_worker(entry)} (its "
                                   f"meta.temporal.workflow.worker), not on {self.settings.worker_id}",
                                   type="NotFound", non_retryable=True)
        return code

    def upgrade_requested(self) -> None:
        """``moontide upgrade`` recorded other code for this run: fail this workflow task if it runs older code.

        The worker then drops the run from its cache and the retried task replays it from the start, where
        ``_pinned_code`` takes the recorded code. On that code this signal changes nothing, so it is no
        command either way (``moontide upgrade`` checked that the history replays on it before recording it).
        """
        info = workflow.info()
        if self.code is None or not self._pinned(info.workflow_type):
            return  # the first activation has not chosen yet, or the run takes the newest code anyway
        digest = self.book.upgraded(info.run_id)
        if digest is not None and digest != self.code.digest:
            raise RuntimeError(f"[moontide upgrade] this run was upgraded from Lua code {self.code.digest[:12]} "
                               f"to {digest[:12]}: the worker replays it on that code")

    def _result(self, values: tuple[Any, ...]) -> Any:
        value = values[0] if values else None
        err = values[1] if len(values) > 1 else None
        if value is None and err is not None:
            e = self.rt.error_from_lua(err)
            if e.kind == "Canceled" and (self.cancel_requested or workflow.cancellation_reason() is not None):
                raise asyncio.CancelledError(e.message)  # the execution ends as Canceled
            details = () if e.details is None else (e.details,)
            raise ApplicationError(e.message, *details, type=e.kind, non_retryable=not e.retryable)
        try:
            return self.rt.from_lua(value, "result")
        except errors.Invalid as e:
            raise ApplicationError(f"the workflow's result cannot cross to JSON: {e.message}",
                                   type="Invalid", non_retryable=True) from None

    def _ok(self, *values: Any) -> tuple[Any, ...]:
        return (True, *(self.rt.to_lua(v) for v in values))

    def _err(self, e: errors.MoontideError) -> tuple[bool, Any]:
        return False, self.rt.error_to_lua(e)

    def _answer(self, ok: bool, value: Any) -> tuple[Any, ...]:
        return self._ok(value) if ok else self._err(value)

    def status(self) -> dict[str, Any]:
        info = workflow.info()
        return {
            "entry": self.code.id if self.code else info.workflow_type, "code": self.code.digest if self.code else None,
            "blocking": (self.blocking if self._select_on is None
                         else f"waiting in select on {self.mailbox.describe(self._select_on)}"),
            "pending": sorted(self.pending.values()),
            "messages_waiting": len(self.mailbox.messages), "messages_received": self.mailbox.received,
            "messages_dropped": self.mailbox.dropped,
            "events_waiting": len(self.mailbox.events), "cancel_requested": self.cancel_requested,
            "children": sorted(self.children),
            "history_length": info.get_current_history_length(),
        }

    # -- blocking ops: activities, timers, futures -----------------------------
    async def wait_call(self, fid: str, args_json: str, opts_json: str | None,
                        ctx_json: str | None = None) -> tuple[Any, ...]:
        self.blocking = f"waiting for {fid}"
        return self._answer(*await self._activity(fid, args_json, opts_json, self.outgoing_context(ctx_json)))

    async def wait_sleep(self, ns: int) -> tuple[Any, ...]:
        until = (workflow.time_ns() + ns) // 1_000_000_000
        self.blocking = f"sleeping until {_iso(until)}"
        await _commands.sleep(ns / 1e9)
        return True, True

    def _resolve(self, fid: str, opts_json: str | None, what: str) -> tuple[str, bool, dict[str, Any]]:
        """The full ID of the function a call runs (an ID without a namespace is in the caller's), whether it
        is a local activity, and its activity options; raises NotFound for no such function, Invalid options."""
        assert self.code is not None
        app = self.book.app
        override, options = activity_options(opts_json, self.settings.activity)
        full = override or fid
        full = full if ":" in full else f"{self.code.namespace}:{full}"
        if full not in self.book.functions:
            # answered here, not scheduled: no worker would ever take it. Retryable, as in
            # Wippy: a later call may find it (a worker with that function deployed)
            raise errors.NotFound(f"{what}: no function.lua entry {full!r} in this app", retryable=True)
        entry = app.entries.get(full)
        local = entry is not None and app.is_local_activity(entry)
        if local:
            _, options = activity_options(opts_json, self.settings.activity, local=full)
        elif "task_queue" not in options and entry is not None and (routed := app.routed_worker(entry)):
            options["task_queue"] = app.task_queue(app.get(routed))  # meta.temporal.activity.worker
        return full, local, options

    async def _activity(self, fid: str, args_json: str, opts_json: str | None,
                        context: dict[str, Any]) -> tuple[bool, Any]:
        try:
            full, local, options = self._resolve(fid, opts_json, "funcs.call")
        except errors.MoontideError as e:
            return False, e
        return await self._run_activity(full, local, options, args_json, context)

    async def _run_activity(self, full: str, local: bool, options: dict[str, Any], args_json: str,
                            context: dict[str, Any]) -> tuple[bool, Any]:
        """Start the activity (its header carrying the context), then await it: (ok, value or error)."""
        n = self._next()
        self.pending[n] = full
        start = workflow.start_local_activity if local else workflow.start_activity
        try:
            with _context.outgoing(context):  # the activity's header carries it (ContextInterceptor)
                handle = start(full, args=json.loads(args_json), result_type=RawValue, **options)
            raw = await handle
        except ActivityError as e:
            return False, failure_of(e)
        except (ApplicationError, TimeoutError) as e:
            if not local:
                raise
            return False, failure_of(e)  # a local activity's failure comes unwrapped
        finally:
            del self.pending[n]
        try:
            return True, values.from_payload(raw.payload, "result", f"funcs.call {full}: its result cannot be decoded")
        except errors.Invalid as e:
            return False, e

    # -- blocking ops: messages and select ------------------------------------
    async def wait_channel_receive(self, channel: str) -> tuple[Any, ...]:
        if not self.mailbox.known(channel):
            return self._err(errors.NotFound(f"no channel {channel!r}"))
        self.handles_events = self.handles_events or channel == "events"
        self.blocking = f"waiting in receive on {self.mailbox.describe([channel])}"
        await workflow.wait_condition(lambda: self.mailbox.ready(channel))
        return self._answer(*self.mailbox.take(channel))

    async def wait_channel_select(self, ids_json: str) -> tuple[Any, ...]:
        channels = json.loads(ids_json)
        for c in channels:
            if not self.mailbox.known(c):
                return self._err(errors.NotFound(f"no channel {c!r}"))
        self.handles_events = self.handles_events or "events" in channels
        self.blocking = f"waiting in select on {self.mailbox.describe(channels)}"
        if self.mailbox.ops:  # what started operations wait for changes as they run: described when asked
            self._select_on = channels
        try:
            await workflow.wait_condition(lambda: any(self.mailbox.ready(c) for c in channels))
        finally:
            self._select_on = None
        return self._select_take(channels)

    def _select_take(self, channels: list[str]) -> tuple[Any, ...]:
        first = next(c for c in channels if self.mailbox.ready(c))  # case order: deterministic
        op = self.mailbox.ops.pop(first, None)
        if op is not None:  # a started operation: the values its coroutine resumes with
            self.mailbox.op_what.pop(first, None)
            self._op_ids.pop(op, None)
            return (True, first, *op.result())
        ok, value = self.mailbox.take(first)
        if not ok:  # a failed future: say which case failed
            return (True, first, None, self.rt.error_to_lua(value))
        return (True, first, self.rt.to_lua(value))

    def _event_wait_answer(self, step: rt_mod.Yield) -> tuple[Any, ...] | None:
        """A cancel that comes while Lua waits on process.events() answers the wait
        with its pid.cancel event (as in processes), not a Canceled error."""
        if not self.mailbox.ready("events"):  # the cancel was noted before: no new event
            return None
        if step.op == "channel.receive" and step.args[0] == "events":
            return self._answer(*self.mailbox.take("events"))
        if step.op == "channel.select" and "events" in (channels := json.loads(step.args[0])):
            return self._select_take(channels)
        return None

    # -- blocking ops: processes --------------------------------------------------
    async def wait_process_spawn(self, how: str, entry_id: str, host: str, args_json: str,
                                 opts_json: str | None = None, name: str | None = None,
                                 messages_json: str | None = None, ctx_json: str | None = None) -> tuple[Any, ...]:
        self.blocking = f"starting child {entry_id}"
        try:
            pid = await _spawn.start_child(self, how, entry_id, host, json.loads(args_json),
                                           json.loads(opts_json) if opts_json else {}, name,
                                           values.startup_messages(messages_json),
                                           context=self.outgoing_context(ctx_json))
        except errors.MoontideError as e:
            return self._err(e)
        return self._ok(pid)

    async def wait_process_exec(self, entry_id: str, host: str, args_json: str, opts_json: str | None = None,
                                ctx_json: str | None = None, name: str | None = None,
                                messages_json: str | None = None) -> tuple[Any, ...]:
        self.blocking = f"waiting for child {entry_id}"
        try:
            return self._ok(await _spawn.exec_child(self, entry_id, host, json.loads(args_json),
                                                    json.loads(opts_json) if opts_json else {},
                                                    context=self.outgoing_context(ctx_json), name=name,
                                                    messages=values.startup_messages(messages_json)))
        except errors.MoontideError as e:
            return self._err(e)

    async def wait_process_monitor(self, pid: str) -> tuple[Any, ...]:
        return self._child_flag(pid, "process.monitor", monitored=True)

    async def wait_process_unmonitor(self, pid: str) -> tuple[Any, ...]:
        """No pid.exit of that child from now on (anything else: nothing to stop)."""
        return self._child_flag(pid, "process.unmonitor", monitored=False)

    async def wait_process_link(self, pid: str) -> tuple[Any, ...]:
        return self._child_flag(pid, "process.link", linked=True)

    async def wait_process_unlink(self, pid: str) -> tuple[Any, ...]:
        return self._child_flag(pid, "process.unlink", linked=False)

    def _child_flag(self, pid: str, what: str, **flag: bool) -> tuple[Any, ...]:
        """Monitor or link a running child (only children: their end is what Temporal tells a workflow)."""
        found = self.children.get(str(pid))
        if found is None and any(flag.values()):
            return self._err(errors.Invalid(
                f"{what}({pid}) from a workflow: only its own running children (process.spawn from this run) "
                "can be monitored or linked; Temporal tells a workflow of no other's end"))
        if found is not None:
            for name, value in flag.items():
                setattr(found, name, value)
        return True, True

    async def wait_process_send(self, pid: str, topic: str, payload_json: str) -> tuple[Any, ...]:
        if str(pid).startswith(UPDATE_PID_PREFIX):
            return self._update_reply(str(pid), str(topic), payload_json)
        self.blocking = f"sending {topic} to {pid}"
        if is_local_pid(pid):
            # A process is not durable: the message goes through an activity
            # on its host's task queue, so the send itself is recorded.
            try:
                await workflow.execute_activity(
                    DELIVER_ACTIVITY, args=[pid, topic, payload_json, self.pid],
                    task_queue=deliver_task_queue(pid),
                    schedule_to_start_timeout=timedelta(seconds=30),
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=RetryPolicy(maximum_attempts=3))
            except ActivityError as e:
                err = failure_of(e)
                if err.kind == "Timeout":
                    err = errors.NotFound(f"process.send to {pid}: its process host is not running")
                return self._err(err)
            return True, True
        try:
            handle = workflow.get_external_workflow_handle(_spawn.workflow_id_of(pid))
            await handle.signal(topic, message_payload(payload_json, self.pid))
        except errors.MoontideError as e:
            return self._err(e)
        except ApplicationError as e:
            return self._err(errors.NotFound(f"process.send to {pid}: {e.message}"))
        return True, True

    async def wait_process_cancel(self, pid: str, reason: str | None = None) -> tuple[Any, ...]:
        self.blocking = f"canceling {pid}"
        try:
            handle = workflow.get_external_workflow_handle(_spawn.workflow_id_of(pid))
            await handle.signal(CANCEL_FROM_SIGNAL, self.pid)  # first, so its pid.cancel event names us
            await handle.cancel(reason=reason or "")
        except errors.MoontideError as e:
            return self._err(e)
        except ApplicationError as e:
            return self._err(errors.NotFound(f"process.cancel of {pid}: {e.message}"))
        return True, True

    async def wait_process_terminate(self, pid: str, reason: str | None = None) -> tuple[Any, ...]:
        self.blocking = f"terminating {pid}"
        try:
            client = _spawn.client_of(pid)
            if client != self.settings.client_id:
                raise errors.Invalid(f"process.terminate of {pid}: a workflow can terminate executions of its own "
                                     f"temporal.client ({self.settings.client_id}) only")
            await terminate_from_workflow(_spawn.workflow_id_of(pid), reason, self.pid)
        except errors.MoontideError as e:
            return self._err(e)
        return True, True

    async def wait_workflow_continue_as_new(self, args_json: str) -> tuple[Any, ...]:
        return self._continue_as_new(None, args_json, "workflow.continue_as_new")

    async def wait_process_upgrade(self, entry_id: str | None, args_json: str) -> tuple[Any, ...]:
        """process.upgrade(id, ...): continue as new, as ``id`` (its current code) or as this run's code."""
        try:
            return self._continue_as_new(entry_id or None, args_json, "process.upgrade")
        except errors.MoontideError as e:
            return self._err(e)

    def _continue_as_new(self, entry_id: str | None, args_json: str, what: str) -> tuple[Any, ...]:
        running = _spawn.running_children(self)
        if running:
            # Temporal applies the parent close policy to the run that ends here:
            # the children would be terminated and their pid.exit lost.
            return self._err(errors.Invalid(
                f"{what}: {len(running)} child workflow(s) still running ({', '.join(running)}); "
                "Temporal would end them with this run and their pid.exit would not reach the next one. Wait "
                "for their pid.exit on process.events(), cancel them, or spawn them with "
                "process.with_options{[\"workflow.parent_close_policy\"] = \"abandon\"} and reach them by pid "
                "(process.send) from the next run"))
        # The next run keeps the memo (user fields, the code pin), and the messages
        # and process events nobody has taken yet move on to it, in order. Not a
        # pid.cancel: Temporal's cancel request ends with this run.
        memo = {k: v for k, v in workflow.memo().items() if k not in (MEMO_INBOX, MEMO_EVENTS)}
        kw: dict[str, Any] = {}
        if entry_id is not None:  # another definition (or this one's current code): its type and worker
            assert self.code is not None
            app = self.book.app
            full = entry_id if ":" in entry_id else f"{self.code.namespace}:{entry_id}"
            code = self.book.workflow(full)
            entry = app.get(full)
            kw["workflow"] = app.workflow_type(entry)
            routed = app.routed_worker(entry)
            if routed is not None and not app.runs_on(entry, self.settings.worker_id):
                kw["task_queue"] = app.task_queue(app.get(routed))
            memo[MEMO_CODE] = code.digest
        elif self.code:
            memo[MEMO_CODE] = self.code.digest
        if self.mailbox.messages:
            memo[MEMO_INBOX] = self.mailbox.messages
        events = [ev for ev in self.mailbox.events if ev["kind"] != "pid.cancel"]
        if events:
            memo[MEMO_EVENTS] = events
        workflow.continue_as_new(args=json.loads(args_json), memo=memo, **kw)

    # -- Temporal updates: messages answered with Wippy's reply protocol -----------
    def validate_update(self, name: str, args: Sequence[RawValue]) -> None:
        """Refuse an update whose input cannot be decoded: rejected, it leaves no trace in history."""
        try:
            for i, a in enumerate(args, 1):
                values.from_payload(a.payload, "payload" if len(args) == 1 else f"payload[{i}]",
                                    f"update {name}: its input cannot be decoded")
        except errors.Invalid as e:
            raise ApplicationError(e.message, type=e.kind, non_retryable=True) from None

    async def update(self, name: str, args: Sequence[RawValue]) -> Any:
        """An update arrives as a message on ``name`` from ``{update|<id>}``; Lua answers it there
        with ``ack`` then ``ok``/``error`` (or ``nak`` instead of ``ack``), as in Wippy."""
        info = workflow.current_update_info()
        assert info is not None  # in an update handler
        uid = info.id
        entry: list[Any] = ["pending", None]
        self.updates[uid] = entry
        self.mailbox.signal(name, args, sender=f"{UPDATE_PID_PREFIX}{uid}}}")
        try:
            await workflow.wait_condition(lambda: entry[1] is not None)
        finally:
            self.updates.pop(uid, None)
        ok, value = entry[1]
        if ok:
            return RawValue(values.json_payload(value))
        raise ApplicationError(value[1], type=value[0], non_retryable=True)

    def _update_reply(self, pid: str, topic: str, payload_json: str) -> tuple[Any, ...]:
        uid = pid[len(UPDATE_PID_PREFIX):-1]
        entry = self.updates.get(uid)
        if entry is None:
            return self._err(errors.NotFound(f"process.send to {pid}: no update {uid} waits for an answer "
                                             "(answered already, or from another run)"))
        state = entry[0]
        expected = {"ack": "pending", "nak": "pending", "ok": "accepted", "error": "accepted"}.get(topic)
        if expected is None:
            return self._err(errors.Invalid(f"process.send to {pid}: an update is answered with ack, nak, ok or "
                                            f"error, not {topic!r}"))
        if state != expected:
            why = "send ack first" if expected == "accepted" else f"it was {state} already"
            return self._err(errors.Invalid(f"process.send to {pid}: {topic} does not fit now ({why})"))
        if topic == "ack":
            entry[0] = "accepted"
            return True, True
        if topic == "ok":
            entry[1] = (True, payload_json)
        else:
            data = json.loads(payload_json)
            default = "update rejected" if topic == "nak" else "update failed"
            message = data if isinstance(data, str) else default if data is None else payload_json
            entry[1] = (False, ("Rejected" if topic == "nak" else "Internal", message))
        del self.updates[uid]  # answered: another answer finds no update, as in Wippy
        return True, True

    # -- synchronous ops (host calls) -------------------------------------
    def op_log(self, level: str, message: str, fields: str | None = None) -> None:
        if self.settings.log_in_replay or not workflow.unsafe.is_replaying():  # a replay does not log twice
            info = workflow.info()
            super().op_log(level, f"[{info.workflow_type} {info.workflow_id}] {message}", fields)

    def op_now(self) -> int:
        return workflow.time_ns()

    def random_bytes(self, n: int) -> bytes:
        # the workflow's seeded random: a replay draws the same bytes
        return workflow.random().randbytes(n)

    def op_uuid_v4(self) -> str:
        return str(workflow.uuid4())

    def op_uuid_v7(self) -> str:
        return host_mod.uuid7(workflow.time_ns() // 1_000_000, workflow.random().getrandbits(74))

    def op_duration(self, text: Any) -> int:
        return durations.parse(text)

    def op_funcs_async(self, fid: str, args_json: str, opts_json: str | None, ctx_json: str | None = None) -> int:
        # an unknown function or bad options: nil, err from funcs.async itself, at once
        full, local, options = self._resolve(fid, opts_json, "funcs.async")
        n = self._next()
        self.mailbox.futures[f"future:{n}"] = asyncio.ensure_future(
            self._run_activity(full, local, options, args_json, self.outgoing_context(ctx_json)))
        return n


    def op_future_cancel(self, handle: int) -> bool:
        """Cancel the activity behind a future still running: it reads as Canceled from now on."""
        channel = f"future:{handle}"
        task = self.mailbox.futures.get(channel)
        if task is None or task.done() or channel in self.mailbox.canceled:
            return False
        self.mailbox.canceled.add(channel)
        task.cancel()  # Temporal is asked to cancel the activity
        return True

    def op_future_result(self, handle: int) -> Any:
        """{ok=, value=} or {ok=false, error=} of a done future; None while it runs."""
        channel = f"future:{handle}"
        if channel not in self.mailbox.futures:
            raise errors.NotFound(f"no future {handle}")
        if not self.mailbox.ready(channel):
            return None
        ok, value = self.mailbox.future_outcome(channel)
        if ok:
            return self.rt.to_lua({"ok": True, "value": value})
        return self.rt.to_lua({"ok": False, "error": self.rt.error_to_lua(value)})

    def op_timer_after(self, ns: int) -> str:
        timer_id = f"timer:{self._next()}"
        self.mailbox.start_timer(timer_id, int(ns) / 1e9)
        return timer_id

    def op_timer_stop(self, timer_id: str) -> bool:
        return self.mailbox.stop_timer(str(timer_id))

    def op_timer_reset(self, timer_id: str, ns: int) -> bool:
        return self.mailbox.reset_timer(str(timer_id), int(ns) / 1e9)

    def op_ticker_start(self, ns: int) -> str:
        ticker_id = f"ticker:{self._next()}"
        self.mailbox.start_ticker(ticker_id, int(ns) / 1e9)
        return ticker_id

    def op_ticker_stop(self, ticker_id: str) -> bool:
        return self.mailbox.stop_ticker(str(ticker_id))

    # -- coroutines waiting side by side (modules/_sched.lua) ------------------
    def op_sched_concurrent(self) -> bool:
        """Several coroutines' waits can be in flight at once here (op.start)."""
        return True

    def op_op_start(self, op: str, *args: Any) -> str:
        """Start a blocking request as a task of its own; channel ``op:<n>`` is ready when it ends.

        Tasks start in the order Lua asks, on Temporal's deterministic loop, so
        their commands come in the same order on replay.
        """
        cid = f"op:{self._next()}"
        handler = getattr(self, "wait_" + str(op).replace(".", "_"), None)
        task = asyncio.ensure_future(self._operation(str(op), handler, args))
        self.mailbox.ops[cid] = task
        self._op_ids[task] = cid
        return cid

    async def _operation(self, op: str, handler: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        if handler is None:
            return self._err(errors.Unavailable(f"{op} is not available in workflows",
                                                  retryable=False))
        return await handler(*args)  # what it raises, the run loop raises when it takes the result

    def op_op_cancel(self, cid: str) -> bool:
        """Drop a started operation whose coroutine got a Canceled error instead (a cancel request)."""
        task = self.mailbox.ops.pop(str(cid), None)
        if task is None:
            return False
        self.mailbox.op_what.pop(str(cid), None)
        self._op_ids.pop(task, None)
        task.cancel()
        return True

    def op_channel_listen(self, topic: str) -> bool:
        self.mailbox.listening.add(str(topic))
        return True

    def op_channel_poll(self, ids_json: str) -> Any:
        """select with a default case: the first ready channel's value, without waiting (None: none ready)."""
        channels = json.loads(ids_json)
        for c in channels:
            if not self.mailbox.known(c):
                raise errors.NotFound(f"no channel {c!r}")
        self.handles_events = self.handles_events or "events" in channels
        first = next((c for c in channels if self.mailbox.ready(c)), None)  # case order: deterministic
        if first is None:
            return None
        ok, value = self.mailbox.take(first)
        # built in one go: a value set into a Lua table from Python meets the memory cap unprotected
        if ok:
            return self.rt.to_lua({"id": first, "ok": ok, "value": value})
        return self.rt.to_lua({"id": first, "ok": ok, "error": self.rt.error_to_lua(value)})

    def op_channel_close(self, channel: str) -> bool:
        if str(channel).startswith(("topic:", "message:")):
            self.mailbox.listening.discard(str(channel).partition(":")[2])
        return True

    def op_process_trap_links(self, on: Any = True) -> bool:
        """A failed linked child is only an event (also implied by waiting on process.events())."""
        self.handles_events = bool(on)
        return True

    def op_process_trap_links_get(self) -> bool:
        return self.handles_events

    def op_process_pid(self) -> str:
        return self.pid

    def op_workflow_info(self) -> Any:
        info = workflow.info()
        return self.rt.to_lua({
            "workflow_id": info.workflow_id, "run_id": info.run_id, "workflow_type": info.workflow_type,
            "task_queue": info.task_queue, "namespace": info.namespace, "attempt": info.attempt,
            "history_length": info.get_current_history_length(),
            "continued_run_id": info.continued_run_id, "pid": self.pid,
            "parent": info.parent.workflow_id if info.parent else None,
            "code": self.code.digest if self.code else None,
            "history_size": info.get_current_history_size(),
            "continue_as_new_suggested": info.is_continue_as_new_suggested(),
            "search_attributes": _search.to_plain(workflow.info().typed_search_attributes, self._declared()),
        })

    def _declared(self) -> dict[str, str]:
        return _search.declared(self.book.app, self.settings.client_id) if self.settings.client_id else {}

    def op_workflow_upsert_search_attributes(self, values_json: str) -> bool:
        workflow.upsert_search_attributes(_search.updates(
            json.loads(values_json), self._declared(), where="workflow.upsert_search_attributes",
            client_id=self.settings.client_id))
        return True

    def op_workflow_history(self) -> Any:
        """(events, bytes) of this run's history so far, as of this workflow task."""
        info = workflow.info()
        return self.rt.to_lua([info.get_current_history_length(), info.get_current_history_size()])

    def op_workflow_attrs(self, search_json: str | None, memo_json: str | None) -> bool:
        """workflow.attrs{search=, memo=}: upsert search attributes (declared by the temporal.client) and memo."""
        if search_json is not None:
            workflow.upsert_search_attributes(_search.updates(
                json.loads(search_json), self._declared(), where="workflow.attrs search",
                client_id=self.settings.client_id))
        if memo_json is not None:
            memo = json.loads(memo_json)
            reserved = sorted(k for k in memo if k.startswith("moontide."))
            if reserved:
                raise errors.Invalid(f"workflow.attrs memo: {reserved[0]!r}: the moontide.* memo fields are "
                                     "Moontide's own (code pinning, carried messages)")
            workflow.upsert_memo(memo)
        return True

    def op_workflow_version(self, change_id: str, min_version: int, max_version: int) -> int:
        # New executions (and replays that recorded the marker) take the new
        # code path; executions started before the change keep the old one.
        return int(max_version) if workflow.patched(str(change_id)) else int(min_version)


def _cancel_reason() -> str | None:
    """The cancel request's reason ("" if none given), None without a request."""
    reason = workflow.cancellation_reason()
    # a request from a workflow comes reworded by the server; the sender is in cancel_from
    return _SERVER_CANCEL_REASON.sub("", reason) if reason else reason


def _iso(unix: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(unix, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@workflow.defn(dynamic=True, sandboxed=False)
class LuaWorkflow:
    #: (book, settings, runtimes) this class serves: set on the class workflow_class() makes.
    served: tuple[CodeBook, WorkflowSettings, rt_mod.Shards]

    def __init__(self) -> None:
        # Built before run() so signals of the first activation are kept.
        self.execution = Execution(*self.served)

    @workflow.run
    async def run(self, args: Sequence[RawValue]) -> Any:
        return await self.execution.run(args)

    @workflow.signal(dynamic=True)
    def message(self, topic: str, args: Sequence[RawValue]) -> None:
        self.execution.mailbox.signal(topic, args)

    @workflow.signal(name=CANCEL_FROM_SIGNAL)
    def cancel_from(self, sender: str) -> None:
        self.execution.cancel_from = str(sender)

    @workflow.signal(name=UPGRADE_SIGNAL)
    def upgrade(self, request: Any = None) -> None:
        self.execution.upgrade_requested()

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> dict[str, Any]:
        return self.execution.status()

    # Wippy's built-in queries: its queryable state (nothing sets it: always empty) and the workflow ID.
    @workflow.query(name="state")
    def state(self) -> dict[str, Any]:
        return {}

    @workflow.query(name="pid")
    def pid(self) -> str:
        return workflow.info().workflow_id

    @workflow.update(dynamic=True)
    async def update(self, name: str, args: Sequence[RawValue]) -> Any:
        return await self.execution.update(name, args)

    @update.validator
    def validate_update(self, name: str, args: Sequence[RawValue]) -> None:
        self.execution.validate_update(name, args)


def workflow_class(task_queue: str, book: CodeBook, settings: WorkflowSettings) -> type:
    """The dynamic workflow class serving ``book``'s Lua workflows (on ``task_queue``, or in a Replayer).

    Each call makes its own class: the SDK builds instances itself, so the
    class carries its code book instead of a lookup by the task queue (which
    a Replayer renames to "replay-<build_id>").
    """
    shards = rt_mod.Shards(memory_limit=settings.memory_limit, instruction_budget=settings.instruction_budget)
    cls = type("LuaWorkflow", (LuaWorkflow,), {"served": (book, settings, shards), "__module__": __name__})
    return workflow.defn(dynamic=True, sandboxed=False)(cls)

