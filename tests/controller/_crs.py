"""Helpers for the controller's unit tests: custom resources as plain dicts."""

from __future__ import annotations

from typing import Any

from moontide.tools import manifests
from moontide.k8s.kinds import API_VERSION, BY_ENTRY_KIND


def cr(kind: str, entry_id: str, **spec: Any) -> dict[str, Any]:
    """A CR holding entry ``entry_id`` of entry kind ``kind`` (e.g. "workflow.lua")."""
    name = manifests.cr_name(entry_id)
    return {"apiVersion": API_VERSION, "kind": BY_ENTRY_KIND[kind].kind,
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 1},
            "spec": {"entryId": entry_id, **spec}}


WORKFLOW_LUA = "local function main(x)\n  return x\nend\nreturn { main = main }\n"


def small_app() -> list[dict[str, Any]]:
    return [
        cr("temporal.client", "app:client", address="temporal:7233"),
        cr("temporal.worker", "app:worker", client="client", task_queue="q"),
        cr("workflow.lua", "app:wf", source=WORKFLOW_LUA, method="main"),
        cr("function.lua", "app:fn", source="return function(x) return x end"),
    ]
