"""Workflow CRs -> Temporal executions: start exactly once, deliver signals once, mirror the outcome.

Exactly once: the workflow ID is derived from the CR (``spec.workflowId``, else
``k8s-<namespace>-<name>-<uid[:8]>``) and the start uses id conflict policy
USE_EXISTING with reuse policy REJECT_DUPLICATE. A second start (the operator
killed between starting and writing the status, a second replica, a resync)
returns the same run; a start after it closed is refused and the closed run is
described instead. Signals carry a request ID derived from the CR uid and the
signal's name, which the Temporal server deduplicates, so one that was sent but
not yet recorded in ``status.signals`` is not delivered twice either.

The execution is pinned to the Lua code of the worker's deployed bundle (memo
``moontide.code``), the code its pods run. Who calls it: ``handlers``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lightkube.resources.core_v1 import ConfigMap, Secret

from .. import errors, values
from ..protocol import WorkflowPid
from ..entries import App, resolve_ref
from ..k8s import bundle, objects
from . import conditions
from ..k8s.kinds import ANNOTATION_BUNDLE_HASH, WORKFLOW
from ..k8s.config import OperatorConfig
from ..k8s.health import metric
from ..k8s.kube import CUSTOM_RESOURCES, Kube, KubeError, custom_resource

__all__ = ["TERMINAL", "Spawner", "Target", "Waiting", "failed_fields", "workflow_id"]

log = logging.getLogger("moontide.operator")

TERMINAL = frozenset({"Succeeded", "Failed", "Canceled", "Terminated", "TimedOut"})
_SPAWNS = metric("Counter", "moontide_operator_workflow_starts_total", "Workflow CR starts, by outcome.",
                 ("outcome",))
_START_LATENCY = metric("Histogram", "moontide_operator_workflow_start_seconds",
                        "From a Workflow CR's creation to its execution's start.",
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))
_SIGNALS = metric("Counter", "moontide_operator_signals_total", "Signals delivered from Workflow CRs.", ("outcome",))
_FINISHED = metric("Counter", "moontide_operator_workflows_finished_total", "Executions seen closing, by phase.",
                   ("phase",))
_SIGNAL_NAMESPACE = uuid.UUID("6f1c1f3e-6b1e-4c55-9a36-0d9e1f1e7a11")


#: The execution cannot start yet (no worker, no bundle, no such workflow): retry after ``delay`` seconds.
Waiting = errors.NotReady


def workflow_id(body: Mapping[str, Any]) -> str:
    """The Temporal workflow ID of a Workflow CR: explicit, or derived from namespace, name and uid."""
    explicit = (body.get("spec") or {}).get("workflowId")
    if explicit:
        return str(explicit)
    meta = body["metadata"]
    return f"k8s-{meta['namespace']}-{meta['name']}-{str(meta['uid'])[:8]}"


#: The phase of a Workflow CR whose execution ended with an error of this kind (other kinds: ``Failed``).
_ENDED = {"Canceled": "Canceled", "Terminated": "Terminated", "Timeout": "TimedOut"}


def failed_fields(cause: BaseException | None) -> dict[str, Any]:
    """The status fields of a Workflow CR whose execution ended in ``cause`` (``WorkflowFailureError.cause``)."""
    from ..failures import workflow_failed

    failed = workflow_failed(cause)
    phase = _ENDED.get(failed.kind, "Failed")
    return {"phase": phase, "message": failed.message} | ({"errorKind": failed.kind} if phase == "Failed" else {})


@dataclass(frozen=True)
class Target:
    """Where a Workflow CR's execution runs, resolved from the worker's deployed bundle."""

    worker_id: str
    client_id: str
    task_queue: str
    code_digest: str
    client_spec: Mapping[str, Any]
    app: App | None = None
    """The bundle's app (it types the options' search attributes)."""


#: Options a Workflow CR sets elsewhere: its ID, and exactly-once starts.
_CR_OWNED = ("id", "id_reuse_policy", "id_conflict_policy", "execution_error_when_already_started", "task_queue")


def start_options(spec: Mapping[str, Any], target: Target) -> dict[str, Any]:
    """Keyword arguments of the CR's start: ``spec.options`` read as Lua's spawn options, then
    ``spec.executionTimeout``; raises errors.Invalid naming the option."""
    from .. import durations
    from ..workflows import spawn_options

    options = dict(spec.get("options") or {})
    for key in options:
        name = str(key).removeprefix("temporal.").removeprefix("workflow.")
        if name in _CR_OWNED:
            raise errors.Invalid(f"spec.options[{key!r}]: a Workflow CR sets this itself "
                                 "(spec.workflowId; it starts its execution exactly once)")
    try:
        kw = dict(spawn_options(options, child=False, app=target.app, client_id=target.client_id).kw)
    except errors.Invalid as e:
        raise errors.Invalid(f"spec.options: {e.message}") from None
    if spec.get("executionTimeout"):
        kw["execution_timeout"] = durations.to_timedelta(spec["executionTimeout"])
    return kw


def _time(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _phase_condition(phase: str, message: str, generation: int | None,
                     previous: Any) -> list[dict[str, Any]]:
    ok = True if phase == "Succeeded" else None if phase in ("Pending", "Running") else False
    cond = conditions.condition("Succeeded", ok, phase, message or phase, generation, previous)
    return conditions.set_condition(previous, cond)


class Spawner:
    """Starts, signals, watches and stops the executions of Workflow CRs."""

    def __init__(self, kube: Kube, cfg: OperatorConfig, *, code_of: Callable[[App, str], tuple[str, str]]) -> None:
        self.kube = kube
        self.cfg = cfg
        self.code_of = code_of
        self._apps: dict[str, App] = {}
        self._targets: dict[tuple[str, str, str], tuple[Target, float]] = {}
        self._clients: dict[tuple[Any, ...], Any] = {}
        self._lock = asyncio.Lock()

    # -- where it runs --------------------------------------------------------------
    #: Seconds a resolved target is reused: a burst of Workflow CRs reads the worker's bundle once.
    TARGET_TTL = 2.0

    async def target(self, namespace: str, spec: Mapping[str, Any]) -> Target:
        """Where ``spec``'s execution runs, from the worker's deployed bundle (Waiting when it cannot yet)."""
        key = (namespace, str(spec["worker"]), str(spec["workflow"]))
        cached = self._targets.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        found = await self._resolve(namespace, spec)
        if len(self._targets) > 1024:
            self._targets.clear()
        self._targets[key] = (found, time.monotonic() + self.TARGET_TTL)
        return found

    async def _resolve(self, namespace: str, spec: Mapping[str, Any]) -> Target:
        worker_id, workflow = str(spec["worker"]), str(spec["workflow"])
        workers = await self.kube.list(CUSTOM_RESOURCES["TemporalWorker"], namespace)
        worker_cr = next((w for w in workers if (w.get("spec") or {}).get("entryId") == worker_id), None)
        if worker_cr is None:
            raise Waiting(f"no TemporalWorker with entryId {worker_id} in namespace {namespace}")
        cm_name = objects.bundle_configmap_name(worker_cr["metadata"]["name"])
        cm = await self.kube.get_or_none(ConfigMap, cm_name, namespace=namespace)
        if cm is None:
            raise Waiting(f"TemporalWorker {worker_cr['metadata']['name']} has no bundle yet (see its Ready condition)",
                          delay=2.0)
        digest = ((cm.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_BUNDLE_HASH, "")
        app = self._apps.get(digest)
        doc = json.loads((cm.get("data") or {}).get(bundle.BUNDLE_KEY) or "{}")
        resources = doc.get("resources") or []
        if app is None:
            refs = bundle.source_refs(resources)
            texts: dict[tuple[str, str], str] = {}
            for name, key in refs:
                src = await self.kube.get_or_none(ConfigMap, name, namespace=namespace)
                if src and key in (src.get("data") or {}):
                    texts[(name, key)] = src["data"][key]
            app = bundle.load(resources, sources=lambda n, k: texts.get((n, k)))
            if len(self._apps) > 64:
                self._apps.clear()
            self._apps[digest] = app
        if workflow not in app.entries or app.entries[workflow].kind != "workflow.lua":
            raise Waiting(f"no workflow.lua entry {workflow} in the bundle of worker {worker_id}")
        worker = app.get(worker_id)
        client_id = resolve_ref(str(worker.data["client"]), worker.namespace)
        client_spec = next((dict(r["spec"]) for r in resources if r.get("kind") == "TemporalClient"
                            and (r.get("spec") or {}).get("entryId") == client_id), {})
        return Target(worker_id, client_id, str(worker.data.get("task_queue") or worker_id),
                      self.code_of(app, workflow)[0], client_spec, app)

    async def client(self, namespace: str, client_spec: Mapping[str, Any]) -> Any:
        """A connected Temporal client for a TemporalClient spec (secrets read from the API)."""
        from temporalio.service import TLSConfig

        from ..client import connect_temporal

        address = objects.temporal_address(client_spec, self.cfg)
        temporal_ns = str(client_spec.get("namespace") or "default")
        api_key = None
        ref = client_spec.get("apiKeySecretRef")
        if ref:
            secret = await self.kube.get(Secret, ref["name"], namespace=namespace)
            api_key = base64.b64decode((secret.get("data") or {}).get(ref["key"], "")).decode()
        tls: Any = None
        tls_spec = client_spec.get("tls") or {}
        tls_secret = (client_spec.get("tlsSecretRef") or {}).get("name")
        if tls_secret:
            data = (await self.kube.get(Secret, tls_secret, namespace=namespace)).get("data") or {}

            def raw(k: str) -> bytes | None:
                return base64.b64decode(data[k]) if k in data else None

            tls = TLSConfig(server_root_ca_cert=raw("ca.crt"), client_cert=raw("tls.crt"),
                            client_private_key=raw("tls.key"), domain=tls_spec.get("server_name"))
        elif tls_spec.get("enabled"):
            tls = TLSConfig(domain=tls_spec.get("server_name")) if tls_spec.get("server_name") else True
        key = (address, temporal_ns, api_key, repr(tls))
        async with self._lock:
            if key not in self._clients:
                kw: dict[str, Any] = {"namespace": temporal_ns}
                if api_key:
                    kw["api_key"] = api_key
                if tls is not None:
                    kw["tls"] = tls
                self._clients[key] = await connect_temporal(address, identity="moontide-operator", **kw)
            return self._clients[key]

    # -- status ---------------------------------------------------------------------------
    async def write_status(self, body: Mapping[str, Any], fields: Mapping[str, Any]) -> None:
        """Merge ``fields`` into the CR's status; phase changes also set the Succeeded condition."""
        meta, status = body["metadata"], dict(body.get("status") or {})
        patch = dict(fields)
        phase = patch.get("phase") or status.get("phase")
        if phase:
            message = patch.get("message", status.get("message")) or phase
            patch["conditions"] = _phase_condition(phase, message, meta.get("generation"), status.get("conditions"))
        patch["observedGeneration"] = meta.get("generation")
        try:
            await self.kube.merge_patch(custom_resource(WORKFLOW).Status, meta["name"], {"status": patch},
                                        namespace=meta["namespace"])
        except KubeError as e:
            if e.status != 404:
                raise

    # -- start ------------------------------------------------------------------------------
    async def start(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Start the CR's execution (or find the one already started); returns the status fields written."""
        from temporalio.common import WorkflowIDReusePolicy

        from ..client import Client
        from ..protocol import MEMO_CODE, MEMO_K8S

        meta, spec = body["metadata"], body.get("spec") or {}
        namespace = meta["namespace"]
        target = await self.target(namespace, spec)
        args = list(spec.get("input") or [])
        values.encode(args, "spec.input")  # too deep to cross into Lua: Invalid naming the path, before Temporal
        kw = start_options(spec, target)
        client = Client(await self.client(namespace, target.client_spec), client_id=target.client_id)
        wid = workflow_id(body)
        fields: dict[str, Any] = {"workflowId": wid, "codeDigest": target.code_digest}
        try:
            pid = await client.start(
                str(spec["workflow"]), args, workflow_id=wid, task_queue=target.task_queue,
                worker=target.worker_id, conflict="use_existing",
                start_kw={**kw, "memo": {**kw.get("memo", {}), MEMO_CODE: target.code_digest,
                                         MEMO_K8S: f"{namespace}/{meta['name']}"},
                          "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE})
            fields |= {"pid": str(pid), "runId": client.started_run(wid) or "", "phase": "Running",
                       "message": f"running on task queue {target.task_queue}", "startTime": conditions.now()}
            _SPAWNS.labels("started").inc()
        except errors.AlreadyExists:  # closed, and REJECT_DUPLICATE: the closed run is the CR's
            fields["pid"] = str(WorkflowPid(target.client_id, target.worker_id, wid))
            desc = await client.temporal.get_workflow_handle(wid).describe()
            fields |= {"runId": desc.run_id, "phase": "Running", "startTime": _time(desc.start_time),
                       "message": "execution already existed (closed)"}
            _SPAWNS.labels("existing").inc()
        created = meta.get("creationTimestamp")
        if created:
            age = time.time() - dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=dt.timezone.utc).timestamp()
            _START_LATENCY.observe(max(age, 0.0))
        await self.write_status(body, fields)
        return fields

    # -- signals ----------------------------------------------------------------------------
    async def deliver_signals(self, body: Mapping[str, Any], *, workflow_id_: str) -> list[dict[str, Any]]:
        """Send every ``spec.signals`` item not yet in ``status.signals``; returns the new status list."""
        from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution
        from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
        from temporalio.service import RPCError, RPCStatusCode

        meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
        done = list(status.get("signals") or [])
        sent = {s.get("name") for s in done}
        pending = [s for s in spec.get("signals") or [] if s.get("name") not in sent]
        if not pending:
            return done
        target = await self.target(meta["namespace"], spec)
        client = await self.client(meta["namespace"], target.client_spec)
        for sig in pending:
            request_id = str(uuid.uuid5(_SIGNAL_NAMESPACE, f"{meta['uid']}/{sig['name']}"))
            payload = Payload(metadata={"encoding": b"json/plain"},
                              data=json.dumps(sig.get("payload"), separators=(",", ":")).encode())
            request = SignalWorkflowExecutionRequest(
                namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=workflow_id_),
                signal_name=str(sig["topic"]), input=Payloads(payloads=[payload]), identity=client.identity,
                request_id=request_id)
            record: dict[str, Any] = {"name": sig["name"], "deliveredAt": conditions.now()}
            try:
                await client.workflow_service.signal_workflow_execution(request, retry=True)
                _SIGNALS.labels("delivered").inc()
            except RPCError as e:
                if e.status != RPCStatusCode.NOT_FOUND:
                    raise
                record = {"name": sig["name"], "error": f"not delivered: the execution is closed ({e.message})"}
                _SIGNALS.labels("closed").inc()
            done.append(record)
            await self.write_status(body, {"signals": done})
        return done

    # -- outcome ----------------------------------------------------------------------------
    async def wait(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Wait for the execution to close; write and return its final status fields."""
        from temporalio.client import WorkflowFailureError
        from temporalio.service import RPCError, RPCStatusCode

        meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
        target = await self.target(meta["namespace"], spec)
        client = await self.client(meta["namespace"], target.client_spec)
        wid = status.get("workflowId") or workflow_id(body)
        handle = client.get_workflow_handle(wid, run_id=status.get("runId") or None)
        fields: dict[str, Any] = {}
        try:
            result = await handle.result(follow_runs=True)
            fields["phase"] = "Succeeded"
            text = json.dumps(result)
            if len(text) <= self.cfg.result_limit:
                fields |= {"result": result, "message": "succeeded"}
            else:
                fields |= {"resultTruncated": True,
                           "message": f"succeeded; result of {len(text)} bytes not shown (moontide result "
                                      f"'{status.get('pid', wid)}')"}
        except WorkflowFailureError as e:
            fields |= failed_fields(e.cause)
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
            fields |= {"phase": "Failed", "message": f"execution {wid} not found: {e.message}"}
        try:
            desc = await client.get_workflow_handle(wid).describe()
            fields["finishTime"] = _time(desc.close_time) or conditions.now()
        except RPCError:
            fields["finishTime"] = conditions.now()
        _FINISHED.labels(fields["phase"]).inc()
        await self.write_status(body, fields)
        return fields

    # -- deletion -----------------------------------------------------------------------------
    async def stop(self, body: Mapping[str, Any]) -> str:
        """Apply ``spec.deletionPolicy`` to a running execution; returns what was done."""
        from temporalio.client import WorkflowExecutionStatus
        from temporalio.service import RPCError, RPCStatusCode

        meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
        policy = spec.get("deletionPolicy") or "Cancel"
        if policy == "Abandon" or status.get("phase") in TERMINAL:
            return "nothing to do"
        wid = status.get("workflowId")
        if not wid:
            return "never started"
        try:
            target = await self.target(meta["namespace"], spec)
        except Waiting as e:
            return f"left alone: {e.message}"
        client = await self.client(meta["namespace"], target.client_spec)
        handle = client.get_workflow_handle(wid)
        try:
            desc = await handle.describe()
            if desc.status != WorkflowExecutionStatus.RUNNING:
                return "already closed"
            reason = f"Workflow {meta['namespace']}/{meta['name']} deleted"
            if policy == "Terminate":
                await handle.terminate(reason=reason)
                return "terminated"
            await handle.cancel(reason=reason)
            return "cancel requested"
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return "no such execution"
            raise
