"""Moontide's wire names: what a pid looks like, and the names it reserves on Temporal.

The lowest layer besides ``errors``: every other module builds and reads pids
and reserved names here, and nowhere else.

Pids
----
A **workflow** pid names the ``temporal.client`` entry, the ``temporal.worker``
entry and the Temporal workflow ID::

    {app:temporal@app:worker|order-7f3a2c}          WorkflowPid(client, worker, workflow_id)

A **process** pid names the ``process.host`` entry, the run of that host (hex
digits, random per host start, so a pid kept across an app restart never
reaches a different process) and a counter in hex::

    {app:processes|3f9a1c.1a}                       ProcessPid(host, run, n)

Entry IDs cannot hold ``@``, ``|`` or braces, so the two forms never overlap; a
workflow pid always holds an ``@``. Anything not starting with ``{`` is a
registry name (``process.send("sessions", ...)``).

Reserved names
--------------
=========================  ==========================================================
``moontide.deliver``       activity a workflow runs to message a process
                           (on the host run's task queue, ``deliver_task_queue``)
``moontide.control``       workflow and activity: requests from outside the app to
                           a process (send, cancel, terminate, status, wait)
``moontide.cancel_from``   signal naming the canceller, sent just before a cancel
``moontide.terminate``     activity a workflow runs to terminate another execution
``moontide.status``        query: where a workflow's Lua is (``moontide status``)
``moontide.upgrade``       signal from ``moontide upgrade``: this run now runs other code
                           (its worker's code store says which); a no-op on that code
``moontide.code``          memo: digest of the Lua code an execution is pinned to
``moontide.ctx``           memo: the values its ctx module answers
``moontide.k8s``           memo: the Workflow custom resource it was started for
``moontide.inbox``/        memo: unread messages and events carried through
``moontide.events``        continue-as-new
``moontide.deliver/H/R``   task queue of process host ``H``, run ``R``
``moontide-from``          payload metadata: the pid that sent a message
=========================  ==========================================================

Memo keys starting with ``moontide.`` are Moontide's own (``RESERVED_PREFIX``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import errors

__all__ = [
    "CANCEL_FROM_SIGNAL", "CONTROL", "DELIVER_ACTIVITY", "FROM_METADATA", "MEMO_CODE", "MEMO_CONTEXT", "MEMO_EVENTS", "MEMO_INBOX", "MEMO_K8S",
    "RESERVED_PREFIX", "STATE_DIR", "STATUS_FILE", "STATUS_QUERY", "TERMINATE_ACTIVITY", "UPGRADE_SIGNAL", "ProcessPid", "WorkflowPid",
    "deliver_task_queue", "host_task_queue", "is_process_pid", "is_workflow_pid", "parse_pid",
]

#: Prefix of every name Moontide reserves (memo keys, signals, activities, queries).
RESERVED_PREFIX = "moontide."
#: Activity a workflow runs to send a message to a process pid.
DELIVER_ACTIVITY = "moontide.deliver"
#: Workflow (and activity) answering requests to a process from outside its app.
CONTROL = "moontide.control"
#: Signal a canceller sends just before its cancel request, naming itself (its pid):
#: Temporal's cancel request carries a reason to the workflow, but not who sent it.
CANCEL_FROM_SIGNAL = "moontide.cancel_from"
#: Activity a workflow runs to terminate another execution (``process.terminate``).
TERMINATE_ACTIVITY = "moontide.terminate"
#: Query answering where a running workflow's Lua is.
STATUS_QUERY = "moontide.status"
#: Signal ``moontide upgrade`` sends a pinned run after recording that it runs other code: a worker holding
#: the run on its old code fails that workflow task, and replays the run on the new code (on which it is a no-op).
UPGRADE_SIGNAL = "moontide.upgrade"
#: Memo key holding the digest of the Lua code a workflow execution is pinned to.
MEMO_CODE = "moontide.code"
#: Memo key holding the values a workflow's ctx module answers.
MEMO_CONTEXT = "moontide.ctx"
#: Memo key naming the Workflow custom resource (``namespace/name``) an execution was started for.
MEMO_K8S = "moontide.k8s"
#: Memo keys carrying unread messages and process events from a run to the one it continues as.
MEMO_INBOX = "moontide.inbox"
MEMO_EVENTS = "moontide.events"
#: Payload metadata naming the sender pid of a message (absent from plain Temporal clients).
FROM_METADATA = "moontide-from"
#: Per-app state (embedded server database, pinned code, process status) lives in APP_DIR/.moontide.
STATE_DIR = ".moontide"
#: The file in STATE_DIR where a running app writes its services and processes (``moontide ps``).
STATUS_FILE = "processes.json"

_NAME = r"[^@|{}]+"
_WORKFLOW = re.compile(rf"^\{{(?P<client>{_NAME})@(?P<worker>[^|{{}}]+)\|(?P<id>[^{{}}]+)\}}$")
_PROCESS = re.compile(rf"^\{{(?P<host>{_NAME})\|(?P<run>[0-9a-f]+)\.(?P<n>[0-9a-f]+)\}}$")


@dataclass(frozen=True)
class WorkflowPid:
    """A workflow execution: ``{client@worker|workflow_id}``."""

    client: str
    host: str
    workflow_id: str

    def __str__(self) -> str:
        return f"{{{self.client}@{self.host}|{self.workflow_id}}}"

    @property
    def worker(self) -> str:
        """The ``temporal.worker`` entry (``host``, as Lua calls it)."""
        return self.host

    @classmethod
    def parse(cls, text: str) -> WorkflowPid:
        m = _WORKFLOW.match(str(text).strip())
        if not m:
            raise errors.Invalid(f"invalid pid {text!r}: expected '{{client@worker|workflow_id}}' (a workflow) "
                                 "or '{host|run.n}' (a process)")
        return cls(m["client"], m["worker"], m["id"])


@dataclass(frozen=True)
class ProcessPid:
    """A process on a ``process.host``: ``{host|run.n}``."""

    host: str
    run: str
    n: int

    def __str__(self) -> str:
        return f"{{{self.host}|{self.run}.{self.n:x}}}"

    @property
    def task_queue(self) -> str:
        """The task queue of the host run that owns this process."""
        return host_task_queue(self.host, self.run)

    @classmethod
    def parse(cls, text: str) -> ProcessPid:
        m = _PROCESS.match(str(text).strip())
        if not m:
            raise errors.Invalid(f"invalid process pid {text!r}: expected '{{host|run.n}}', e.g. '{{app:host|3f9a1c.1}}'")
        return cls(m["host"], m["run"], int(m["n"], 16))


def parse_pid(text: str | WorkflowPid | ProcessPid) -> WorkflowPid | ProcessPid:
    """A workflow or process pid; Invalid if ``text`` is neither."""
    if isinstance(text, (WorkflowPid, ProcessPid)):
        return text
    return ProcessPid.parse(text) if is_process_pid(text) else WorkflowPid.parse(text)


def is_process_pid(text: str) -> bool:
    return _PROCESS.match(text) is not None


def is_workflow_pid(text: str) -> bool:
    return _WORKFLOW.match(text) is not None


def host_task_queue(host: str, run: str) -> str:
    """The task queue a process host run serves ``moontide.deliver`` and ``moontide.control`` on."""
    return f"{DELIVER_ACTIVITY}/{host}/{run}"


def deliver_task_queue(pid: str) -> str:
    """The task queue served by the host run that owns process ``pid``."""
    return ProcessPid.parse(pid).task_queue
