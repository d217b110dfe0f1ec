"""The ctx module in processes (Wippy's en/lua/core/context.md and process.md, "Context Spawner").

A process's context comes from whoever spawned it: Python, another process
(``process.with_context{...}`` or inherited), and it goes on to the functions
it calls and the workflows it starts (through the bridge, on the session's
real Temporal dev server).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from _procs import PROCESS_MODULES, FUNCTION_MODULES, process_app, running
from test_process_workflows import both

MODULES = PROCESS_MODULES[:-1] + ", ctx]"

ROOT = """
return function()
  local out = { mine = ctx.all() }
  local child = process.with_context({step = "child"}):spawn_monitored("app:child", "app:host")
  out.child = process.events():receive().result.value
  process.spawn_monitored("app:child", "app:host")                    -- inherits
  out.inherited = process.events():receive().result.value
  local spawner = process.with_context({a = 1}):with_context({b = 2})
  out.chained = spawner:exec("app:child", "app:host")
  out.fn = funcs.call("show")
  out.fn_with = funcs.new():with_context({trace = "t"}):call("show")
  local f = funcs.new():with_context({trace = "async"}):async("show")
  f:response():receive()
  out.fn_async = f:result():data()
  local bad, err = process.with_context({[1] = "x"})
  out.bad = bad == nil and errors.is(err, errors.INVALID)
  return out
end
"""

CHILD = "return function() return ctx.all() end"
SHOW = "return function() return ctx.all() end"


def _app(make_app: Callable[..., Path], processes: dict[str, str], **kw: object) -> Path:
    app = process_app(make_app, processes, functions={"show": SHOW}, **kw)  # type: ignore[arg-type]
    text = (app / "app.yaml").read_text().replace(f"modules: {PROCESS_MODULES}", f"modules: {MODULES}")
    text = text.replace(f"modules: {FUNCTION_MODULES}", "modules: [ctx]")
    (app / "app.yaml").write_text(text)
    return app


async def test_a_process_context_reaches_its_children_and_functions(make_app: Callable[..., Path]) -> None:
    app = _app(make_app, {"root": ROOT, "child": CHILD})
    base = {"request_id": "r1"}
    async with running(app) as system:
        out = await system.result(system.spawn("app:root", "app:host", context=base))
        plain = await system.result(system.spawn("app:child", "app:host"))
    assert plain == {}
    assert out["mine"] == base
    assert out["child"] == {**base, "step": "child"}
    assert out["inherited"] == base
    assert out["chained"] == {**base, "a": 1, "b": 2}
    assert out["fn"] == base
    assert out["fn_with"] == {**base, "trace": "t"}
    assert out["fn_async"] == {**base, "trace": "async"}
    assert out["bad"] is True


async def test_a_process_passes_its_context_to_the_workflows_it_starts(make_app: Callable[..., Path],
                                                                         temporal_address: str) -> None:
    caller = """
    return function()
      local exec = process.with_context({via = "process"}):exec("wf", "worker")
      local pid = process.spawn_monitored("wf", "worker")
      return { exec = exec, spawned = process.events():receive().result.value }
    end
    """
    wf = "return function() return ctx.all() end"
    app = _app(make_app, {"caller": caller}, workflows={"wf": wf})
    text = (app / "app.yaml").read_text().replace("modules: [funcs, time, process, channel, workflow, errors, json, "
                                                  "logger]", "modules: [ctx]")
    (app / "app.yaml").write_text(text)
    async with both(app, temporal_address) as (rt, system):
        out = await system.result(system.spawn("app:caller", "app:host", context={"tenant": "acme"}))
    assert out == {"exec": {"tenant": "acme", "via": "process"}, "spawned": {"tenant": "acme"}}


async def test_a_spawner_carries_context_name_and_messages_together(make_app: Callable[..., Path]) -> None:
    root = """
    return function()
      local out = {}
      -- with_context first, then the rest (and the other way round): each keeps what the others set
      local a = process.with_context({step = "a"}):with_name("greeter-a"):with_message("hi", "there")
      local pid = a:with_context({more = true}):spawn_monitored("app:greeter", "app:host")
      out.a = process.events():receive().result.value
      out.a_pid = pid
      pid = process.with_options({}):with_message("hi", 1, 2):with_name("greeter-b"):with_context({step = "b"})
        :spawn_monitored("app:greeter", "app:host")
      out.b = process.events():receive().result.value
      out.me = process.pid()
      return out
    end
    """
    greeter = """
    return function()
      local msg = process.inbox():receive()
      local named = process.registry.lookup(ctx.get("step") == "a" and "greeter-a" or "greeter-b")
      return { all = ctx.all(), topic = msg:topic(), data = msg:payload():data(), from = msg:from(),
               named = named == process.pid(), pid = process.pid() }
    end
    """
    app = _app(make_app, {"root": root, "greeter": greeter})
    async with running(app) as system:
        out = await system.result(system.spawn("app:root", "app:host", context={"request_id": "r1"}))
    me = out["me"]
    assert out["a"] == {"all": {"request_id": "r1", "step": "a", "more": True}, "topic": "hi", "data": "there",
                        "from": me, "named": True, "pid": out["a_pid"]}
    assert {k: v for k, v in out["b"].items() if k != "pid"} == {
        "all": {"request_id": "r1", "step": "b"}, "topic": "hi", "data": [1, 2], "from": me, "named": True}


async def test_a_process_starts_a_named_workflow_with_a_message_and_a_context(make_app: Callable[..., Path],
                                                                             temporal_address: str) -> None:
    caller = """
    return function(wid)
      local pid = process.with_options({["workflow.execution_timeout"] = "1m"}):with_context({via = "named"})
        :with_name(wid):with_message("go", {n = 1}):spawn_monitored("wf", "worker")
      return { pid = pid, me = process.pid(), got = process.events():receive().result.value }
    end
    """
    wf = """
    return function()
      local msg = process.inbox():receive()
      return { all = ctx.all(), topic = msg:topic(), data = msg:payload():data(), from = msg:from() }
    end
    """
    app = _app(make_app, {"caller": caller}, workflows={"wf": wf})
    text = (app / "app.yaml").read_text().replace("modules: [funcs, time, process, channel, workflow, errors, json, "
                                                  "logger]", "modules: [ctx, process]")
    (app / "app.yaml").write_text(text)
    wid = f"named-{uuid.uuid4().hex[:8]}"
    async with both(app, temporal_address) as (rt, system):
        out = await system.result(system.spawn("app:caller", "app:host", wid, context={"tenant": "acme"}))
        desc = await (await rt.handle(out["pid"])).describe()
    assert out["pid"].endswith(f"|{wid}}}")
    assert out["got"] == {"all": {"tenant": "acme", "via": "named"}, "topic": "go", "data": {"n": 1},
                          "from": out["me"]}
    assert desc.raw_description.execution_config.workflow_execution_timeout.seconds == 60
