"""Processes: non-durable Lua actors on ``process.host`` entries, and ``process.service`` supervision.

- ``ProcessSystem(app, bridge=..., client=...)``: an app's hosts and services
  (``start``/``stop``, ``spawn``, ``send``, ``cancel``, ``terminate``, ``result``).
- ``ProcessHost``: one host's processes on one asyncio loop.
- ``Service``/``Supervisor``: the lifecycle of ``process.service`` entries.
- ``Bridge``/``RuntimeBridge``: how processes reach workflows; ``moontide.deliver``
  (``deliver_activity``, ``deliver_task_queue``): how workflows reach processes;
  ``control``/``process_result`` (``moontide.control``): how other programs do.
- Pids: ``{host|run.n}`` for processes (``LocalPid``, ``moontide.protocol.ProcessPid``), never containing ``@``
  as workflow pids ``{client@worker|id}`` do.

See docs/processes.md.
"""

from ._actor import Actor
from ._control import control, process_result
from ._exit import Exit
from ._bridge import Bridge, RuntimeBridge
from ..protocol import CONTROL, DELIVER_ACTIVITY, STATUS_FILE, deliver_task_queue
from ._deliver import DeliverWorkers, deliver_activity
from ._host import ProcessHost
from ..protocol import ProcessPid as LocalPid, is_process_pid as is_local_pid, is_workflow_pid
from ._registry import Registry
from ._supervisor import Restart, Run, Service, ServiceState, Supervisor
from ._system import ProcessSystem

__all__ = [
    "CONTROL", "DELIVER_ACTIVITY", "STATUS_FILE", "Actor", "Bridge", "DeliverWorkers", "Exit", "LocalPid", "ProcessHost",
    "ProcessSystem", "Registry", "Restart", "Run", "RuntimeBridge", "Service", "ServiceState", "Supervisor",
    "control", "deliver_activity", "deliver_task_queue", "is_local_pid", "is_workflow_pid", "process_result",
]
