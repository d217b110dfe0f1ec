"""The YAML loader: a valid app with every kind, and every kind of bad input reported where it is."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from moontide import errors
from moontide.entries import App, RawEntry, build_app, load_app, load_documents, resolve_ref, split_id
from moontide.errors import EntryErrors, EntryProblem

APP_YAML = """\
version: "1.0"
namespace: app
meta: {owner: team}
entries:
  - name: temporal
    kind: temporal.client
  - name: remote
    kind: temporal.client
    address: temporal.example.com:7233
    tls: {enabled: true}
    auth:
      type: api_key
      api_key: "${env:TEMPORAL_API_KEY}"
  - name: worker
    kind: temporal.worker
    client: temporal
    lifecycle:
      auto_start: true
      depends_on: [temporal]
  - name: host
    kind: process.host
"""

FLOWS_YAML = """\
version: "1.0"
namespace: app.flows
entries:
  - name: order_processor
    kind: workflow.lua
    source: file://order_processor.lua
    method: main
    modules: [funcs, time]
    imports:
      util: app.lib:util
  - name: charge
    kind: function.lua
    description: charges a card
    source: |
      local function charge(card)
        return { id = card }
      end
      return charge
  - name: pinger
    kind: process.lua
    source: "return function() return 1 end"
    modules: [channel]
  - name: pinger_service
    kind: process.service
    process: pinger
    host: app:host
    input: [1, "two", {three: 3}]
    lifecycle:
      depends_on: [app:worker]
      restart:
        max_attempts: 3
"""

LIB_YAML = """\
version: "1.0"
namespace: app.lib
entries:
  - name: util
    kind: library.lua
    source: file://lua/util.lua
"""

ORDER_LUA = "local funcs = require('funcs')\nreturn { main = function(o) return o end }\n"


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def line_of(text: str, needle: str, start: int = 1) -> int:
    """1-based line of the first line (from ``start``) of ``text`` that contains ``needle``."""
    lines = textwrap.dedent(text).splitlines()
    for number in range(start, len(lines) + 1):
        if needle in lines[number - 1]:
            return number
    raise AssertionError(f"{needle!r} not in text")


def problems_of(root: Path, **kw: Any) -> list[EntryProblem]:
    with pytest.raises(EntryErrors) as info:
        load_app(root, **kw)
    return info.value.problems


def one(problems: list[EntryProblem], **match: Any) -> EntryProblem:
    found = [p for p in problems if all(getattr(p, k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one problem with {match}, got:\n" + "\n".join(map(str, problems))
    return found[0]


def entries_file(namespace: str, body: str) -> str:
    return f'version: "1.0"\nnamespace: {namespace}\nentries:\n' + textwrap.indent(textwrap.dedent(body), "  ")


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write(tmp_path, "app.yaml", APP_YAML)
    write(tmp_path, "flows/flows.yaml", FLOWS_YAML)
    write(tmp_path, "flows/order_processor.lua", ORDER_LUA)
    write(tmp_path, "lib/lib.yml", LIB_YAML)
    write(tmp_path, "lib/lua/util.lua", "return {}\n")
    return tmp_path


# --- a valid app ---------------------------------------------------------------


def test_valid_app_with_every_kind(app_dir: Path) -> None:
    app = load_app(app_dir)
    assert isinstance(app, App)
    assert app.root == app_dir
    assert list(app.entries) == [
        "app:temporal",
        "app:remote",
        "app:worker",
        "app:host",
        "app.flows:order_processor",
        "app.flows:charge",
        "app.flows:pinger",
        "app.flows:pinger_service",
        "app.lib:util",
    ]
    assert {e.kind for e in app.entries.values()} == set(
        ["temporal.client", "temporal.worker", "process.host", "workflow.lua"]
        + ["function.lua", "process.lua", "process.service", "library.lua"]
    )


def test_defaults_and_computed_defaults(app_dir: Path) -> None:
    app = load_app(app_dir)
    local = app.get("app:temporal")
    assert local.data["embedded"] is True
    assert local.data["namespace"] == "default"
    assert local.data["auth"] == {"type": "none"}
    assert local.data["lifecycle"]["stop_timeout"] == "10s"
    remote = app.get("app:remote")
    assert remote.data["embedded"] is False
    assert remote.data["tls"] == {"enabled": True, "insecure_skip_verify": False}
    assert remote.data["auth"] == {"type": "api_key", "api_key": "${env:TEMPORAL_API_KEY}"}

    worker = app.get("app:worker")
    assert worker.data["task_queue"] == "app:worker"
    assert worker.data["lifecycle"]["auto_start"] is True
    assert worker.data["lifecycle"]["restart"]["max_delay"] == "90s"
    assert worker.data["worker_options"]["sticky_schedule_to_start_timeout"] == "1s"
    assert worker.data["worker_options"]["max_cached_workflows"] == 1000
    assert "name" not in worker.data and "kind" not in worker.data

    host = app.get("app:host")
    assert host.data["workers"] == 0 and host.data["queue_size"] == 1024

    service = app.get("app.flows:pinger_service")
    assert service.data["input"] == [1, "two", {"three": 3}]
    assert service.data["lifecycle"]["restart"] == {
        "initial_delay": "1s",
        "max_delay": "90s",
        "backoff_factor": 2.0,
        "jitter": 0.1,
        "max_attempts": 3,
    }
    assert service.data["lifecycle"]["depends_on"] == ["app:worker"]


def test_lua_entries(app_dir: Path) -> None:
    app = load_app(app_dir)
    flow = app.get("app.flows:order_processor")
    assert flow.data["source"] == ORDER_LUA
    assert flow.source_file == "flows/order_processor.lua" and flow.source_line == 1
    assert flow.file == "flows/flows.yaml" and flow.line == line_of(FLOWS_YAML, "name: order_processor")
    assert flow.data["method"] == "main"
    assert flow.data["imports"] == {"util": "app.lib:util"}
    assert flow.location(2) == ("flows/order_processor.lua", 2)
    assert not flow.inline_source

    util = app.get("app.lib:util")
    assert util.source_file == "lib/lua/util.lua"
    assert util.data == {"source": "return {}\n", "modules": [], "imports": {}, "meta": {}}

    charge = app.get("app.flows:charge")
    assert charge.data["method"] == "" and charge.data["modules"] == []
    assert charge.data["source"].startswith("local function charge(card)\n")
    assert charge.inline_source
    assert charge.source_file == "flows/flows.yaml:charge"
    # The text of a "|" block starts on the line after "source: |".
    assert charge.source_line == line_of(FLOWS_YAML, "local function charge")
    assert charge.location(3) == ("flows/flows.yaml", line_of(FLOWS_YAML, "  end"))

    pinger = app.get("app.flows:pinger")
    assert pinger.source_line == line_of(FLOWS_YAML, 'source: "return function()')


def test_app_lookup(app_dir: Path) -> None:
    app = load_app(app_dir)
    assert [e.id for e in app.of_kind("temporal.client")] == ["app:temporal", "app:remote"]
    assert app.of_kind("nothing") == []
    assert app.resolve("worker", "app") == "app:worker"
    assert app.resolve("other.ns:thing", "app") == "other.ns:thing"
    with pytest.raises(errors.NotFound, match=r"no entry 'app:workr' in the app \(did you mean 'app:worker'\?\)"):
        app.get("app:workr")


def test_ids() -> None:
    assert split_id("app.api:charge_card") == ("app.api", "charge_card")
    assert split_id("a:b:c") == ("a", "b:c")
    for bad in ("nocolon", ":name", "ns:", ""):
        with pytest.raises(errors.Invalid, match="invalid entry ID"):
            split_id(bad)
    assert resolve_ref("x", "ns") == "ns:x"
    with pytest.raises(errors.Invalid):
        resolve_ref(":x", "ns")


def test_hidden_dirs_are_skipped(app_dir: Path) -> None:
    write(app_dir, ".moontide/state.yaml", "this: [is not: an entry file")
    write(app_dir, ".git/x.yaml", "- 1")
    assert "app:worker" in load_app(app_dir).entries


# --- bad input -------------------------------------------------------------------


def test_malformed_yaml_with_line(tmp_path: Path) -> None:
    text = 'version: "1.0"\nnamespace: app\nentries:\n  - name: a\n    kind: [unclosed\n'
    write(tmp_path, "bad.yaml", text)
    problem = one(problems_of(tmp_path), file="bad.yaml")
    assert problem.message.startswith("invalid YAML: ")
    assert problem.line is not None and problem.line >= 5


def test_non_mapping_and_empty_documents(tmp_path: Path) -> None:
    write(tmp_path, "list.yaml", "- name: a\n")
    write(tmp_path, "empty.yaml", "")
    problems = problems_of(tmp_path)
    assert (
        "expected a mapping with version, namespace and entries, got a list" in one(problems, file="list.yaml").message
    )
    assert one(problems, file="empty.yaml").message.startswith("empty file")


def test_missing_version_namespace_entries(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "meta: {}\n")
    problems = problems_of(tmp_path)
    for name in ("version", "namespace", "entries"):
        assert one(problems, field=name).message == f"missing required field '{name}'"


def test_bad_file_header_values(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "version: 1.0\nnamespace: 'bad ns'\nentries: []\nextra: 1\n")
    problems = problems_of(tmp_path)
    assert one(problems, field="version", line=1).message == 'expected a string, got 1.0 (quote it: "1.0")'
    assert "got 'bad ns'" in one(problems, field="namespace", line=2).message
    assert one(problems, field="extra", line=4).message.startswith("unknown field 'extra'")


def test_unknown_kind(tmp_path: Path) -> None:
    text = entries_file("app", "- name: flow\n  kind: workflow.lau\n  source: return 1\n")
    write(tmp_path, "a.yaml", text)
    problem = one(problems_of(tmp_path), entry="app:flow")
    assert problem.field == "kind" and problem.line == line_of(text, "kind: workflow.lau")
    assert problem.message.startswith("unknown kind 'workflow.lau' (did you mean 'workflow.lua'? known: function.lua,")


def test_missing_name_and_kind(tmp_path: Path) -> None:
    text = entries_file("app", "- kind: process.host\n- name: x\n")
    write(tmp_path, "a.yaml", text)
    problems = problems_of(tmp_path)
    assert one(problems, field="name").line == line_of(text, "- kind: process.host")
    assert one(problems, field="kind", entry="app:x").line == line_of(text, "- name: x")


def test_missing_required_field_points_at_the_entry(tmp_path: Path) -> None:
    text = entries_file("app", "- name: flow\n  kind: workflow.lua\n  method: main\n")
    write(tmp_path, "a.yaml", text)
    problem = one(problems_of(tmp_path), entry="app:flow", field="source")
    assert problem.message == "missing required field 'source'"
    assert problem.line == line_of(text, "- name: flow")


def test_unknown_field_with_suggestion(tmp_path: Path) -> None:
    text = entries_file("app", "- name: flow\n  kind: workflow.lua\n  source: return 1\n  sourc: x\n  zzz: 1\n")
    write(tmp_path, "a.yaml", text)
    problems = problems_of(tmp_path)
    sourc = one(problems, field="sourc")
    assert sourc.message == "unknown field 'sourc' (did you mean 'source'?)"
    assert sourc.line == line_of(text, "sourc: x") and sourc.entry == "app:flow" and sourc.file == "a.yaml"
    assert one(problems, field="zzz").message.startswith("unknown field 'zzz' (known: source, modules,")
    assert len(problems) == 2


def test_wrong_types_and_limits(tmp_path: Path) -> None:
    body = """\
        - name: fn
          kind: function.lua
          source: return 1
          method: 5
          modules: [funcs, htp]
          imports:
            utils: 5
        - name: svc
          kind: temporal.worker
          client: c
          lifecycle:
            auto_start: "yes"
            stop_timeout: 10 seconds
            restart:
              max_attempts: -1
              jitter: 2
          worker_options: {max_concurrent_workflow_task_pollers: 1}
        - name: c
          kind: temporal.client
          address: "localhost"
        """
    text = entries_file("app", body)
    write(tmp_path, "a.yaml", text)
    problems = problems_of(tmp_path)
    expected = {
        ("app:fn", "method", "method: 5"): "expected a string, got 5",
        ("app:fn", "modules[1]", "modules: [funcs, htp]"): "Moontide has no Lua module 'htp' (did you mean 'http'? "
                                                           "function.lua allows:",
        ("app:fn", "imports.utils", "utils: 5"): "expected a string, got 5",
        ("app:svc", "lifecycle.auto_start", "auto_start:"): "expected true or false, got 'yes'",
        ("app:svc", "lifecycle.stop_timeout", "stop_timeout:"): "expected a duration like '10s'",
        ("app:svc", "lifecycle.restart.max_attempts", "max_attempts: -1"): "must be at least 0, got -1",
        ("app:svc", "lifecycle.restart.jitter", "jitter: 2"): "must be at most 1, got 2",
        ("app:svc", "worker_options.max_concurrent_workflow_task_pollers", "worker_options:"):
            "must be at least 2, got 1",
        ("app:c", "address", 'address: "localhost"'): "expected 'host:port' or '${env:NAME}', got 'localhost'",
    }
    for (entry, field, needle), message in expected.items():
        problem = one(problems, entry=entry, field=field)
        assert problem.message.startswith(message), problem
        assert problem.line == line_of(text, needle), problem
    assert len(problems) == len(expected)


def test_module_not_allowed_in_a_workflow(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        entries_file("app", "- name: w\n  kind: workflow.lua\n  source: return 1\n  modules: [http]\n"),
    )
    problem = one(problems_of(tmp_path), field="modules[0]")
    assert problem.message.startswith("module 'http' is not allowed in a workflow.lua: what it does would not be "
                                      "recorded in the workflow's history; call a function.lua for it "
                                      "(workflow.lua allows: funcs, time,")


def test_method_not_allowed_on_a_library(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", entries_file("app", "- name: l\n  kind: library.lua\n  source: return {}\n  method: x\n"))
    assert one(problems_of(tmp_path), field="method").message.startswith("unknown field 'method'")


def test_auth_rules(tmp_path: Path) -> None:
    # Wippy's: api_key needs one of api_key/api_key_file; mtls a certificate and a key, each from a file or PEM
    # text (not both); a credential of another auth type is refused, not ignored
    body = """\
        - name: a
          kind: temporal.client
          address: h:7233
          auth: {type: api_key}
        - name: b
          kind: temporal.client
          address: h:7233
          auth: {type: mtls, cert_file: c.pem, cert_pem: "-----BEGIN", api_key: k}
        - name: c
          kind: temporal.client
          address: h:7233
          auth: {type: api_key, api_key: k, api_key_file: k.txt}
          tls: {enabled: true, insecure_skip_verify: true}
        - name: fine
          kind: temporal.client
          address: h:7233
          auth: {type: mtls, cert_pem: "${env:CERT}", key_file: k.pem}
        """
    write(tmp_path, "a.yaml", entries_file("app", body))
    problems = problems_of(tmp_path)
    assert one(problems, entry="app:a", field="auth.api_key").message == (
        "auth type 'api_key' needs auth.api_key or auth.api_key_file")
    assert one(problems, entry="app:b", field="auth.cert_pem").message == "give auth.cert_file or auth.cert_pem, not both"
    assert one(problems, entry="app:b", field="auth.key_file").message == "auth type 'mtls' needs auth.key_file or auth.key_pem"
    assert one(problems, entry="app:b", field="auth.api_key").message == (
        "auth.api_key is for auth type 'api_key', but auth.type is 'mtls'")
    assert one(problems, entry="app:c", field="auth.api_key_file").message == "give auth.api_key or auth.api_key_file, not both"
    assert one(problems, entry="app:c", field="tls.insecure_skip_verify").message.startswith(
        "Must be false: the Temporal SDK always verifies the server certificate")
    assert len(problems) == 6


def test_duplicate_entry_id_names_both_places(tmp_path: Path) -> None:
    first = entries_file("app", "- name: host\n  kind: process.host\n")
    second = entries_file("app", "- name: other\n  kind: process.host\n- name: host\n  kind: process.host\n")
    write(tmp_path, "a.yaml", first)
    write(tmp_path, "b.yaml", second)
    problem = one(problems_of(tmp_path), entry="app:host")
    assert problem.file == "b.yaml" and problem.line == line_of(second, "- name: host")
    assert (
        problem.message == f"duplicate entry ID 'app:host' (first defined at a.yaml:{line_of(first, '- name: host')})"
    )


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    text = entries_file("app", "- name: w\n  kind: workflow.lua\n  source: return 1\n  source: return 2\n")
    write(tmp_path, "a.yaml", text)
    problem = one(problems_of(tmp_path), field="source")
    assert problem.entry == "app:w"
    assert problem.line == line_of(text, "source: return 2")
    assert problem.message.startswith(f"duplicate key 'source' (first at line {line_of(text, 'source: return 1')}")


def test_references(tmp_path: Path) -> None:
    body = """\
        - name: c
          kind: temporal.client
        - name: fn
          kind: function.lua
          source: return 1
        - name: lib
          kind: library.lua
          source: return {}
        - name: worker
          kind: temporal.worker
          client: clinet
        - name: worker2
          kind: temporal.worker
          client: fn
        - name: svc
          kind: process.service
          process: other.ns:missing
          host: c
          lifecycle:
            depends_on: [worker, fn, svc, nope]
        - name: flow
          kind: workflow.lua
          source: return 1
          imports:
            good: lib
            wrong: fn
            gone: app.libs:util
            broken: ":x"
        """
    text = entries_file("app", body)
    write(tmp_path, "a.yaml", text)
    problems = problems_of(tmp_path)
    expected = {
        (
            "app:worker",
            "client",
            "client: clinet",
        ): "unknown entry 'app:clinet' (did you mean 'app:c'? expected a temporal.client)",
        ("app:worker2", "client", "client: fn"): "'app:fn' is a function.lua, expected a temporal.client",
        ("app:svc", "process", "process: other.ns"): "unknown entry 'other.ns:missing' (expected a process.lua)",
        ("app:svc", "host", "host: c"): "'app:c' is a temporal.client, expected a process.host",
        (
            "app:svc",
            "lifecycle.depends_on[1]",
            "depends_on:",
        ): "'app:fn' is a function.lua, expected a process.service or temporal.client or temporal.worker",
        ("app:svc", "lifecycle.depends_on[2]", "depends_on:"): "an entry cannot refer to itself",
        ("app:svc", "lifecycle.depends_on[3]", "depends_on:"): "unknown entry 'app:nope'",
        ("app:flow", "imports.wrong", "wrong: fn"): "'app:fn' is a function.lua, expected a library.lua",
        ("app:flow", "imports.gone", "gone:"): "unknown entry 'app.libs:util'",
        ("app:flow", "imports.broken", "broken:"): "invalid entry ID ':x'",
    }
    for (entry, field, needle), message in expected.items():
        problem = one(problems, entry=entry, field=field)
        assert problem.message.startswith(message), problem
        assert problem.line == line_of(text, needle), problem
    assert len(problems) == len(expected)


def test_dependency_cycle(tmp_path: Path) -> None:
    body = """\
        - name: a
          kind: temporal.client
          lifecycle: {depends_on: [b]}
        - name: b
          kind: temporal.client
          lifecycle: {depends_on: [app:a]}
        """
    text = entries_file("app", body)
    write(tmp_path, "a.yaml", text)
    problem = one(problems_of(tmp_path))
    assert problem.message == "dependency cycle: app:a -> app:b -> app:a"
    assert problem.entry == "app:b" and problem.field == "lifecycle.depends_on[0]"


LUA_ENTRY = "- name: flow\n  kind: workflow.lua\n  source: {source}\n"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("file:///etc/passwd", "absolute path '/etc/passwd': give a path relative to the YAML file"),
        ("file://../outside.lua", "'../outside.lua' is outside the app root"),
        ("file://sub/../../outside.lua", "'sub/../../outside.lua' is outside the app root"),
        ("file://link.lua", "'link.lua' leads outside the app root through a symlink"),
        ("file://linkdir/x.lua", "'linkdir/x.lua' leads outside the app root through a symlink"),
        ("file://missing.lua", "Lua file not found: 'missing.lua'"),
        ("file://dir", "'dir' is not a file"),
        ("file://latin1.lua", "'latin1.lua' is not valid UTF-8 (byte 3)"),
        ("file://", "no path after 'file://'"),
        ("flow.lua", "'flow.lua' looks like a file: write 'file://flow.lua'"),
        ('"  "', "empty Lua source"),
    ],
)
def test_bad_lua_sources(tmp_path: Path, source: str, message: str) -> None:
    root = tmp_path / "app"
    write(tmp_path, "outside.lua", "return 1\n")
    write(tmp_path, "elsewhere/x.lua", "return 1\n")
    (root / "dir").mkdir(parents=True)
    (root / "link.lua").symlink_to(tmp_path / "outside.lua")
    (root / "linkdir").symlink_to(tmp_path / "elsewhere")
    (root / "latin1.lua").write_bytes(b"-- \xe9\n")
    text = entries_file("app", LUA_ENTRY.format(source=source))
    write(root, "a.yaml", text)
    problem = one(problems_of(root))
    assert (problem.file, problem.entry, problem.field) == ("a.yaml", "app:flow", "source")
    assert problem.message == message
    assert problem.line == line_of(text, "source:")


def test_file_source_inside_root_through_parent_dirs(tmp_path: Path) -> None:
    write(tmp_path, "lua/flow.lua", "return 1\n")
    write(tmp_path, "yaml/a.yaml", entries_file("app", LUA_ENTRY.format(source="file://../lua/flow.lua")))
    entry = load_app(tmp_path).get("app:flow")
    assert entry.source_file == "lua/flow.lua" and entry.data["source"] == "return 1\n"


def test_many_problems_in_many_files_at_once(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", entries_file("app", "- name: h\n  kind: process.host\n  queue_size: 0\n"))
    write(tmp_path, "b/b.yaml", "version: '1.0'\nnamespace: b\nentries: [\n")
    write(tmp_path, "c.yaml", entries_file("c", "- name: w\n  kind: temporal.worker\n  client: app:nope\n"))
    write(tmp_path, "d.yaml", entries_file("d", "- name: f\n  kind: workflow.lua\n  source: file://none.lua\n"))
    with pytest.raises(EntryErrors) as info:
        load_app(tmp_path)
    problems = info.value.problems
    assert [p.file for p in problems] == ["a.yaml", "b/b.yaml", "c.yaml", "d.yaml"]
    assert one(problems, file="a.yaml").field == "queue_size"
    assert one(problems, file="c.yaml").message.startswith("unknown entry 'app:nope'")
    assert one(problems, file="d.yaml").message == "Lua file not found: 'none.lua'"
    text = str(info.value)
    assert text.startswith("4 problems in the app:")
    assert "a.yaml:6, entry app:h, field queue_size: must be at least 1, got 0" in text
    assert info.value.kind == "Invalid"


def test_check_lua_reports_lua_file_and_line(app_dir: Path) -> None:
    calls: list[tuple[str, str]] = []

    def check_lua(text: str, chunkname: str) -> tuple[int, str] | None:
        calls.append((text, chunkname))
        return (
            (3, "syntax error near 'end'")
            if chunkname in ("flows/order_processor.lua", "flows/flows.yaml:charge")
            else None
        )

    problems = problems_of(app_dir, check_lua=check_lua)
    assert sorted(name for _, name in calls) == [
        "flows/flows.yaml:charge",
        "flows/flows.yaml:pinger",
        "flows/order_processor.lua",
        "lib/lua/util.lua",
    ]
    assert (ORDER_LUA, "flows/order_processor.lua") in calls
    from_file = one(problems, file="flows/order_processor.lua")
    assert (from_file.entry, from_file.field, from_file.line) == ("app.flows:order_processor", "source", 3)
    assert from_file.message == "syntax error near 'end'"
    inline = one(problems, file="flows/flows.yaml")
    assert (inline.entry, inline.line) == ("app.flows:charge", line_of(FLOWS_YAML, "local function charge") + 2)
    assert len(problems) == 2


def test_check_lua_passing_loads(app_dir: Path) -> None:
    assert len(load_app(app_dir, check_lua=lambda text, name: None).entries) == 9


def test_no_entry_files(tmp_path: Path) -> None:
    write(tmp_path, "notes.txt", "hi")
    assert one(problems_of(tmp_path)).message.startswith("no entry files")
    with pytest.raises(errors.NotFound):
        load_app(tmp_path / "absent")


# --- documents and raw entries (the Kubernetes path) -------------------------------


def test_load_documents_shares_validation(tmp_path: Path) -> None:
    write(tmp_path, "lua/f.lua", "return 1\n")
    docs = [
        (
            "crs",
            {
                "version": "1.0",
                "namespace": "app",
                "entries": [
                    {"name": "f", "kind": "function.lua", "source": "return function() end"},
                    {"name": "g", "kind": "function.lua", "source": "file://lua/f.lua"},
                ],
            },
        ),
    ]
    app = load_documents(docs, tmp_path)
    assert app.get("app:f").data["method"] == ""
    assert app.get("app:g").source_file == "lua/f.lua"
    docs.append(("more", {"version": "1.0", "namespace": "app", "entries": [{"name": "f", "kind": "nope"}]}))
    with pytest.raises(EntryErrors) as info:
        load_documents(docs, tmp_path)
    problem = one(info.value.problems, file="more", field="kind")
    assert problem.line is None and problem.message.startswith("unknown kind 'nope'")


def test_build_app_from_raw_entries(tmp_path: Path) -> None:
    raws = [
        RawEntry("TemporalClient/c", "prod", {"name": "c", "kind": "temporal.client", "address": "t:7233"}),
        RawEntry(
            "TemporalWorker/w", "prod", {"name": "w", "kind": "temporal.worker", "client": "c", "task_queue": "q"}
        ),
        RawEntry("LuaWorkflow/f", "prod", {"name": "f", "kind": "workflow.lua", "source": "return 1"}),
    ]
    app = build_app(tmp_path, raws)
    assert app.get("prod:w").data["task_queue"] == "q"
    assert app.get("prod:c").data["embedded"] is False
    assert app.get("prod:f").source_file == "LuaWorkflow/f:f"
    bad = RawEntry("LuaWorkflow/g", "prod", {"name": "g", "kind": "workflow.lua", "source": "file://x.lua"})
    with pytest.raises(EntryErrors) as info:
        build_app(tmp_path, [*raws, bad])
    assert one(info.value.problems).message == "file:// sources cannot be read here: give the Lua source inline"


def test_yaml_symlinked_outside_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "app"
    write(tmp_path, "outside.yaml", entries_file("x", "- name: h\n  kind: process.host\n"))
    write(root, "a.yaml", entries_file("app", "- name: h\n  kind: process.host\n"))
    os.symlink(tmp_path / "outside.yaml", root / "b.yaml")
    assert one(problems_of(root)).message == "symlink to a file outside the app root"


def test_entries_do_not_import_lua_or_temporal() -> None:
    code = "import sys, moontide.entries; print([m for m in sys.modules if m.split('.')[0] in ('lupa', 'temporalio')])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
