"""``OnLoopExecutor``, driven the way the Temporal SDK drives its ``workflow_task_executor``.

The SDK runs each activation as ``asyncio.wait_for(loop.run_in_executor(executor, workflow.activate, act), 2)``
(temporalio/worker/_workflow.py, ``_handle_activation`` and the eviction path): here the
same calls, with the 2 s deadlock timeout scaled down below calls that block longer than it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from moontide.workflows._inline import INLINE_ACTIVATIONS_SUPPORTED, OnLoopExecutor

#: the SDK's deadlock timeout, scaled down; every call below blocks the loop longer than this
TIMEOUT = 0.05
LONG = 4 * TIMEOUT


def blocking(value: Any, seconds: float = LONG) -> Any:
    """An activation that holds the loop longer than the timeout, like a long Lua activation."""
    time.sleep(seconds)
    return value


async def sdk_activation(executor: OnLoopExecutor, fn: Any, *args: Any) -> Any:
    return await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(executor, fn, *args), TIMEOUT)


pytestmark = pytest.mark.skipif(not INLINE_ACTIVATIONS_SUPPORTED, reason="the worker keeps threads on this Python")


async def test_a_call_runs_on_the_loop_thread_outside_any_task() -> None:
    executor = OnLoopExecutor()
    seen: list[tuple[int, asyncio.Task[Any] | None]] = []

    def where() -> str:
        seen.append((threading.get_ident(), asyncio.current_task()))
        return "done"

    assert await sdk_activation(executor, where) == "done"
    # this thread, and from a callback of its own: not inside the step of the task that submitted it
    assert seen == [(threading.get_ident(), None)]
    assert executor.calls == 1


async def test_a_call_longer_than_the_deadlock_timeout_returns_its_result() -> None:
    assert await sdk_activation(OnLoopExecutor(), blocking, "late") == "late"


async def test_queued_calls_all_longer_than_the_timeout_return_their_results() -> None:
    # each waits its turn on the loop behind the others: the last starts well after its own timer is due
    executor = OnLoopExecutor()
    results = await asyncio.gather(*(sdk_activation(executor, blocking, i) for i in range(4)))
    assert results == [0, 1, 2, 3]
    assert executor.calls == 4


async def test_a_call_that_starts_after_its_timer_is_due_returns_its_result() -> None:
    # another callback holds the loop right after the submitting step: the timer is due before the call runs
    loop = asyncio.get_running_loop()
    waiter = asyncio.ensure_future(sdk_activation(OnLoopExecutor(), str, "quick"))
    loop.call_soon(time.sleep, LONG)
    assert await waiter == "quick"


async def test_a_failing_call_raises_in_the_waiter() -> None:
    def fails() -> None:
        time.sleep(LONG)
        raise ValueError("from the activation")

    with pytest.raises(ValueError, match="from the activation"):
        await sdk_activation(OnLoopExecutor(), fails)


async def test_the_running_loop_comes_back_after_a_call_that_clears_it() -> None:
    # workflow.activate runs the workflow's own event loop, which unsets the thread's running loop
    loop = asyncio.get_running_loop()

    def like_activate() -> str:
        asyncio._set_running_loop(None)
        return "ok"

    assert await sdk_activation(OnLoopExecutor(), like_activate) == "ok"
    assert asyncio.get_running_loop() is loop
    await asyncio.sleep(0)  # and the loop's own callbacks still find it
    assert asyncio.get_running_loop() is loop


async def test_a_call_cancelled_while_queued_never_runs() -> None:
    executor = OnLoopExecutor()
    ran: list[int] = []
    future = executor.submit(ran.append, 1)
    assert future.cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert ran == [] and executor.calls == 0


async def under_a_cancelling_timeout(fn: Any, *args: Any) -> Any:
    """The SDK's activation under ``asyncio.timeout``: how ``wait_for`` works from Python 3.12 on."""
    async with asyncio.timeout(TIMEOUT):
        return await asyncio.get_running_loop().run_in_executor(OnLoopExecutor(), fn, *args)


async def test_a_timeout_that_cancels_its_task_can_lose_the_result() -> None:
    """Why the executor relies on Python 3.11's ``wait_for``: under a timeout that cancels its task
    (``asyncio.timeout``, 3.12's ``wait_for``), a call that itself holds the loop past the timeout still
    gets its result to the task first, but when another callback held the loop before the call ran, the
    timer cancels the task and the result is lost (hence the worker's threads on later Pythons)."""
    assert await under_a_cancelling_timeout(blocking, "kept") == "kept"
    waiter = asyncio.ensure_future(under_a_cancelling_timeout(str, "quick"))
    asyncio.get_running_loop().call_soon(time.sleep, LONG)
    with pytest.raises(TimeoutError):
        await waiter
