"""A hostile process cannot change what another process on its host sees, nor read its messages.

Processes of a ``process.host`` share Lua runtimes (``Shards``). The attacker
tampers with everything it can reach (tests/hostile.py) while the victim waits
for a message with a secret; the victim's results must equal a control run's,
it must find no trace of the attacker, and the attacker's spies must have seen
none of its calls. A runaway in a message handler or a C function stops that
process only: the host goes on serving others.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from _procs import PROCESS_MODULES, process_app, running, settle
from hostile import ATTACKER, VICTIM

from moontide import errors

MODULES = ["process", "channel", "time", "errors", "json", "logger", "funcs", "uuid", "crypto", "ctx", "payload",
           "http_client", "events", "registry"]

VICTIM_WAITS = """
  local msg = process.inbox():receive()
  if msg:payload():data() ~= "S3CRET-MSG" then error("the victim's message changed") end
"""


async def test_a_hostile_process_changes_nothing_for_a_victim_on_its_host(make_app: Callable[..., Path]) -> None:
    app = process_app(make_app, {"victim": VICTIM.replace("DURING", VICTIM_WAITS),
                                 "attacker": ATTACKER.replace("WAIT", "inbox:receive()")})
    (app / "app.yaml").write_text((app / "app.yaml").read_text().replace(
        f"modules: {PROCESS_MODULES}", f"modules: [{', '.join(MODULES)}]"))
    modules = {m: True for m in MODULES}
    async with running(app) as system:
        control = system.spawn("app:victim", "app:host", modules)
        await system.send(control, "secret", "S3CRET-MSG")
        expected = await system.result(control)
        victim = system.spawn("app:victim", "app:host", modules)
        await settle(system, victim)
        attacker = system.spawn("app:attacker", "app:host", modules)
        await settle(system, attacker)              # done tampering, waiting
        await system.send(victim, "secret", "S3CRET-MSG")
        got = await system.result(victim)
        await system.send(attacker, "go", "")
        tables, spied = await system.result(attacker)
        late = system.spawn("app:victim", "app:host", modules)
        await system.send(late, "secret", "S3CRET-MSG")
        assert await system.result(late) == expected
    assert tables >= 40
    assert expected[2] == "" and got == expected
    assert spied == 0


async def test_a_runaway_process_fails_alone(make_app: Callable[..., Path]) -> None:
    """Before, each of these froze the whole host (and `moontide run` with it)."""
    app = process_app(make_app, {
        "handler": "return function() xpcall(error, function() while true do end end) end",
        "rep": "return function() return string.rep('', math.maxinteger) end",
        "move": "return function() return table.move({}, 1, math.maxinteger - 1, 2) end",
        "ok": "return function(x) return x * 2 end",
    })
    async with running(app) as system:
        for name in ("handler", "rep", "move"):
            pid = system.spawn(f"app:{name}", "app:host")
            try:
                await system.result(pid)
            except errors.MoontideError as e:
                assert e.kind == "BudgetExceeded", (name, e)
            else:
                raise AssertionError(f"{name} finished")
            assert await system.result(system.spawn("app:ok", "app:host", 21)) == 42
