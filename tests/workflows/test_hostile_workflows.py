"""Hostile workflows and functions on a real worker: another execution's results, data and replay are unaffected.

A victim workflow and an attacker workflow run on one worker process, so on
one Lua runtime (``Shards``). The attacker tampers with everything it can
reach (tests/hostile.py) while the victim is parked in a timer, after calling
a function with a secret argument and before receiving a secret message. The
worker is then SIGKILLed and a fresh worker process finishes both: the
attacker replays (and tampers again), the victim's whole history is replayed
beside it. The victim's results must equal a control run's, it must find no
trace of the attacker, the attacker's spies must have seen none of its calls,
and no workflow task may fail. Functions share pooled runtimes across calls:
an attacker function runs, then a victim function on the same runtime.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile import ATTACKER, VICTIM

from moontide.runtime import AppRuntime
from moontide_testing import TEMPORAL_ENTRIES, WorkerProcess, eventually
from test_crash import count, finish, history

HANG = 120
WORKFLOW_MODULES = ["funcs", "time", "uuid", "process", "channel", "workflow", "json", "base64", "hash", "errors",
                    "logger", "crypto", "ctx", "payload"]
FUNCTION_MODULES = ["funcs", "time", "uuid", "process", "json", "base64", "hash", "errors", "logger", "crypto", "ctx",
                    "payload", "http_client", "events", "registry"]

VICTIM_WAITS = """
  local got = funcs.call("app:echo", "S3CRET-ARG")
  time.sleep("5s")
  local msg = process.inbox():receive()
  if got ~= "S3CRET-ARG" or msg:payload():data() ~= "S3CRET-MSG" then error("the victim's own data changed") end
"""

#: A function chunk: the attacker on its first call ("attack"), a report of its spies on the next ("report").
FUNCTION_ATTACKER = ("local spied\nreturn function(M, phase)\n  if phase == 'report' then return #spied end\n"
                     + ATTACKER.split("\n", 1)[1].replace("WAIT", "spied = stolen do return n end"))
assert "spied = stolen" in FUNCTION_ATTACKER

#: A function chunk: the victim, with ordinary work and a secret where the workflow victim waits.
FUNCTION_VICTIM = ("local victim = (function()\n" + VICTIM.replace("DURING", """
  local secret = json.encode({ secret = "S3CRET-ARG" })
  if json.decode(secret).secret ~= "S3CRET-ARG" or string.upper("s3cret") ~= "S3CRET" then error("changed") end
""") + "\nend)()\nreturn victim\n")


def _app(make_app: Callable[..., Path]) -> Path:
    def entry(name: str, kind: str, modules: list[str]) -> str:
        return (f"  - name: {name}\n    kind: {kind}\n    source: file://{name}.lua\n"
                f"    modules: [{', '.join(modules)}]\n")
    yaml = (textwrap.dedent(TEMPORAL_ENTRIES).lstrip("\n") + '    worker_options: {"sticky_schedule_to_start_timeout": "1s"}\n'
            + entry("victim", "workflow.lua", WORKFLOW_MODULES) + entry("attacker", "workflow.lua", WORKFLOW_MODULES)
            + entry("driver", "workflow.lua", ["funcs"]) + entry("echo", "function.lua", ["time"])
            + entry("fn_attacker", "function.lua", FUNCTION_MODULES)
            + entry("fn_victim", "function.lua", FUNCTION_MODULES)
            + entry("spin", "function.lua", ["time"]))
    return make_app({
        "app.yaml": yaml,
        "victim.lua": VICTIM.replace("DURING", VICTIM_WAITS),
        "attacker.lua": ATTACKER.replace("WAIT", 'sleep("2s")'),
        "echo.lua": "return function(x) return x end\n",
        "fn_attacker.lua": FUNCTION_ATTACKER,
        "fn_victim.lua": FUNCTION_VICTIM,
        "driver.lua": """
            return function(M)
              local control = funcs.call("app:fn_victim", M)
              local tables = funcs.call("app:fn_attacker", M, "attack")
              local victim = funcs.call("app:fn_victim", M)
              return { control = control, victim = victim, tables = tables,
                       spied = funcs.call("app:fn_attacker", M, "report") }
            end
        """,
        "spin.lua": "return function() local n = 0 while true do n = n + 1 end end\n",
    })


@pytest.fixture
def workers(tmp_path: Path, temporal_address: str) -> Iterator[Callable[[Path], Awaitable[WorkerProcess]]]:
    started: list[WorkerProcess] = []

    async def start(app: Path) -> WorkerProcess:
        w = WorkerProcess(app, temporal_address, tmp_path / f"worker-{len(started) + 1}.log")
        started.append(w)
        return await w.start()

    yield start
    for w in started:
        w.stop()


async def test_a_hostile_workflow_changes_nothing_for_a_victim_on_its_worker_nor_on_replay(
        make_app: Callable[..., Path], temporal_address: str, workers: Any) -> None:
    app = _app(make_app)
    modules = {m: True for m in WORKFLOW_MODULES}
    rt = AppRuntime(app, temporal=temporal_address)
    first = await workers(app)
    control = await rt.spawn("app:victim", None, modules)
    await rt.send(control, "secret", "S3CRET-MSG")
    expected = await asyncio.wait_for(rt.result(control), HANG)

    victim = await rt.spawn("app:victim", None, modules)
    await eventually(lambda: history(rt, victim), lambda evs: count(evs, "TIMER_STARTED") == 1,
                     what="the victim parked in its timer", timeout=HANG)
    attacker = await rt.spawn("app:attacker", None, modules)
    await eventually(lambda: history(rt, attacker), lambda evs: count(evs, "TIMER_STARTED") == 1,
                     what="the attacker done tampering", timeout=HANG)
    first.kill()
    second = await workers(app)
    await rt.send(victim, "secret", "S3CRET-MSG")
    (tables, spied), _ = await finish(rt, attacker, first, second)
    got, evs = await finish(rt, victim, first, second)
    assert tables >= 40, "the attacker reached next to nothing: the test would prove nothing"
    assert expected[2] == "" and got == expected
    assert spied == 0
    assert count(evs, "TIMER_FIRED") == 1 and count(evs, "ACTIVITY_TASK_COMPLETED") == 1


async def test_a_hostile_function_changes_nothing_for_the_next_function_on_its_runtime(
        make_app: Callable[..., Path], temporal_address: str, workers: Any) -> None:
    app = _app(make_app)
    rt = AppRuntime(app, temporal=temporal_address)
    first = await workers(app)
    pid = await rt.spawn("app:driver", None, {m: True for m in FUNCTION_MODULES})
    got, _ = await finish(rt, pid, first)
    assert got["tables"] >= 40
    assert got["control"][2] == ""
    assert got["victim"] == got["control"]
    assert got["spied"] == 0


async def test_a_function_past_its_timeout_is_stopped_and_its_worker_goes_on(
        make_app: Callable[..., Path], temporal_address: str, workers: Any) -> None:
    """Before, the function's thread went on burning a core for good after its activity timed out."""
    app = _app(make_app)
    (app / "driver.lua").write_text("""
        return function()
          local once = funcs.new():with_options{ start_to_close_timeout = "2s", retry_policy = { maximum_attempts = 1 } }
          local _, err = once:call("app:spin")
          return { kind = err and err:kind(), echo = funcs.call("app:echo", "still serving") }
        end
    """)
    rt = AppRuntime(app, temporal=temporal_address)
    worker = await workers(app)
    pid = await rt.spawn("app:driver")
    got, _ = await finish(rt, pid, worker)
    assert got == {"kind": "Timeout", "echo": "still serving"}
    await eventually(worker.output, lambda out: "app:spin failed (attempt 1): [Timeout] app:spin: stopped" in out,
                     what="the function's thread stopped", timeout=HANG)
    assert "ran past its activity timeout: stopping it" in worker.output()
