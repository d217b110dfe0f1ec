"""``OnLoopExecutor``: the SDK's ``workflow_task_executor`` running each activation on the worker's event loop.

The Temporal SDK hands every workflow activation (and eviction) to its
``workflow_task_executor`` with ``loop.run_in_executor(executor, workflow.activate, act)``
and waits for it under ``asyncio.wait_for(..., 2)``, its deadlock detector. With this
executor the call runs on the event loop that submitted it, from a ``loop.call_soon``
callback, so there is no thread hand-off per activation. Lua activations need no
thread: the instruction budget and the memory cap end each one.

Why the SDK's 2 s ``wait_for`` never fires for a call that runs here, however long
the call takes (Python 3.11's ``asyncio.wait_for``). ``submit`` queues the call
(``call_soon``) before ``wait_for`` arms its timer, in the same step of the SDK's task.
The loop moves a due timer into its ready queue only at the start of an iteration,
behind the callbacks already queued, so the call always runs before the timer can.
When the call ends, completing the returned future (the one the task waits on) queues
``wait_for``'s done-callback ahead of the timer's, which the loop moves to its ready
queue only at the next iteration's start; the task's wake-up comes after that. When
the task resumes, its future is done, and 3.11's ``wait_for`` returns the result even
if the timer went off. From Python 3.12 on, ``wait_for`` is ``asyncio.timeout``, which
cancels the task when its timer goes off: a result that arrives in the same iteration
as the timer can be lost (tests/workflows/test_on_loop_executor.py shows when), so there
``INLINE_ACTIVATIONS_SUPPORTED`` is false and the worker keeps the SDK's threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
from collections.abc import Callable
from typing import Any, TypeVar, cast

__all__ = ["INLINE_ACTIVATIONS_SUPPORTED", "OnLoopExecutor"]

T = TypeVar("T")

#: Whether ``asyncio.wait_for`` returns a result that arrives with its timeout (see above).
INLINE_ACTIVATIONS_SUPPORTED = sys.version_info < (3, 12)


class OnLoopExecutor(concurrent.futures.Executor):
    """Runs each submitted call on the event loop of the thread that submits it (never a thread of its own).

    ``submit`` must be called on a running event loop, as ``loop.run_in_executor`` does.
    ``calls`` counts the calls run.
    """

    def __init__(self) -> None:
        self.calls = 0

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        loop = asyncio.get_running_loop()
        # An asyncio future, not a concurrent one: run_in_executor hands it through as it is
        # (asyncio.wrap_future returns a future of asyncio's own unchanged), which spares each
        # activation the thread-safe wake-up (a write to the loop's self-pipe) a concurrent future
        # costs: 13 against 46 us per call, a few % of a worker's CPU per workflow. Both kinds have
        # done(), result(), exception(), cancel() and add_done_callback(), all the SDK and
        # ReplayGuard use.
        future: asyncio.Future[T] = loop.create_future()

        def run() -> None:
            if future.cancelled():
                return  # cancelled while queued
            self.calls += 1
            try:
                try:
                    result = fn(*args, **kwargs)
                finally:
                    # workflow.activate runs the workflow's own event loop, which
                    # clears the thread's running loop when it stops: give it back
                    asyncio._set_running_loop(loop)
            except BaseException as e:  # like the SDK's threads: the failure goes to the waiter
                future.set_exception(e)
            else:
                future.set_result(result)

        # from a callback of its own, not inside the submitting task's step
        loop.call_soon(run)
        return cast("concurrent.futures.Future[T]", future)
