"""Workflow -> process messages: the ``moontide.deliver`` activity, served next to each process host.

A workflow cannot reach a Python object, so ``process.send`` from a workflow to
a process pid ``{host|run.n}`` becomes an activity. Each run of a process host
polls a task queue of its own, named from the pid (``deliver_task_queue``), so
the activity lands on the very host that runs the process, wherever it is. The
workflow driver schedules it like this (``moontide.workflows._workflow``)::

    await workflow.execute_activity(
        DELIVER_ACTIVITY, args=[pid, topic, payload_json, sender_pid],
        task_queue=deliver_task_queue(pid),
        schedule_to_start_timeout=timedelta(seconds=30),   # the host is gone: NotFound, not a hang
        start_to_close_timeout=timedelta(seconds=30),
        retry_policy=RetryPolicy(maximum_attempts=3))

The result is recorded in the workflow's history like any activity's, so a
replay does not send twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from .. import errors
from ..lifecycle import stop_workers
from ..failures import application_error
from ..protocol import DELIVER_ACTIVITY, deliver_task_queue, host_task_queue

if TYPE_CHECKING:
    from ._system import ProcessSystem

__all__ = ["DELIVER_ACTIVITY", "DeliverWorkers", "deliver_activity", "deliver_task_queue"]

log = logging.getLogger("moontide.processes")


def deliver_activity(system: ProcessSystem) -> Any:
    """The ``moontide.deliver`` activity for ``system``: (pid, topic, payload_json, sender) -> true."""

    @activity.defn(name=DELIVER_ACTIVITY)
    async def deliver(pid: str, topic: str, payload_json: str | None, sender: str | None = None) -> bool:
        try:
            await system.deliver(pid, topic, payload_json, sender)
        except errors.MoontideError as e:
            raise application_error(e) from None
        return True

    return deliver


class DeliverWorkers:
    """One small Temporal worker per process host, serving ``moontide.deliver`` (and ``moontide.control``) on the host's queue."""

    def __init__(self, system: ProcessSystem, client: Client) -> None:
        self.system = system
        self.client = client
        self.workers: list[Worker] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        from ._control import ControlWorkflow, control_activity

        acts = [deliver_activity(self.system), control_activity(self.system)]
        for host in self.system.hosts.values():
            queue = host_task_queue(host.id, host.run_id)
            # also moontide.control: requests from outside the app (see _control)
            worker = Worker(self.client, task_queue=queue, activities=acts, workflows=[ControlWorkflow],
                            max_concurrent_activities=100, max_cached_workflows=10)
            self.workers.append(worker)
            self._tasks.append(asyncio.create_task(worker.run(), name=f"deliver {host.id}"))
            log.info("process host %s takes workflow messages on task queue %r", host.id, queue)
        from ._control import polled

        # Until the server lists our pollers, a request from outside would be told the host is not running.
        for host in self.system.hosts.values():
            queue = host_task_queue(host.id, host.run_id)
            for _ in range(100):
                if await polled(self.client, queue):
                    break
                await asyncio.sleep(0.05)
            else:
                log.warning("process host %s: the server does not list a poller on %r yet", host.id, queue)

    async def stop(self) -> None:
        await stop_workers(self.workers, self._tasks)
        self.workers.clear()
