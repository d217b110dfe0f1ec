"""crds/ and helm/moontide/crds/ are generated from the entry schemas, structural, and must not drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from moontide.tools import crds
from moontide.k8s.kinds import ENTRY_RESOURCES, RESOURCES, WORKFLOW
from moontide.entries import LUA_KINDS, SCHEMAS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("target", crds.TARGETS)
def test_generated_files_match_the_schemas(target: str) -> None:
    wanted = crds.files()
    directory = ROOT / target
    found = {p.name: p.read_text() for p in directory.glob("*.moontide.io.yaml")}
    assert set(found) == set(wanted), f"regenerate: moontide crds --write  ({target})"
    for name, text in wanted.items():
        assert found[name] == text, f"{target}/{name} drifted from the schemas: moontide crds --write"


def _nodes(schema: dict[str, Any], where: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(where, schema)]
    for key, sub in (schema.get("properties") or {}).items():
        out += _nodes(sub, f"{where}.{key}")
    if isinstance(schema.get("items"), dict):
        out += _nodes(schema["items"], f"{where}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        out += _nodes(schema["additionalProperties"], f"{where}{{}}")
    return out


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_schemas_are_structural(resource: Any) -> None:
    schema = crds.crd(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for where, node in _nodes(schema):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{where} has no type"
        assert node.get("additionalProperties") is not False, f"{where}: additionalProperties false"
        assert not {"oneOf", "anyOf", "allOf", "$ref", "not"} & set(node), where
        assert node.get("default") != "", f"{where}: kube-apiserver 1.20 refuses an empty-string default"
        if "properties" in node:
            assert "additionalProperties" not in node, where


@pytest.mark.parametrize("resource", ENTRY_RESOURCES, ids=lambda r: r.kind)
def test_spec_is_the_entry_schema_plus_entry_id(resource: Any) -> None:
    spec = crds.crd(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    entry = SCHEMAS[resource.entry_kind]
    assert set(entry["properties"]) <= set(spec["properties"])
    assert set(spec["properties"]) - set(entry["properties"]) <= crds.K8S_ONLY_FIELDS
    assert spec["properties"]["entryId"]["pattern"] == crds.ENTRY_ID_PATTERN
    assert "entryId" in spec["required"]
    if resource.entry_kind in LUA_KINDS:
        assert "source" not in spec["required"] and "sourceFrom" in spec["properties"]
    for name, sub in entry["properties"].items():  # enums, patterns, bounds carried over
        for key in ("enum", "pattern", "minimum", "maximum"):
            if key in sub:
                assert spec["properties"][name][key] == sub[key], (name, key)


def test_a_change_to_a_schema_shows_in_the_crd(monkeypatch: pytest.MonkeyPatch) -> None:
    import copy

    changed = copy.deepcopy(SCHEMAS)
    changed["temporal.worker"]["properties"]["worker_options"]["properties"]["max_concurrent_workflow_task_pollers"]["minimum"] = 3
    monkeypatch.setattr(crds, "SCHEMAS", changed)
    resource = next(r for r in ENTRY_RESOURCES if r.entry_kind == "temporal.worker")
    text = crds.render(crds.crd(resource))
    assert text != (ROOT / "crds" / f"{resource.crd_name}.yaml").read_text()


def test_generation_does_not_touch_the_entry_schemas() -> None:
    before = yaml.safe_dump(SCHEMAS)
    crds.crds()
    assert yaml.safe_dump(SCHEMAS) == before


def test_workflow_crd_columns_short_names_and_status() -> None:
    definition = crds.crd(WORKFLOW)
    version = definition["spec"]["versions"][0]
    names = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert names == ["Phase", "Workflow", "Age", "Message"]
    assert version["subresources"] == {"status": {}}
    assert definition["spec"]["names"]["shortNames"] == ["mwf"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["deletionPolicy"]["enum"] == ["Cancel", "Terminate", "Abandon"]
    assert spec["properties"]["deletionPolicy"]["default"] == "Cancel"
    assert spec["properties"]["signals"]["x-kubernetes-list-map-keys"] == ["name"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == list(crds.PHASES)
    assert {"pid", "runId", "startTime", "finishTime", "result", "message", "conditions"} <= set(status)


def test_every_kind_has_a_unique_short_name_and_the_category() -> None:
    shorts = [s for r in RESOURCES for s in r.short_names]
    assert len(shorts) == len(set(shorts))
    for r in RESOURCES:
        assert crds.crd(r)["spec"]["names"]["categories"] == ["moontide"]
