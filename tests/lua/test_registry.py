"""The registry module (Wippy's, read-only) in function code, over a real loaded app; real lupa.

Written from wippyai/docs en/lua/core/registry.md. Processes read the same view
(tests/processes/test_events_processes.py); workflows are refused (tests/workflows/test_wippy_modules.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from moontide.lua.code import LuaCode
from moontide.runtime import load
from moontide.workflows import Functions

APP = {
    "app.yaml": """
    version: "1.0"
    namespace: app.api
    entries:
      - name: client
        kind: temporal.client
        address: 127.0.0.1:1
        auth: {type: api_key, api_key: "tc-S3CRET-KEY"}
        meta: {type: infra}
      - name: probe
        kind: function.lua
        source: file://lua/probe.lua
        modules: [registry, errors, json]
        meta: {type: tool, comment: "reads the registry"}
      - name: helper
        kind: library.lua
        source: |
          return { answer = 42 }
        meta: {type: tool}
    """,
    "lua/probe.lua": """
    -- S3CRET-LUA-BODY: the Lua text itself never reaches the registry's data
    return function(what) return _G[what]() end
    """,
}


def _call(make_app: Callable[..., Path], body: str) -> Any:
    app = load(make_app(APP))
    probe = app.get("app.api:probe")
    code = LuaCode.from_entry(app, probe)
    code = LuaCode(id=code.id, kind=code.kind, source="return function() " + body + "\nend",
                   chunkname="probe.lua", modules=code.modules)
    return Functions({"app.api:probe": code}, app=app).call("app.api:probe", [])


def test_get_find_and_parse_id(make_app: Callable[..., Path]) -> None:
    out = _call(make_app, """
      local e = assert(registry.get("app.api:probe"))
      local tools = assert(registry.find({ [".kind"] = "library.lua" }))
      local by_meta = assert(registry.find({ type = "tool" }))
      local by_meta2 = assert(registry.find({ ["meta.type"] = "tool", [".ns"] = "app.api" }))
      local newer = assert(registry.find({ kind = "function.lua", namespace = "app.api" }))
      local none = assert(registry.find({ [".ns"] = "other" }))
      local _, missing = registry.get("app.api:nope")
      local _, bad = registry.get("no-colon")
      local id = registry.parse_id("app.lib:assert")
      local _, bad_id = registry.parse_id("nope")
      local function ids(list) local t = {} for i, x in ipairs(list) do t[i] = x.id end return t end
      return { entry = e, tools = ids(tools), by_meta = ids(by_meta), by_meta2 = ids(by_meta2), newer = ids(newer),
               none = #none, missing = missing:kind(), bad = bad:kind(), id = id, bad_id = bad_id:kind() }
    """)
    assert out["entry"]["id"] == "app.api:probe" and out["entry"]["kind"] == "function.lua"
    assert out["entry"]["meta"] == {"type": "tool", "comment": "reads the registry"}
    assert out["entry"]["data"]["source"] == "file://lua/probe.lua"  # what the file says, not the Lua text
    assert out["entry"]["data"]["modules"] == ["registry", "errors", "json"]
    assert out["tools"] == ["app.api:helper"]
    assert out["by_meta"] == out["by_meta2"] == ["app.api:probe", "app.api:helper"]
    assert out["newer"] == ["app.api:probe"] and out["none"] == 0
    assert (out["missing"], out["bad"], out["bad_id"]) == ("NotFound", "Invalid", "Invalid")
    assert out["id"] == {"ns": "app.lib", "name": "assert"}


def test_no_secret_host_path_or_loaded_source_leaks(make_app: Callable[..., Path], tmp_path: Path) -> None:
    text = _call(make_app, """
      local all = assert(registry.snapshot():entries())
      return json.encode(all)
    """)
    assert "S3CRET" not in text and str(tmp_path) not in text
    assert "[redacted]" in text and "return { answer = 42 }" in text  # inline source: the file's own text


def test_returned_tables_are_copies(make_app: Callable[..., Path]) -> None:
    out = _call(make_app, """
      local e = assert(registry.get("app.api:probe"))
      e.meta.type = "PWNED"
      e.data.modules[1] = "PWNED"
      local again = assert(registry.get("app.api:probe"))
      return { again.meta.type, again.data.modules[1] }
    """)
    assert out == ["tool", "registry"]


def test_snapshots_versions_and_refused_changes(make_app: Callable[..., Path]) -> None:
    out = _call(make_app, """
      local snap = assert(registry.snapshot())
      local v = assert(registry.current_version())
      local changes = snap:changes()
      changes:create({ id = "app.api:new", kind = "function.lua", meta = {}, data = {} })
      changes:delete("app.api:probe")
      local _, apply_err = changes:apply()
      local _, rollback_err = registry.apply_version(v)
      local _, at_err = registry.snapshot_at(5)
      return { n = #snap:entries(), ns = #snap:namespace("app.api"), got = snap:get("app.api:helper").kind,
               found = #snap:find({ type = "infra" }), version = snap:version():id(), current = v:id(),
               string = v:string(), previous = v:previous() == nil, ops = #changes:ops(),
               apply = apply_err:kind(), apply_msg = apply_err:message(), rollback = rollback_err:kind(),
               at = at_err:kind(), at1 = registry.snapshot_at(1) ~= nil }
    """)
    assert out["n"] == out["ns"] == 3 and out["got"] == "library.lua" and out["found"] == 1
    assert out["version"] == out["current"] == 1 and out["string"] == "1" and out["previous"] is True
    assert out["ops"] == 2 and out["apply"] == out["rollback"] == "PermissionDenied"
    assert "YAML" in out["apply_msg"] and out["at"] == "NotFound" and out["at1"] is True


def test_without_an_app_the_registry_is_not_available() -> None:
    code = LuaCode(id="t:f", kind="function.lua", chunkname="f.lua", modules=("registry",),
                   source="return function() local _, err = registry.get('a:b') return err:kind() end")
    assert Functions({"t:f": code}).call("t:f", []) == "Internal"
