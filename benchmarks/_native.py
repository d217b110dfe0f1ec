"""The benchmark workflows written natively for the Temporal Python SDK.

Kept in a module of its own that imports only ``temporalio`` and the standard
library: a sandboxed worker re-imports the workflow's module for every run, so
a heavy module here would make the sandboxed variant look worse than it is.
The same classes serve the sandboxed variant (the SDK's default runner) and the
unsandboxed one (``UnsandboxedWorkflowRunner``), so the code is identical.

Activity options are Moontide's ``funcs.call`` defaults (60 s start-to-close,
5 attempts with 1 s..30 s backoff), so both sides schedule the same commands.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

TIMEOUT = timedelta(seconds=60)
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=30), maximum_attempts=5)


@activity.defn(name="bench_step")
def step(x: int) -> int:
    """The trivial activity: a plain (sync) Python function, run on the worker's thread pool."""
    return x + 1


@activity.defn(name="bench_step")
async def step_async(x: int) -> int:
    """The same activity as a coroutine, run on the worker's event loop (variant ``native-async``)."""
    return x + 1


@workflow.defn(name="NativeTwoCalls")
class TwoCalls:
    """workflow_cpu.py: two activity calls in sequence."""

    @workflow.run
    async def run(self, n: int) -> int:
        a = await workflow.execute_activity(step, n, start_to_close_timeout=TIMEOUT, retry_policy=RETRY)
        return await workflow.execute_activity(step, a, start_to_close_timeout=TIMEOUT, retry_policy=RETRY)


@workflow.defn(name="NativeParked")
class Parked:
    """memory_cached.py: park in a durable timer for ``seconds``."""

    @workflow.run
    async def run(self, seconds: float) -> bool:
        await workflow.sleep(seconds)
        return True


@workflow.defn(name="NativeManyCalls")
class ManyCalls:
    """replay.py: ``n`` activity calls in sequence."""

    @workflow.run
    async def run(self, n: int) -> int:
        x = 0
        for _ in range(n):
            x = await workflow.execute_activity(step, x, start_to_close_timeout=TIMEOUT, retry_policy=RETRY)
        return x


WORKFLOWS = [TwoCalls, Parked, ManyCalls]
