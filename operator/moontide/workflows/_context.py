"""The request context (Lua's ``ctx`` module) across Temporal.

A workflow's context is in its memo (``moontide.ctx``, a JSON object): set by
whoever starts it (``process.spawn`` from a workflow, a function or a
process, through ``process.with_context`` or inherited), kept by
continue-as-new with the rest of the memo, and read once when the run starts,
so a replay sees the same values. An activity's context travels in the
``moontide-ctx`` header of its schedule command (also in the history):
``ContextInterceptor`` writes it from the workflow's outgoing context and
reads it where the function runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from temporalio import worker as tworker
from temporalio.api.common.v1 import Payload
from temporalio.exceptions import ApplicationError

from .. import errors, values
from ..protocol import MEMO_CONTEXT

__all__ = ["HEADER", "INTERCEPTOR", "MEMO_CONTEXT", "ContextInterceptor", "incoming", "outgoing"]

HEADER = "moontide-ctx"

#: what the activity being scheduled (in this workflow task) carries
_outgoing: ContextVar[dict[str, Any] | None] = ContextVar("moontide_ctx_out", default=None)
#: what the running activity was given
_incoming: ContextVar[dict[str, Any] | None] = ContextVar("moontide_ctx_in", default=None)


@contextlib.contextmanager
def outgoing(context: dict[str, Any]) -> Iterator[None]:
    """Activities scheduled inside carry ``context`` (start them, do not await them, inside)."""
    token = _outgoing.set(context)
    try:
        yield
    finally:
        _outgoing.reset(token)


def incoming() -> dict[str, Any]:
    """The context of the activity running here ({} when it came without one)."""
    return dict(_incoming.get() or {})


def decode(payload: Payload | None, where: str) -> dict[str, Any]:
    """A context from a header or memo payload; Invalid when it is not a JSON object."""
    if payload is None:
        return {}
    value = values.from_payload(payload, "context", where)
    if not isinstance(value, dict):
        raise errors.Invalid(f"{where}: the context must be a JSON object, got {type(value).__name__}")
    return value


def _with_header(headers: Any, context: dict[str, Any] | None) -> Any:
    if not context:
        return headers
    return {**headers, HEADER: values.json_payload(json.dumps(context, separators=(",", ":"), sort_keys=True))}


class _ActivityOutbound(tworker.ActivityOutboundInterceptor):
    """Heartbeats sent from a function's thread hop to the worker's event loop, where the SDK takes them."""

    def __init__(self, next: tworker.ActivityOutboundInterceptor, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(next)
        self._loop = loop

    def heartbeat(self, *details: Any) -> None:
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:  # a thread with no loop: a function running on the pool
            on_loop = False
        if on_loop:
            self.next.heartbeat(*details)
        else:
            self._loop.call_soon_threadsafe(self.next.heartbeat, *details)


class _ActivityInbound(tworker.ActivityInboundInterceptor):
    def init(self, outbound: tworker.ActivityOutboundInterceptor) -> None:
        super().init(_ActivityOutbound(outbound, asyncio.get_running_loop()))

    async def execute_activity(self, input: tworker.ExecuteActivityInput) -> Any:
        try:
            context = decode(input.headers.get(HEADER), f"the activity's header {HEADER}")
        except errors.Invalid as e:  # only a client that is not Moontide's sends one
            raise ApplicationError(e.message, type=e.kind, non_retryable=True) from None
        token = _incoming.set(context)
        try:
            return await self.next.execute_activity(input)
        finally:
            _incoming.reset(token)


class _WorkflowOutbound(tworker.WorkflowOutboundInterceptor):
    def start_activity(self, input: tworker.StartActivityInput) -> Any:
        input.headers = _with_header(input.headers, _outgoing.get())
        return self.next.start_activity(input)

    def start_local_activity(self, input: tworker.StartLocalActivityInput) -> Any:
        input.headers = _with_header(input.headers, _outgoing.get())
        return self.next.start_local_activity(input)


class _WorkflowInbound(tworker.WorkflowInboundInterceptor):
    def init(self, outbound: tworker.WorkflowOutboundInterceptor) -> None:
        super().init(_WorkflowOutbound(outbound))


class ContextInterceptor(tworker.Interceptor):
    """Carries the ctx module's values from workflows to the activities they schedule; lets a
    function's thread heartbeat (``activity.heartbeat`` there hops to the worker's loop)."""

    def intercept_activity(self, next: tworker.ActivityInboundInterceptor) -> tworker.ActivityInboundInterceptor:
        return _ActivityInbound(next)

    def workflow_interceptor_class(self, input: tworker.WorkflowInterceptorClassInput) -> type[_WorkflowInbound]:
        return _WorkflowInbound


#: The one a worker registers (it holds no state).
INTERCEPTOR = ContextInterceptor()
