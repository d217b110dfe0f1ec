"""process.service supervision: backoff, max_attempts, stable-run reset, depends_on order, stop_timeout."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable

import pytest

from _procs import process_app, running
from moontide_testing import eventually
from moontide import errors
from moontide.processes import Restart, ServiceState
from moontide.runtime import load

# Counts runs across restarts: every run of a service asks it for its number.
COUNTER = """
return function()
  process.registry.register("counter")
  local n = 0
  while true do
    local msg = process.inbox():receive()
    n = n + 1
    process.send(msg:from(), "n", { n = n })
  end
end
"""

# Asks the counter which run this is, then behaves as plan[n] says.
FLAKY = """
return function(plan)
  process.send("counter", "next", {})
  local n = process.inbox():receive().n
  local step = plan[n] or plan[#plan]
  if step == "exit" then return "done" end
  if step ~= "fail" then time.sleep(step) end
  error("run " .. n .. " fails")
end
"""


def service(name: str, *, process: str = "flaky", input: str = "[]", restart: str = "", extra: str = "") -> str:
    lifecycle = [ln for ln in (extra.replace("\n        ", "\n").splitlines() if extra else [])]
    if restart:
        lifecycle.append(f"restart: {restart}")
    body = "".join(f"\n    {ln.strip()}" if not ln.startswith(" ") else f"\n    {ln}" for ln in lifecycle)
    return f"""
- name: {name}
  kind: process.service
  process: {process}
  host: host
  input: {input}""" + (f"\n  lifecycle:{body}" if lifecycle else "") + "\n"


def assert_delays(svc, expected: list[float]) -> None:  # type: ignore[no-untyped-def]
    """The supervisor chose each configured delay, and waited at least that long between two runs
    (how much longer depends on the machine's load: not checked here)."""
    runs = list(svc.runs)
    assert [r.delay_before for r in runs[1:]] == expected
    gaps = [b.started - a.ended for a, b in zip(runs, runs[1:])]
    assert all(got >= want - 0.005 for got, want in zip(gaps, expected)), (gaps, expected)


async def test_a_service_that_always_fails_backs_off_then_fails(make_app: Callable[..., Path]) -> None:
    svc_yaml = service("flaky_svc", input='[["fail"]]',
                       restart="{initial_delay: 50ms, backoff_factor: 2, jitter: 0, max_attempts: 3, max_delay: 1s}")
    app = process_app(make_app, {"counter": COUNTER, "flaky": FLAKY}, entries=svc_yaml)
    async with running(app, auto_start=False) as system:
        system.spawn("app:counter", "app:host")
        svc = system.service("app:flaky_svc")
        assert await svc.start() is False           # never reached Running: it fails in its first activation
        assert await svc.wait() == ServiceState.FAILED
        assert svc.restarts == 3 and len(svc.runs) == 4
        assert "run 4 fails" in (svc.last_error or "")
        assert_delays(svc, [0.05, 0.1, 0.2])
        assert [r.delay_before for r in svc.runs] == [0, 0.05, 0.1, 0.2]


async def test_delays_are_capped_at_max_delay_and_spread_by_jitter(make_app: Callable[..., Path]) -> None:
    svc_yaml = service("capped", input='[["fail"]]',
                       restart="{initial_delay: 50ms, backoff_factor: 3, jitter: 0, max_attempts: 3, max_delay: 100ms}")
    app = process_app(make_app, {"counter": COUNTER, "flaky": FLAKY}, entries=svc_yaml)
    async with running(app, auto_start=False) as system:
        system.spawn("app:counter", "app:host")
        svc = system.service("app:capped")
        await svc.start()
        assert await svc.wait() == ServiceState.FAILED
        assert_delays(svc, [0.05, 0.1, 0.1])
    r = Restart(initial_delay=1, max_delay=90, backoff_factor=2, jitter=0.1, max_attempts=0)
    import random
    rand = random.Random(7)
    for n in range(10):
        d = r.delay(n, rand)
        assert min(2 ** n, 90) * 0.9 <= d <= min(min(2 ** n, 90) * 1.1, 90)
    assert r.base_delay(2000) == 90


async def test_a_stable_run_resets_the_attempt_count(make_app: Callable[..., Path]) -> None:
    # runs 1, 2 fail at once; run 3 lasts past stable_threshold (200ms) then fails;
    # run 4 fails at once; run 5 returns cleanly.
    svc_yaml = service("resets", input='[["fail", "fail", "300ms", "fail", "exit"]]', extra="stable_threshold: 200ms",
                       restart="{initial_delay: 50ms, backoff_factor: 2, jitter: 0, max_attempts: 0}")
    app = process_app(make_app, {"counter": COUNTER, "flaky": FLAKY}, entries=svc_yaml)
    async with running(app, auto_start=False) as system:
        system.spawn("app:counter", "app:host")
        svc = system.service("app:resets")
        await svc.start()
        assert await svc.wait() == ServiceState.EXITED
        assert svc.restarts == 4
        # 50ms, 100ms, then the stable run 3 resets the count: 50ms, 100ms
        assert_delays(svc, [0.05, 0.1, 0.05, 0.1])
        runs = list(svc.runs)
        assert runs[2].ended - runs[2].started >= 0.3


async def test_depends_on_orders_start_and_reverse_stop(make_app: Callable[..., Path]) -> None:
    # Declared in the wrong order on purpose. cache needs db registered at its start; api needs both.
    node = """
    return function(name, needs)
      for _, dep in ipairs(needs) do
        local _, err = process.registry.lookup(dep)
        if err then error(name .. " started before " .. dep) end
      end
      process.registry.register(name)
      local ev = process.events():receive()         -- pid.cancel when the service stops
      for _, dep in ipairs(needs) do
        local ok, err = process.send(dep, "ping", {})
        if not ok then return nil, errors.new{ kind = "Internal", message = name .. " outlived " .. dep } end
      end
      process.send("recorder", "stopped", { name = name, event = ev.kind })
      return name
    end
    """
    recorder = """
    return function()
      process.registry.register("recorder")
      local order = {}
      for _ = 1, 3 do
        local msg = process.listen("stopped"):receive()
        order[#order + 1] = msg.name .. ":" .. msg.event
      end
      return order
    end
    """
    lc = "auto_start: true\n        depends_on: {}"
    entries = "".join([
        service("api", process="node", input='["api", ["cache", "db"]]', extra=lc.format("[cache, db]")),
        service("cache", process="node", input='["cache", ["db"]]', extra=lc.format("[db]")),
        service("db", process="node", input='["db", []]', extra=lc.format("[]")),
        service("manual", process="node", input='["manual", []]'),
    ])
    app = process_app(make_app, {"node": node, "recorder": recorder}, entries=entries)
    async with running(app, auto_start=False) as system:
        rec = system.spawn("app:recorder", "app:host")
        sup = system.supervisor
        assert sup.order() == ["app:db", "app:cache", "app:api"]
        assert await system.start() == {"app:db": True, "app:cache": True, "app:api": True}
        running_order = [s for s, state in sup.history if state == "Running"]
        assert running_order == ["app:db", "app:cache", "app:api"]
        assert system.service("app:manual").state == ServiceState.STOPPED  # not auto_start
        assert all(system.service(s).restarts == 0 for s in ("app:db", "app:cache", "app:api"))
        await sup.stop()
        stopped_order = [s for s, state in sup.history if state == "Stopped"]
        assert stopped_order == ["app:api", "app:cache", "app:db"]
        assert await system.result(rec) == ["api:pid.cancel", "cache:pid.cancel", "db:pid.cancel"]
        assert [system.service(s).state for s in ("app:api", "app:cache", "app:db")] == [ServiceState.STOPPED] * 3


async def test_a_service_that_ignores_cancel_is_terminated_after_stop_timeout(make_app: Callable[..., Path]) -> None:
    stubborn = """
    return function()
      while true do
        local ok, err = time.sleep("1h")       -- Canceled: ignored
      end
    end
    """
    svc_yaml = service("stubborn_svc", process="stubborn", extra="stop_timeout: 200ms")
    app = process_app(make_app, {"stubborn": stubborn}, entries=svc_yaml)
    async with running(app, auto_start=False) as system:
        svc = system.service("app:stubborn_svc")
        assert await svc.start() is True
        pid = svc.pid
        assert pid is not None
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await svc.stop()
        took = loop.time() - t0
        assert svc.state == ServiceState.STOPPED and 0.19 <= took < 2
        ex = await system.wait(pid)
        assert ex.error is not None and ex.error.kind == "Terminated" and "200ms" not in ex.error.message
        assert "did not stop within 0.2s" in ex.error.message


async def test_clean_return_is_exited_and_a_missing_dependency_blocks_dependents(
        make_app: Callable[..., Path]) -> None:
    once = "return function() return 'done' end"
    broken = "return function() error('cannot start') end"
    entries = "".join([
        service("once_svc", process="once", extra="auto_start: true"),
        service("broken_svc", process="broken", restart="{max_attempts: 1, initial_delay: 10ms}"),
        service("needs_broken", process="once", extra="auto_start: true\n        depends_on: [broken_svc]"),
    ])
    app = process_app(make_app, {"once": once, "broken": broken}, entries=entries)
    async with running(app, auto_start=False) as system:
        started = await system.start()
        assert started == {"app:once_svc": False, "app:broken_svc": False, "app:needs_broken": False}
        await eventually(lambda: system.service("app:once_svc").state, lambda s: s == ServiceState.EXITED,
                         what="once Exited")
        assert system.service("app:broken_svc").state == ServiceState.FAILED
        blocked = system.service("app:needs_broken")
        assert blocked.state == ServiceState.STOPPED
        assert blocked.last_error == "not started: it depends on app:broken_svc, which is Failed"


def test_a_depends_on_cycle_is_refused_naming_it(make_app: Callable[..., Path]) -> None:
    once = "return function() return 'done' end"
    entries = "".join([
        service("a", process="once", extra="auto_start: true\n        depends_on: [b]"),
        service("b", process="once", extra="depends_on: [a]"),
    ])
    app = process_app(make_app, {"once": once}, entries=entries)
    with pytest.raises(errors.EntryErrors, match=r"entry app:b, field lifecycle.depends_on\[0\]: dependency cycle"):
        load(app)


async def test_a_stopped_service_starts_again_and_stops_with_the_system(make_app: Callable[..., Path]) -> None:
    idle = "return function() process.inbox():receive() end"
    app = process_app(make_app, {"idle": idle}, entries=service("idle_svc", process="idle"))
    async with running(app, auto_start=False) as system:
        svc = system.service("app:idle_svc")
        for _ in range(2):
            assert await svc.start() is True
            first = svc.pid
            await svc.stop()
            assert svc.state == ServiceState.STOPPED and system.actor(first or "") is None
        assert await svc.start() is True    # started on its own: system.stop() stops it too
    assert svc.state == ServiceState.STOPPED and not svc.active
