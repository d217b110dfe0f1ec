"""Search attributes: declared on the temporal.client, set at spawn (Python, CLI, function and workflow Lua),
read and upserted from workflow Lua, registered by the embedded dev server; checked against a real server."""

from __future__ import annotations

import datetime
import json
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError

from _issue3 import eventually, make_flows, replay_failure, run_cli_async, wait_blocking
from moontide_testing import running
from moontide import errors
from moontide.runtime import AppRuntime

#: name -> (Moontide type, Temporal type); Mt* so they cannot clash with other tests' attributes.
DECLARED = {"MtOrder": ("keyword", IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD),
            "MtNote": ("text", IndexedValueType.INDEXED_VALUE_TYPE_TEXT),
            "MtCount": ("int", IndexedValueType.INDEXED_VALUE_TYPE_INT),
            "MtTotal": ("double", IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE),
            "MtRush": ("bool", IndexedValueType.INDEXED_VALUE_TYPE_BOOL),
            "MtDue": ("datetime", IndexedValueType.INDEXED_VALUE_TYPE_DATETIME),
            "MtTags": ("keyword_list", IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST)}

VALUES = {"MtOrder": "o-1", "MtNote": "rush order", "MtCount": 3, "MtTotal": 12.5, "MtRush": True,
          "MtDue": "2026-01-02T03:04:05Z", "MtTags": ["a", "b"]}

# Reports what it carries, upserts on "upsert", then reports again.
FLOW = """
return function()
  local before = workflow.info().search_attributes
  local msg = process.inbox():receive()
  local ok, err = workflow.upsert_search_attributes(msg:payload():data())
  local _, unknown = workflow.upsert_search_attributes{ Nope = 1 }
  local _, wrong = workflow.upsert_search_attributes{ MtCount = "three" }
  return { before = before, after = workflow.info().search_attributes, ok = ok, err = err and err:message(),
           unknown = unknown:message(), wrong = wrong:message() }
end
"""


def _with_attributes(app: Path) -> Path:
    yaml = app / "app.yaml"
    block = "    search_attributes:\n" + "".join(f"      {n}: {t}\n" for n, (t, _) in DECLARED.items())
    yaml.write_text(yaml.read_text().replace("    address: 127.0.0.1:1\n", "    address: 127.0.0.1:1\n" + block, 1))
    return app


async def _register(client: Client) -> None:
    """What an operator does on a server Moontide does not start: register the attributes."""
    for name, (_, kind) in DECLARED.items():
        try:
            await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
                namespace=client.namespace, search_attributes={name: kind}))
        except RPCError as e:
            if "already" not in e.message.lower():
                raise


async def _carried(rt: AppRuntime, pid: Any) -> dict[str, Any]:
    desc = await (await rt.handle(pid)).describe()
    out: dict[str, Any] = {}
    for pair in desc.typed_search_attributes:
        if pair.key.name in DECLARED:
            out[pair.key.name] = list(pair.value) if isinstance(pair.value, (list, tuple)) else pair.value
    return out


EXPECTED_TYPED = {**VALUES, "MtTotal": 12.5, "MtTags": ["a", "b"],
                  "MtDue": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)}


async def test_python_spawn_sets_typed_attributes_and_lua_reads_and_upserts_them(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = _with_attributes(make_flows(make_app, {"flow": FLOW}))
    order = f"o-{uuid.uuid4().hex[:8]}"
    async with running(app, temporal_address) as rt:
        await _register(await rt.client("app:client"))
        pid = await rt.spawn("app:flow", None, options={"search_attributes": {**VALUES, "MtOrder": order}})
        assert await _carried(rt, pid) == {**EXPECTED_TYPED, "MtOrder": order}
        client = await rt.client("app:client")
        found = await eventually(lambda: _ids(client, f"MtOrder = '{order}' AND MtCount = 3"), lambda ids: bool(ids),
                                 what="the list query finding the workflow")
        assert found == [pid.workflow_id]
        await wait_blocking(rt, pid, "receive")
        await rt.send(pid, "upsert", {"MtCount": 4, "MtTags": ["c"]})
        out = await rt.result(pid)
        after = await _carried(rt, pid)
        assert await replay_failure(app, rt, pid) is None  # the upsert is a command the replay repeats
    assert out["before"] == {**VALUES, "MtOrder": order}
    assert out["after"] == {**VALUES, "MtOrder": order, "MtCount": 4, "MtTags": ["c"]}
    assert out["ok"] is True, out["err"]
    assert after["MtCount"] == 4 and after["MtTags"] == ["c"]  # the server has the upsert
    assert "'Nope'" in out["unknown"] and "MtOrder" in out["unknown"]  # names the declared ones
    assert "'MtCount' (int)" in out["wrong"] and '"three"' in out["wrong"]


async def _ids(client: Client, query: str) -> list[str]:
    return [w.id async for w in client.list_workflows(query)]


@pytest.mark.parametrize("bad,message", [
    ({"Nope": "x"}, "'Nope' is not a search attribute of temporal.client app:client (declared: MtCount, MtDue"),
    ({"MtCount": 1.5}, "'MtCount' (int): expected an integer, got 1.5"),
    ({"MtRush": "yes"}, "'MtRush' (bool): expected a boolean"),
    ({"MtDue": "tomorrow"}, "'MtDue' (datetime): expected an RFC 3339 time"),
    ({"MtTags": [1]}, "'MtTags' (keyword_list): expected a list of strings"),
])
async def test_undeclared_or_mistyped_attributes_are_invalid(
        make_app: Callable[..., Path], temporal_address: str, bad: dict[str, Any], message: str) -> None:
    app = _with_attributes(make_flows(make_app, {"flow": FLOW}))
    async with running(app, temporal_address) as rt:
        with pytest.raises(errors.Invalid) as info:
            await rt.spawn("app:flow", None, options={"search_attributes": bad})
    assert message in info.value.message


async def test_child_function_and_cli_spawns_carry_attributes(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    plain = "return function() return workflow.info().search_attributes end"
    parent = """
    return function(order)
      local child = assert(process.with_options{ search_attributes = { MtOrder = order, MtCount = 1 } }
        :spawn("plain", "worker"))
      local ev = process.events():receive()
      local via_function = assert(funcs.call("starter", order))
      local _, bad = process.with_options{ search_attributes = { MtCount = "x" } }:spawn("plain", "worker")
      return { child = child, child_saw = ev.result.value, via_function = via_function, bad = bad:message() }
    end
    """
    starter = """
    return function(order)
      return process.with_options{ search_attributes = { MtOrder = order, MtRush = true } }
        :spawn("app:plain", "app:worker")
    end
    """
    app = _with_attributes(make_flows(make_app, {"plain": plain, "parent": parent}, {"starter": starter}))
    order = f"o-{uuid.uuid4().hex[:8]}"
    async with running(app, temporal_address) as rt:
        await _register(await rt.client("app:client"))
        out = await rt.result(await rt.spawn("app:parent", None, order))
        child = await _carried(rt, out["child"])
        from_function = await _carried(rt, out["via_function"])
        cli = await run_cli_async("spawn", "app:plain", "app:worker", "--app", str(app), "--temporal",
                                  temporal_address, "--options",
                                  json.dumps({"search_attributes": {"MtOrder": order, "MtTotal": 2}}))
        assert cli.returncode == 0, cli.stderr
        from_cli = await _carried(rt, cli.stdout.strip())
        cli_bad = await run_cli_async("spawn", "app:plain", "app:worker", "--app", str(app), "--temporal",
                                      temporal_address, "--options", '{"search_attributes": {"Nope": 1}}')
    assert child == {"MtOrder": order, "MtCount": 1}
    assert out["child_saw"] == {"MtOrder": order, "MtCount": 1}
    assert "'MtCount' (int)" in out["bad"]
    assert from_function == {"MtOrder": order, "MtRush": True}
    assert from_cli == {"MtOrder": order, "MtTotal": 2.0}
    assert cli_bad.returncode != 0 and "'Nope' is not a search attribute" in cli_bad.stderr


async def test_the_embedded_server_registers_the_declared_attributes(make_app: Callable[..., Path]) -> None:
    app = _with_attributes(make_flows(make_app, {"flow": FLOW}))
    yaml = app / "app.yaml"
    yaml.write_text(yaml.read_text().replace("    address: 127.0.0.1:1\n", "", 1))  # no address: embedded
    async with AppRuntime(app, serve=True, ui=False) as rt:
        assert "--search-attribute" in rt.server.command()
        pid = await rt.spawn("app:flow", None, options={"search_attributes": VALUES})
        assert await _carried(rt, pid) == EXPECTED_TYPED
        await rt.terminate(pid)


async def test_wippys_attrs_and_search_attributes_option(make_app: Callable[..., Path], temporal_address: str) -> None:
    """en/temporal/workflows.md: workflow.attrs{search=, memo=} and ["workflow.search_attributes"]."""
    flow = """
    return function(order)
      local before = workflow.info().search_attributes
      local ok, err = workflow.attrs({
          search = { MtOrder = order, MtCount = 7 },
          memo = { notes = "Priority customer" },
      })
      local _, wrong = workflow.attrs({ search = { MtCount = "seven" } })
      return { before = before, after = workflow.info().search_attributes, ok = ok, err = err and tostring(err),
               wrong = errors.is(wrong, errors.INVALID) and tostring(wrong) }
    end
    """
    app = _with_attributes(make_flows(make_app, {"flow": flow}))
    order = f"o-{uuid.uuid4().hex[:8]}"
    async with running(app, temporal_address) as rt:
        await _register(await rt.client("app:client"))
        pid = await rt.spawn("app:flow", None, order, options={"workflow.search_attributes": {"MtRush": True}})
        out = await rt.result(pid)
        carried = await _carried(rt, pid)
        memo = await (await (await rt.handle(pid)).describe()).memo()
        assert await replay_failure(app, rt, pid) is None
    assert out["ok"] is True, out["err"]
    assert out["before"] == {"MtRush": True}
    assert out["after"] == {"MtRush": True, "MtOrder": order, "MtCount": 7}
    assert carried == {"MtRush": True, "MtOrder": order, "MtCount": 7}
    assert memo["notes"] == "Priority customer"
    assert "'MtCount' (int)" in out["wrong"]
