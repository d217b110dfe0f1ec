"""``moontide.Client``: reach running executions by pid, with no app directory.

A ``Client`` wraps one Temporal connection and speaks Moontide's pids
(``moontide.protocol``): a workflow's ``{client@worker|workflow_id}`` and a
process's ``{host|run.n}``. It starts workflows, sends messages, cancels,
terminates, describes, waits for results and lists workflows; every Temporal
failure it meets comes back as a ``moontide.errors`` error (``moontide.failures``).

It connects the way Temporal's own tools do (``temporalio.envconfig``)::

    client = await moontide.Client.connect()                 # TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
    client = await moontide.Client.connect(profile="prod")   # TEMPORAL_API_KEY, TEMPORAL_TLS_*,
    client = await moontide.Client.connect("host:7233")      # temporal.toml profiles (TEMPORAL_PROFILE)
    print(await client.result("{app:client@app:worker|order-1}"))

This module is also the one place that builds Temporal connections
(``connect_temporal``), reads a ``temporal.client`` entry's connection
settings (``connect_options``) and starts a workflow (``Client.start``).
``moontide.Runtime`` serves an app and holds a ``Client`` per ``temporal.client``.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.common import RawValue
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from . import durations, entries, errors, values
from .values import message_payload
from .failures import rpc_error, workflow_failed
from .protocol import CANCEL_FROM_SIGNAL, MEMO_CODE, STATUS_QUERY, ProcessPid, WorkflowPid, is_process_pid, parse_pid

__all__ = ["Client", "ConnectSettings", "connect_options", "connect_settings", "connect_temporal", "encode_args",
           "encode_messages"]

#: How many started runs ``Client.result`` remembers (a run ID each: ~200 bytes).
_STARTED_RUNS_KEPT = 10_000
#: What a connection defaults to when nothing names a server: Temporal's own default.
DEFAULT_ADDRESS = "localhost:7233"


@dataclass(frozen=True)
class ConnectSettings:
    """Where and how to connect: ``temporalio.client.Client.connect``'s address and keyword arguments."""

    address: str
    kw: Mapping[str, Any]


def connect_settings(address: str | None = None, *, namespace: str | None = None, profile: str | None = None,
                     config_file: str | os.PathLike[str] | None = None, api_key: str | None = None,
                     env: Mapping[str, str] | None = None) -> ConnectSettings:
    """Connection settings as Temporal's CLI reads them, explicit arguments first.

    From ``temporal.toml`` (``TEMPORAL_CONFIG_FILE``, else the user's config dir), profile
    ``profile`` (``TEMPORAL_PROFILE``, else "default"), then the environment:
    ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``,
    ``TEMPORAL_TLS``, ``TEMPORAL_TLS_CLIENT_CERT_PATH``, ``TEMPORAL_TLS_CLIENT_KEY_PATH``,
    ``TEMPORAL_TLS_SERVER_CA_CERT_PATH``, ``TEMPORAL_TLS_SERVER_NAME`` ...
    """
    from temporalio.envconfig import ClientConfigProfile

    source = Path(config_file) if config_file else None
    try:
        prof = ClientConfigProfile.load(profile=profile, config_source=source, override_env_vars=env)
        kw: dict[str, Any] = dict(prof.to_client_connect_config())
    except Exception as e:  # a missing profile, an unreadable file, a bad TLS path
        raise errors.Invalid(f"Temporal connection settings: {e}") from None
    target = kw.pop("target_host", None)
    if namespace:
        kw["namespace"] = namespace
    if api_key:
        kw["api_key"] = api_key
    return ConnectSettings(address or target or DEFAULT_ADDRESS, kw)


async def connect_temporal(address: str, *, what: str = "", **kw: Any) -> TemporalClient:
    """A Temporal connection (Unavailable, naming ``what``, when it cannot be made)."""
    try:
        return await TemporalClient.connect(address, **kw)
    except Exception as e:
        prefix = f"{what}: " if what else ""
        raise errors.Unavailable(f"{prefix}cannot reach Temporal at {address}: {e}") from None


def connect_options(entry: entries.Entry, root: Path) -> dict[str, Any]:
    """``Client.connect`` keyword arguments (but the address) from a ``temporal.client`` entry.

    ``${env:NAME}`` in auth and TLS fields is read now; files are relative to ``root`` (the app).
    """
    from temporalio.service import KeepAliveConfig, TLSConfig

    data = entries.apply_defaults(entries.SCHEMAS["temporal.client"], entry.data)
    auth, tls = data["auth"], data["tls"]

    def value(section: str, name: str) -> str | None:
        text = entries.expand_env({"auth": auth, "tls": tls}[section].get(name), f"{entry.id}: {section}.{name}")
        return str(text) if text else None

    def read(section: str, name: str) -> bytes | None:
        path = value(section, name)
        if path is None:
            return None
        try:
            return (root / path).read_bytes()
        except OSError as e:
            raise errors.Invalid(f"{entry.id}: {section}.{name}: cannot read {path}: {e.strerror or e}") from None

    def ms(name: str) -> int:
        return durations.parse(data[name]) // 1_000_000

    kw: dict[str, Any] = {
        "namespace": data["namespace"],
        "connect_timeout": timedelta(milliseconds=ms("connection_timeout")),
        "keep_alive_config": KeepAliveConfig(interval_millis=ms("keep_alive_time"),
                                             timeout_millis=ms("keep_alive_timeout")),
    }
    if auth["type"] == "api_key":
        key_file = read("auth", "api_key_file")
        kw["api_key"] = key_file.decode().strip() if key_file is not None else value("auth", "api_key")
    if tls["enabled"] or auth["type"] == "mtls":
        pem = {name: (value("auth", name) or "").encode() or None for name in ("cert_pem", "key_pem")}
        kw["tls"] = TLSConfig(server_root_ca_cert=read("tls", "ca_file"),
                              client_cert=read("auth", "cert_file") or pem["cert_pem"],
                              client_private_key=read("auth", "key_file") or pem["key_pem"],
                              domain=value("tls", "server_name"))
    return kw


class Client:
    """Moontide's view of one Temporal connection: executions by pid.

    ``temporal``: the connection (``temporalio.client.Client``); ``client_id``: the
    ``temporal.client`` entry it stands for in the pids it makes, when known.
    """

    def __init__(self, temporal: TemporalClient, *, client_id: str | None = None) -> None:
        self.temporal = temporal
        self.client_id = client_id
        #: workflow ID -> run ID of the executions this client started, newest last, so that
        #: ``result`` waits on that run without the server looking up the ID's current run
        self._started_runs: collections.OrderedDict[str, str] = collections.OrderedDict()

    @classmethod
    async def connect(cls, address: str | None = None, *, namespace: str | None = None, profile: str | None = None,
                      config_file: str | os.PathLike[str] | None = None, api_key: str | None = None,
                      client_id: str | None = None, **kw: Any) -> Client:
        """Connect as Temporal's tools do (``connect_settings``); ``kw`` goes to ``Client.connect`` as is."""
        s = connect_settings(address, namespace=namespace, profile=profile, config_file=config_file,
                             api_key=api_key)
        return cls(await connect_temporal(s.address, **{**s.kw, **kw}), client_id=client_id)

    @property
    def namespace(self) -> str:
        return self.temporal.namespace

    # -- start ------------------------------------------------------------------------------
    async def start(self, workflow_type: str, args: Sequence[Any] = (), *, workflow_id: str, task_queue: str,
                    worker: str, conflict: str = "fail", eager: bool = False,
                    messages: Sequence[tuple[str, Any]] = (), sender: str | None = None,
                    start_kw: Mapping[str, Any] | None = None) -> WorkflowPid:
        """Start a workflow: the one place Moontide starts one from outside a workflow.

        ``args``: JSON values; ``worker``: the ``temporal.worker`` entry the pid names;
        ``conflict``: what a start of a running ID does (``use_existing``, ``fail`` or
        ``terminate_existing``; AlreadyExists for ``fail``); ``messages``: (topic, JSON value)
        signals it gets first, the first with the start itself (signal-with-start), ``sender``
        their ``msg:from()``; ``start_kw``: more ``start_workflow`` arguments (memo, timeouts,
        search attributes ... from ``moontide.workflows.spawn_options``).
        """
        payloads = encode_args(args, workflow_type)
        signals = encode_messages(messages, sender, workflow_type)
        kw = dict(start_kw or {})
        pid = WorkflowPid(self.client_id or "temporal", worker, workflow_id)
        if signals and conflict != "fail":  # Temporal's signal-with-start has no "fail"
            (topic, first), signals = signals[0], signals[1:]
            kw.update(start_signal=topic, start_signal_args=[first])
            eager = False
        try:
            handle = await self.temporal.start_workflow(workflow_type, args=payloads, id=workflow_id,
                                                        task_queue=task_queue,
                                                        id_conflict_policy=temporal_conflict_policy(conflict),
                                                        request_eager_start=eager, **kw)
        except WorkflowAlreadyStartedError:
            raise errors.AlreadyExists(f"workflow {workflow_id} is already running (its spawn asked for an error "
                                       "then: workflow.id_conflict_policy \"fail\" or "
                                       "workflow.execution_error_when_already_started)") from None
        except RPCError as e:
            raise rpc_error(pid, e) from None
        for topic, payload in signals:
            await handle.signal(topic, payload)
        if handle.result_run_id:
            self._started_runs[workflow_id] = handle.result_run_id
            self._started_runs.move_to_end(workflow_id)
            while len(self._started_runs) > _STARTED_RUNS_KEPT:
                self._started_runs.popitem(last=False)
        return pid

    def started_run(self, workflow_id: str) -> str | None:
        """The run ID of the execution of ``workflow_id`` this client last started (or found running)."""
        return self._started_runs.get(workflow_id)

    # -- by pid ------------------------------------------------------------------------------
    def handle(self, pid: WorkflowPid | str, *, started_run: bool = False) -> WorkflowHandle[Any, Any]:
        """The workflow ID's handle; ``started_run``: bound to the run this client started, if it did."""
        p = WorkflowPid.parse(pid) if isinstance(pid, str) else pid
        run_id = self._started_runs.get(p.workflow_id) if started_run else None
        # results come raw and are decoded by moontide.values (an Invalid, not a RecursionError)
        return self.temporal.get_workflow_handle(p.workflow_id, run_id=run_id, result_type=RawValue)

    async def send(self, pid: WorkflowPid | ProcessPid | str, topic: str, payload: Any = None, *,
                   sender: str | None = None) -> None:
        """Deliver a message: a Temporal signal named ``topic`` with one JSON payload (to a process: its inbox)."""
        encoded = values.encode(payload, "payload", f"send to {pid}")
        p = parse_pid(pid)
        if isinstance(p, ProcessPid):
            await self.process_request("send", p, topic, encoded, sender)
            return
        try:
            await self.handle(p).signal(topic, message_payload(encoded, sender))
        except RPCError as e:
            raise rpc_error(pid, e) from None

    async def cancel(self, pid: WorkflowPid | ProcessPid | str, reason: str | None = None, *,
                     sender: str | None = None) -> None:
        """Ask the execution to cancel: Lua sees a pid.cancel event (with ``reason`` and
        ``from`` = ``sender``) and Canceled errors."""
        p = parse_pid(pid)
        if isinstance(p, ProcessPid):
            await self.process_request("cancel", p, reason, sender)
            return
        try:
            handle = self.handle(p)
            if sender:  # before the request, so the workflow knows it when the request comes
                await handle.signal(CANCEL_FROM_SIGNAL, sender)
            await handle.cancel(reason=reason or "")
        except RPCError as e:
            raise rpc_error(pid, e) from None

    async def terminate(self, pid: WorkflowPid | ProcessPid | str, reason: str | None = None) -> None:
        """End the execution at once; no Lua runs."""
        p = parse_pid(pid)
        if isinstance(p, ProcessPid):
            await self.process_request("terminate", p, reason)
            return
        try:
            await self.handle(p).terminate(reason=reason)
        except RPCError as e:
            raise rpc_error(pid, e) from None

    async def status(self, pid: WorkflowPid | ProcessPid | str) -> dict[str, Any]:
        """Where the execution is: Temporal's status, the Lua entry, its blocking point, pending activities.

        For a process: RUNNING with what it waits for and its inbox, or how it ended.
        """
        p = parse_pid(pid)
        if isinstance(p, ProcessPid):
            return dict(await self.process_request("status", p))
        handle = self.handle(p)
        try:
            desc = await handle.describe()
        except RPCError as e:
            raise rpc_error(pid, e) from None
        out: dict[str, Any] = {
            "pid": str(pid), "status": desc.status.name if desc.status else "UNKNOWN",
            "workflow_type": desc.workflow_type, "run_id": desc.run_id,
            "start_time": desc.start_time.isoformat() if desc.start_time else None,
            "close_time": desc.close_time.isoformat() if desc.close_time else None,
            "history_length": desc.history_length,
            "pending_activities": [
                {"activity": a.activity_type.name, "attempt": a.attempt, "state": _activity_state(a.state),
                 "last_failure": a.last_failure.message if a.HasField("last_failure") else None}
                for a in desc.raw_description.pending_activities],
        }
        if desc.status and desc.status.name == "RUNNING":
            try:
                # bounded: with no worker polling, a query waits for one (~30 s)
                out["lua"] = await handle.query(STATUS_QUERY, rpc_timeout=timedelta(seconds=5))
            except Exception as e:  # a worker may be down: the server's view still helps
                reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                if isinstance(e, RPCError) and e.status in (RPCStatusCode.DEADLINE_EXCEEDED,
                                                            RPCStatusCode.CANCELLED):
                    reason = "no worker answered within 5s; is a worker serving its task queue?"
                out["lua"] = {"unavailable": reason}
        # the code it was pinned to at start, and the code its worker says it runs (an app knows more:
        # ``Runtime.status`` adds its newest code and the versioning behavior)
        started = await desc.memo_value(MEMO_CODE, None)
        out["code"] = {"started_with": started, "runs": (out.get("lua") or {}).get("code") or started}
        return out

    async def result(self, pid: WorkflowPid | ProcessPid | str) -> Any:
        """Wait for the execution; its result, or WorkflowFailed (ProcessFailed) with the failure.

        Other errors say the wait itself failed: Invalid (malformed pid),
        NotFound (no such execution), Unavailable (Temporal unreachable).
        """
        p = parse_pid(pid)
        if isinstance(p, ProcessPid):
            from .processes import process_result

            return _process_outcome(await process_result(self.temporal, str(p)))
        # a run this client started: wait on it (following continue-as-new) rather than the ID's current run
        handle = self.handle(p, started_run=True)
        try:
            raw = await handle.result()
        except WorkflowFailureError as e:
            raise workflow_failed(e.cause) from None
        except RPCError as e:  # e.g. no execution with that ID: an answer, not a traceback
            raise rpc_error(pid, e) from None
        if raw is None:
            return None
        return values.from_payload(raw.payload, "result", f"the result of {pid} cannot be decoded")

    async def list(self, query: str | None = None, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Workflow executions matching a visibility ``query`` (Temporal's list filter), newest first."""
        out: list[dict[str, Any]] = []
        try:
            async for w in self.temporal.list_workflows(query or None, limit=limit):
                out.append({"workflow_id": w.id, "run_id": w.run_id, "workflow_type": w.workflow_type,
                            "status": w.status.name if w.status else "UNKNOWN", "task_queue": w.task_queue,
                            "start_time": w.start_time.isoformat() if w.start_time else None,
                            "close_time": w.close_time.isoformat() if w.close_time else None})
        except RPCError as e:
            if e.status == RPCStatusCode.INVALID_ARGUMENT:
                raise errors.Invalid(f"list query {query!r}: {e.message}") from None
            raise rpc_error("list", e) from None
        return out

    async def process_request(self, op: str, pid: ProcessPid, *args: Any) -> Any:
        """A ``moontide.control`` request to the host run of process ``pid``."""
        from .processes import control

        return await control(self.temporal, op, str(pid), *args)


def temporal_conflict_policy(conflict: str) -> Any:
    """What a start of a running workflow ID does: ``use_existing``, ``fail`` or ``terminate_existing``."""
    from temporalio.common import WorkflowIDConflictPolicy

    return {"use_existing": WorkflowIDConflictPolicy.USE_EXISTING, "fail": WorkflowIDConflictPolicy.FAIL,
            "terminate_existing": WorkflowIDConflictPolicy.TERMINATE_EXISTING}[conflict]


def encode_args(args: Sequence[Any], what: str) -> list[RawValue]:
    """A start's arguments as JSON payloads (Invalid naming the argument); encoded ones stay as they are."""
    return [a if isinstance(a, RawValue) else RawValue(values.json_payload(values.encode(a, f"argument {i}",
                                                                                         f"spawn of {what}")))
            for i, a in enumerate(args, 1)]


def encode_messages(messages: Sequence[tuple[str, Any]], sender: str | None, what: str) -> list[tuple[str, RawValue]]:
    """A start's first messages as (topic, payload) signals; encoded ones stay as they are."""
    return [(str(t), p if isinstance(p, RawValue) else
             message_payload(values.encode(p, "payload", f"startup message {t!r} of {what}"), sender))
            for t, p in messages]


def _process_outcome(out: Mapping[str, Any]) -> Any:
    if "error" in out:
        e = out["error"]
        raise errors.ProcessFailed(e["message"], kind=e["kind"], details=e.get("details"))
    return out["value"]


def is_process(pid: WorkflowPid | ProcessPid | str) -> bool:
    return isinstance(pid, ProcessPid) or (isinstance(pid, str) and is_process_pid(pid.strip()))


def _activity_state(value: int) -> str:
    from temporalio.api.enums.v1 import PendingActivityState

    return PendingActivityState.Name(cast(Any, value)).removeprefix("PENDING_ACTIVITY_STATE_")
