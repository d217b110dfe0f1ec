"""The reconciler asks Temporal before a worker's Lua changes: the replay check and the code history's collection.

A real dev server holds executions parked in a timer (run by in-process workers of the same app); the
reconciler runs against the in-memory API with ``Rollouts`` on that server. A change the parked
``auto_upgrade`` executions do not replay on is held back (``ReplayDivergence`` on the TemporalWorker and the
LuaWorkflow, nothing applied) until the TemporalWorker accepts its bundle; an old code version stays in the
code history while an open execution is pinned to it, and goes once none is. Without a Temporal to ask,
a change waits (``ReplayCheckFailed``).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from _fakekube import FakeKube
from moontide_testing import TEMPORAL_ENTRIES, eventually, free_port, running
from moontide.controller.operator_cmd import code_of
from moontide.controller.reconciler import Reconciler
from moontide.controller.rollout import Rollouts
from moontide.k8s import bundle, objects
from moontide.k8s.config import OperatorConfig
from moontide.k8s.kinds import ANNOTATION_ACCEPT_BUNDLE, ANNOTATION_BUNDLE_HASH
from moontide.lua import check_syntax
from moontide.protocol import MEMO_CODE
from moontide.runtime import load
from moontide.tools import manifests

HANG = 90  # guard against a hang, not a speed check

NAP = """\
return function()
  time.sleep("1h")
  return "v1"
end
"""
#: A call before the timer: where history has the timer, the code calls a function.
BREAKING = NAP.replace('  time.sleep("1h")', '  funcs.call("echo", 1)\n  time.sleep("1h")')


def _app(make_app: Callable[..., Path], name: str, nap: str) -> Path:
    yaml = textwrap.dedent(TEMPORAL_ENTRIES).strip("\n") + """
  - name: nap
    kind: workflow.lua
    source: file://nap.lua
    modules: [funcs, time]
    meta:
      temporal:
        workflow:
          worker: worker
          versioning_behavior: auto_upgrade
  - name: echo
    kind: function.lua
    source: "return function(v) return v end"
"""
    return make_app({"app.yaml": yaml, "nap.lua": nap}, name=name)


def _crs(app_dir: Path) -> list[dict[str, Any]]:
    out = []
    for doc in manifests.manifests(load(app_dir)):
        name = doc["metadata"]["name"]
        doc["metadata"] |= {"namespace": "ns", "uid": f"uid-{name}", "generation": 1}
        out.append(doc)
    return out


def _get(fake: FakeKube, kind: str, name: str) -> dict[str, Any]:
    plural = {"TemporalWorker": "temporalworkers", "LuaWorkflow": "luaworkflows"}[kind]
    return fake.objects[f"/apis/moontide.io/v1alpha1/namespaces/ns/{plural}/{name}"]


def _ready(obj: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


async def test_a_change_parked_executions_do_not_replay_on_waits_and_old_code_goes_once_unused(
        make_app: Callable[..., Path], temporal_address: str, task_queue: str) -> None:
    v1 = _app(make_app, "v1", NAP)
    client = await Client.connect(temporal_address)

    async def client_of(namespace: str, spec: Any) -> Client:
        return client

    fake = FakeKube()
    crs = _crs(v1)
    for c in crs:
        fake.put(c)
    worker = next(c for c in crs if c["kind"] == "TemporalWorker")["metadata"]["name"]
    nap = next(c for c in crs if c["kind"] == "LuaWorkflow")["metadata"]["name"]
    rec = Reconciler(fake, OperatorConfig(worker_image="img", temporal_address=temporal_address,  # type: ignore[arg-type]
                                          code_gc_seconds=0),
                     check_lua=check_syntax, code_of=code_of, rollouts=Rollouts(client_of, sample=20))
    await rec.reconcile("ns")
    first = _get(fake, "TemporalWorker", worker)["status"]["bundleHash"]
    # pinned to the deployed code (as a Workflow CR's start is); no worker runs it: it stays open
    v1_code = code_of(bundle.load(crs), "app:nap")[0]
    pinned = await client.start_workflow("app:nap", id=f"pinned-{task_queue}", task_queue=task_queue,
                                         memo={MEMO_CODE: v1_code})

    async with running(v1, temporal_address) as rt:
        pids = [await rt.spawn("app:nap", None) for _ in range(2)]

        async def asleep() -> bool:
            for pid in pids:
                events = [e async for e in client.get_workflow_handle(pid.workflow_id).fetch_history_events()]
                if not any(e.event_type == EventType.EVENT_TYPE_TIMER_STARTED for e in events):
                    return False
            return True

        await eventually(asleep, bool, what="both executions parked in their timer", timeout=HANG)
    query = f'ExecutionStatus="Running" AND TaskQueue="{task_queue}"'
    await eventually(lambda: client.count_workflows(query), lambda c: c.count == 3,
                     what="all three listed", timeout=HANG)

    # the breaking change: held back, on the worker and on the workflow, and nothing applied
    breaking = next(c for c in _crs(_app(make_app, "v2", BREAKING)) if c["kind"] == "LuaWorkflow")
    breaking["metadata"]["generation"] = 2
    fake.put(breaking)
    await rec.reconcile("ns")
    tw = _get(fake, "TemporalWorker", worker)
    cond = _ready(tw)
    assert (cond["status"], cond["reason"]) == ("False", "ReplayDivergence"), cond
    assert " of 3 running executions checked do not replay" in cond["message"], cond["message"]
    assert "history has timer 1h, code made activity app:echo" in cond["message"]
    held = cond["message"].split("bundle ", 1)[1].split(" ", 1)[0]
    assert f"{ANNOTATION_ACCEPT_BUNDLE}={held}" in cond["message"]
    lw = _ready(_get(fake, "LuaWorkflow", nap))
    assert (lw["status"], lw["reason"]) == ("False", "ReplayDivergence") and ":2: history has timer" in lw["message"]
    assert tw["status"]["bundleHash"] == first
    bundle_cm = fake.objects[f"/api/v1/namespaces/ns/configmaps/{objects.bundle_configmap_name(worker)}"]
    assert bundle_cm["metadata"]["annotations"][ANNOTATION_BUNDLE_HASH] == first
    assert [e["reason"] for e in fake.events if e["involvedObject"]["name"] == worker].count("ReplayDivergence") == 1
    # looked at again (a resync): still held, no second Event
    await rec.reconcile("ns")
    assert _ready(_get(fake, "TemporalWorker", worker))["reason"] == "ReplayDivergence"
    assert [e["reason"] for e in fake.events if e["involvedObject"]["name"] == worker].count("ReplayDivergence") == 1

    # the user accepts that bundle: it goes out
    tw = json.loads(json.dumps(_get(fake, "TemporalWorker", worker)))
    tw["metadata"].setdefault("annotations", {})[ANNOTATION_ACCEPT_BUNDLE] = held
    fake.put(tw)
    await rec.reconcile("ns")
    tw = _get(fake, "TemporalWorker", worker)
    assert tw["status"]["bundleHash"] == held and _ready(tw)["reason"] != "ReplayDivergence"
    assert _ready(_get(fake, "LuaWorkflow", nap))["status"] == "True"

    # the code history: the first version stays while an execution is pinned to it, then goes
    v2_code = code_of(bundle.load([*(c for c in crs if c["kind"] != "LuaWorkflow"), breaking]), "app:nap")[0]
    code_path = f"/api/v1/namespaces/ns/configmaps/{objects.code_configmap_name(worker)}"
    assert f"{v1_code}.json" in fake.objects[code_path]["data"]
    for pid in pids:
        await client.get_workflow_handle(pid.workflow_id).terminate("test over")
    await eventually(lambda: client.count_workflows(query), lambda c: c.count == 1, what="one left", timeout=HANG)
    await rec.reconcile("ns")
    assert f"{v1_code}.json" in fake.objects[code_path]["data"]
    await pinned.terminate("test over")
    await eventually(lambda: client.count_workflows(query), lambda c: c.count == 0, what="none left", timeout=HANG)
    await rec.reconcile("ns")
    assert list(fake.objects[code_path]["data"]) == [f"{v2_code}.json"]


async def test_a_change_waits_while_temporal_cannot_be_asked(make_app: Callable[..., Path]) -> None:
    """No Temporal to replay against (a refused connection): the change waits, saying why, and the reconcile
    fails so it is retried; the workers keep their bundle."""

    async def client_of(namespace: str, spec: Any) -> Client:
        return await Client.connect(f"127.0.0.1:{free_port()}")  # nothing listens there

    fake = FakeKube()
    crs = _crs(_app(make_app, "v1", NAP))
    for c in crs:
        fake.put(c)
    worker = next(c for c in crs if c["kind"] == "TemporalWorker")["metadata"]["name"]
    rec = Reconciler(fake, OperatorConfig(worker_image="img", temporal_address="127.0.0.1:1"),  # type: ignore[arg-type]
                     check_lua=check_syntax, code_of=code_of, rollouts=Rollouts(client_of, sample=20))
    await rec.reconcile("ns")
    first = _get(fake, "TemporalWorker", worker)["status"]["bundleHash"]
    changed = next(c for c in _crs(_app(make_app, "v2", BREAKING)) if c["kind"] == "LuaWorkflow")
    changed["metadata"]["generation"] = 2
    fake.put(changed)
    with pytest.raises(RuntimeError, match="Failed client connect"):
        await rec.reconcile("ns")
    cond = _ready(_get(fake, "TemporalWorker", worker))
    assert (cond["status"], cond["reason"]) == ("False", "ReplayCheckFailed"), cond
    assert f"the workers keep bundle {first}" in cond["message"]
    bundle_cm = fake.objects[f"/api/v1/namespaces/ns/configmaps/{objects.bundle_configmap_name(worker)}"]
    assert bundle_cm["metadata"]["annotations"][ANNOTATION_BUNDLE_HASH] == first
