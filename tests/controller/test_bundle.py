"""CRs -> entries: problems land on the CR they belong to; bundles are stable and load from a directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moontide import errors
from moontide.k8s import bundle
from moontide.lua import check_syntax

from _crs import cr, small_app


def test_a_valid_namespace_builds_one_app() -> None:
    built = bundle.build(small_app(), check_lua=check_syntax)
    assert built.problems == []
    assert built.app is not None
    assert set(built.app.entries) == {"app:client", "app:worker", "app:wf", "app:fn"}
    assert built.app.get("app:worker").data["task_queue"] == "q"


def test_bad_lua_is_reported_on_its_cr_with_the_line() -> None:
    crs = [*small_app(), cr("workflow.lua", "app:broken", source="local x = 1\nlocal y = = 2\nreturn x\n")]
    built = bundle.build(crs, check_lua=check_syntax)
    assert built.app is None
    (problem,) = built.of("LuaWorkflow", crs[-1]["metadata"]["name"])
    assert problem.field == "source" and problem.line == 2
    assert "unexpected symbol" in problem.message or "expected" in problem.message
    assert built.of("LuaWorkflow", crs[2]["metadata"]["name"]) == []


def test_a_bad_field_and_a_dangling_reference_are_named() -> None:
    crs = small_app()
    crs[1]["spec"]["client"] = "nope"
    crs[2]["spec"]["modules"] = ["http"]
    built = bundle.build(crs, check_lua=check_syntax)
    (ref,) = built.of("TemporalWorker", crs[1]["metadata"]["name"])
    assert ref.field == "client" and "unknown entry 'app:nope'" in ref.message
    (mod,) = built.of("LuaWorkflow", crs[2]["metadata"]["name"])
    assert mod.field == "modules[0]" and "'http' is not allowed" in mod.message


def test_entry_id_must_be_namespace_and_name() -> None:
    bad = cr("function.lua", "app:fn2", source="return function() end")
    bad["spec"]["entryId"] = "no-namespace"
    built = bundle.build([bad])
    (p,) = built.problems
    assert p.field == "entryId" and "namespace:name" in p.message


def test_source_or_source_from_exactly_one() -> None:
    both = cr("function.lua", "app:a", source="return 1", sourceFrom={"configMapKeyRef": {"name": "c", "key": "k"}})
    neither = cr("function.lua", "app:b")
    missing = cr("function.lua", "app:c", sourceFrom={"configMapKeyRef": {"name": "c", "key": "nokey"}})
    built = bundle.build([both, neither, missing], sources=lambda n, k: None)
    messages = sorted(p.message for p in built.problems)
    assert any("either source or sourceFrom" in m for m in messages)
    assert any("missing the Lua code" in m for m in messages)
    assert any("has no key 'nokey'" in m for m in messages)
    assert not any("missing required field 'source'" in m for m in messages)


def test_an_inline_api_key_is_refused() -> None:
    client = cr("temporal.client", "app:c", address="x:1", auth={"type": "api_key", "api_key": "sekret"})
    (p,) = bundle.build([client]).problems
    assert p.field == "auth.api_key" and "apiKeySecretRef" in p.message


def test_file_sources_are_refused_in_a_cr() -> None:
    (p,) = bundle.build([cr("function.lua", "app:f", source="file://x.lua")]).problems
    assert p.field == "source"


def test_bundle_document_and_digest_are_stable() -> None:
    a = bundle.dumps(bundle.bundle_document(small_app(), namespace="ns"))
    b = bundle.dumps(bundle.bundle_document(list(reversed(small_app())), namespace="ns"))
    assert a == b
    assert bundle.digest(a) == bundle.digest(b)
    changed = small_app()
    changed[2]["spec"]["source"] += "-- changed\n"
    assert bundle.digest(bundle.dumps(bundle.bundle_document(changed, namespace="ns"))) != bundle.digest(a)
    assert bundle.digest(a, {("cm", "k"): "x"}) != bundle.digest(a, {("cm", "k"): "y"})


def test_load_dir_reads_what_the_configmap_mounts(tmp_path: Path) -> None:
    crs = [*small_app(), cr("library.lua", "app:lib", sourceFrom={"configMapKeyRef": {"name": "big", "key": "l.lua"}})]
    text = bundle.dumps(bundle.bundle_document(crs, namespace="ns"))
    (tmp_path / bundle.BUNDLE_KEY).write_text(text)
    (tmp_path / "sources" / "big").mkdir(parents=True)
    (tmp_path / "sources" / "big" / "l.lua").write_text("return {}")
    app, digest = bundle.load_dir(tmp_path, check_lua=check_syntax)
    assert app.get("app:lib").data["source"] == "return {}"
    assert digest == bundle.digest(text, {("big", "l.lua"): "return {}"})


def test_load_dir_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound, match="bundle.json"):
        bundle.load_dir(tmp_path)
    (tmp_path / bundle.BUNDLE_KEY).write_text(json.dumps({"resources": [cr("function.lua", "app:x")]}))
    with pytest.raises(errors.EntryErrors, match="missing the Lua code"):
        bundle.load_dir(tmp_path)
