"""``function.lua`` entries as Temporal activities, on pooled Lua runtimes.

The activity type is the entry ID; ``moontide.functions.Functions`` runs the
call (pooled runtimes, pure functions inline on the worker's event loop, the
others on its thread pool).

A function that returns ``nil, err`` fails the activity with ``err:kind()`` as
the error type (retryable only when ``err.retryable``); one that raises fails
it retryably (a bug or a transient fault) as ``Internal``; an unknown function
ID fails it at once as NotFound, never retrying.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from temporalio import activity
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from .. import errors, values
from ..failures import application_error
from ..functions import INLINE_BUDGET, INLINE_MEMORY, INLINE_MODULES, INLINE_SLOW, INLINE_STRIKES, Functions, Stopper
from . import _context

__all__ = ["INLINE_BUDGET", "INLINE_MEMORY", "INLINE_MODULES", "INLINE_SLOW", "INLINE_STRIKES", "Functions",
           "activity_for"]

_log = logging.getLogger("moontide.functions")

#: Seconds past an activity's timeout before its Lua code is stopped: the server
#: times the attempt out first, so history shows a timeout, not our failure.
TIMEOUT_GRACE = 2.0

def activity_for(functions: Functions, served: frozenset[str] | None = None) -> Any:
    """The dynamic activity a worker registers: runs the function named by the activity type.

    ``served``: the functions this worker runs from its task queue (all when None); a
    local activity runs in the worker of its workflow, whichever function it is.
    """

    @activity.defn(dynamic=True)
    async def run_function(args: Sequence[RawValue]) -> Any:
        info = activity.info()
        fid = info.activity_type
        try:
            if served is not None and not info.is_local and fid in functions.codes and fid not in served:
                raise errors.NotFound(f"{fid} is registered with another temporal.worker (its "
                                      f"meta.temporal.activity.worker), not with the one of task queue "
                                      f"{info.task_queue!r}")
            where = f"{fid}: its input cannot be decoded"
            inputs = [values.from_payload(a.payload, f"argument {i}", where) for i, a in enumerate(args, 1)]
            context = _context.incoming()  # the calling workflow's, from the activity's header
            if functions.inline(fid):
                done, result = functions.call_inline(fid, inputs, context)
                if done:
                    return result
            return await _on_thread(functions, fid, inputs, context)
        except errors.MoontideError as e:
            _log.warning("%s failed (attempt %d): [%s] %s", fid, info.attempt, e.kind, str(e).splitlines()[0])
            raise _application_error(e) from None

    return run_function


def _time_left(info: activity.Info) -> float | None:
    """Seconds until this attempt's start-to-close or the activity's schedule-to-close deadline."""
    now = datetime.now(timezone.utc)
    ends = []
    if info.start_to_close_timeout:
        ends.append(info.started_time + info.start_to_close_timeout)
    if info.schedule_to_close_timeout:
        ends.append(info.scheduled_time + info.schedule_to_close_timeout)
    return min(ends).timestamp() - now.timestamp() if ends else None


async def _on_thread(functions: Functions, fid: str, inputs: list[Any], context: dict[str, Any]) -> Any:
    """``functions.call`` on the pool, in this activity's context, as a sync activity would run it.

    A cancel request (or worker shutdown) does not abandon the thread: the
    function sees ``activity.is_cancelled()`` (its sleeps and blocking calls
    end with Canceled), its Lua code is stopped, and the activity ends as
    canceled once it returns. Past the activity's timeout, whose result the
    server no longer takes, the code is stopped the same way: a timed-out
    function never goes on burning a thread.
    """
    loop = asyncio.get_running_loop()
    stopper = Stopper()
    info = activity.info()
    left = _time_left(info)
    timer = None if left is None else loop.call_later(max(left, 0.0) + TIMEOUT_GRACE, _timed_out, stopper, fid, info)

    def run() -> Any:
        return functions.call(fid, inputs, stopper=stopper, context=context)

    # In a copy of this context, so activity.info() and activity.is_cancelled() answer in the
    # thread; the cancel itself reaches the Lua code through the stopper.
    future = loop.run_in_executor(functions.executor, contextvars.copy_context().run, run)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        stopper.stop(errors.Canceled(f"{fid}: the activity was canceled"))
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([future])
        if not future.cancelled():
            future.exception()  # retrieved: the activity ends as canceled, not with what the function did
        raise
    finally:
        if timer is not None:
            timer.cancel()


def _timed_out(stopper: Stopper, fid: str, info: activity.Info) -> None:
    _log.warning("%s (attempt %d) ran past its activity timeout: stopping it", fid, info.attempt)
    stopper.stop(errors.Timeout(f"{fid}: stopped: the activity timed out"))


def _application_error(e: errors.MoontideError) -> ApplicationError:
    if isinstance(e, errors.LuaError) and e.kind == "LuaError":
        # Lua raised a plain error: a bug or a transient fault, the retry policy
        # decides; the caller sees Wippy's kind for a runtime crash, Internal.
        # A raised error object keeps its own kind and retryable.
        return application_error(errors.Internal(str(e), details=e.details))
    return application_error(e, message=str(e))

