"""Workflow CRs: derived IDs, waiting for what is missing, the target from the deployed bundle."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _crs import small_app
from _fakekube import FakeKube

from moontide.controller import spawning
from moontide.k8s.config import OperatorConfig
from moontide.controller.operator_cmd import code_of
from moontide.controller.reconciler import Reconciler
from moontide.lua import check_syntax


def _workflow(name: str = "w1", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "moontide.io/v1alpha1", "kind": "Workflow",
            "metadata": {"name": name, "namespace": "ns", "uid": "0123456789abcdef", "generation": 1},
            "spec": {"workflow": "app:wf", "worker": "app:worker", "input": [], **spec}}


async def _deployed() -> tuple[FakeKube, spawning.Spawner]:
    """The small app's CRs, reconciled (its bundle and code history deployed), and a spawner on them."""
    fake = FakeKube()
    for cr in small_app():
        fake.put(cr)
    await Reconciler(fake, OperatorConfig(), check_lua=check_syntax, code_of=code_of).reconcile("ns")  # type: ignore[arg-type]
    return fake, spawning.Spawner(fake, OperatorConfig(), code_of=code_of)  # type: ignore[arg-type]


def test_workflow_id_is_derived_from_the_cr_or_explicit() -> None:
    assert spawning.workflow_id(_workflow()) == "k8s-ns-w1-01234567"
    assert spawning.workflow_id(_workflow(workflowId="mine")) == "mine"


async def test_waiting_for_a_worker_and_its_bundle() -> None:
    fake = FakeKube()
    sp = spawning.Spawner(fake, OperatorConfig(), code_of=code_of)  # type: ignore[arg-type]
    with pytest.raises(spawning.Waiting, match="no TemporalWorker with entryId app:worker"):
        await sp.target("ns", _workflow()["spec"])
    for cr in small_app():
        fake.put(cr)
    with pytest.raises(spawning.Waiting, match="has no bundle yet"):
        await sp.target("ns", _workflow()["spec"])


async def test_target_comes_from_the_deployed_bundle() -> None:
    fake, sp = await _deployed()
    target = await sp.target("ns", _workflow()["spec"])
    assert (target.worker_id, target.client_id, target.task_queue) == ("app:worker", "app:client", "q")
    assert target.client_spec["address"] == "temporal:7233"
    code = next(v for v in fake.objects.values() if v["metadata"]["name"].endswith("-code"))
    assert f"{target.code_digest}.json" in code["data"]  # pinned to what the workers have
    with pytest.raises(spawning.Waiting, match="no workflow.lua entry app:nope"):
        await sp.target("ns", {**_workflow()["spec"], "workflow": "app:nope"})
    assert json.loads(code["data"][f"{target.code_digest}.json"])["id"] == "app:wf"


async def test_status_patch_sets_the_succeeded_condition() -> None:
    fake = FakeKube()
    wf = _workflow()
    fake.objects["/apis/moontide.io/v1alpha1/namespaces/ns/workflows/w1"] = wf
    sp = spawning.Spawner(fake, OperatorConfig(), code_of=code_of)  # type: ignore[arg-type]
    await sp.write_status(wf, {"phase": "Failed", "message": "boom"})
    (cond,) = wf["status"]["conditions"]
    assert (cond["type"], cond["status"], cond["reason"], cond["message"]) == ("Succeeded", "False", "Failed", "boom")
    await sp.write_status(wf, {"phase": "Running"})


async def test_options_are_read_as_luas_spawn_options_and_the_id_stays_the_crs() -> None:
    from datetime import timedelta

    from moontide import errors

    fake, sp = await _deployed()
    spec = _workflow(options={"temporal.workflow.run_timeout": "1h", "workflow.task_timeout": 5000,
                              "temporal.workflow.memo": {"team": "a"}},
                     executionTimeout="24h")["spec"]
    kw = spawning.start_options(spec, await sp.target("ns", spec))
    assert kw["run_timeout"] == timedelta(hours=1)
    assert kw["task_timeout"] == timedelta(seconds=5)  # a number is milliseconds, as in Lua
    assert kw["execution_timeout"] == timedelta(hours=24)
    assert kw["memo"] == {"team": "a"}
    for bad, says in (({"temporal.workflow.id": "x"}, "a Workflow CR sets this itself"),
                      ({"workflow.id_conflict_policy": "fail"}, "a Workflow CR sets this itself"),
                      ({"temporal.workflow.run_timeout": "soon"}, "spec.options: "),
                      ({"temporal.workflow.nope": 1}, "spec.options: ")):
        with pytest.raises(errors.Invalid, match=says):
            spawning.start_options({**spec, "options": bad}, await sp.target("ns", spec))


def test_an_ended_execution_gives_its_phase_and_error_kind() -> None:
    from temporalio.exceptions import ApplicationError, CancelledError, TerminatedError, TimeoutError, TimeoutType

    assert spawning.failed_fields(ApplicationError("no stock", type="NotFound")) == {
        "phase": "Failed", "message": "no stock", "errorKind": "NotFound"}
    assert spawning.failed_fields(CancelledError("by the user")) == {"phase": "Canceled", "message": "by the user"}
    assert spawning.failed_fields(TerminatedError("ops")) == {"phase": "Terminated", "message": "ops"}
    assert spawning.failed_fields(TimeoutError("late", type=TimeoutType.START_TO_CLOSE, last_heartbeat_details=[])) \
        == {"phase": "TimedOut", "message": "late"}
    assert spawning.failed_fields(RuntimeError("odd")) == {"phase": "Failed", "message": "odd", "errorKind": "Internal"}


async def test_input_too_deep_for_lua_fails_the_cr_naming_the_path_before_any_start() -> None:
    from moontide import errors
    from moontide.values import MAX_DEPTH

    fake, sp = await _deployed()
    deep: Any = "bottom"
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    # no Temporal server here: the check must refuse before the spawner connects
    with pytest.raises(errors.Invalid, match=r"spec\.input\[1\]\[1\].*nested deeper than 256"):
        await sp.start(_workflow(input=[deep]))
