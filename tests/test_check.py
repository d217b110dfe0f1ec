"""``moontide check``: every problem of an app's Lua at once, at its file and line, never a traceback.

Beyond the schemas (tests/entries), it loads each Lua entry as a worker would (under the worker's
instruction budget and memory cap) and reads the sources for literal entry IDs. ``moontide run``
loads the same way before it serves, so a chunk that loops forever at load time fails the start
instead of hanging the app (checked against the real dev server).
"""

from __future__ import annotations

import re
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from moontide_testing import HANG, MOONTIDE, MOONTIDE_ENV, TEMPORAL_ENTRIES, moontide

HEAD = TEMPORAL_ENTRIES.lstrip("\n").replace("TASK_QUEUE", "orders") + "    worker_options: {memory_limit_mb: 32}\n"

APP = HEAD + """\
  - name: no_method
    kind: workflow.lua
    source: file://no_method.lua
    method: main
  - name: returns_nothing
    kind: function.lua
    source: file://returns_nothing.lua
    method: run
  - name: raises
    kind: function.lua
    source: file://raises.lua
  - name: loops
    kind: workflow.lua
    source: file://loops.lua
    method: main
  - name: hog
    kind: function.lua
    source: |
      local big = string.rep("x", 40 * 1024 * 1024)
      return function() return #big end
  - name: blocks
    kind: function.lua
    source: |
      local warm = funcs.call("app:raises")
      return function() return warm end
    modules: [funcs]
  - name: a
    kind: library.lua
    source: "return {}"
    imports: {b: b}
  - name: b
    kind: library.lua
    source: "return {}"
    imports: {a: app:a}
  - name: broken_lib
    kind: library.lua
    source: file://broken_lib.lua
  - name: uses_broken_lib
    kind: function.lua
    source: "return function() end"
    imports: {lib: broken_lib}
  - name: huge
    kind: function.lua
    source: file://huge.lua
  - name: calls
    kind: workflow.lua
    source: file://calls.lua
    modules: [funcs, process, workflow]
  - name: fine
    kind: function.lua
    source: |
      local started = time.now()
      return { run = function() return started end }
    method: run
    modules: [time]
"""

SOURCES = {
    "no_method.lua": "local function start() end\nreturn { start = start }\n",
    "returns_nothing.lua": "local function run() end\n-- forgot: return { run = run }\n",
    "raises.lua": "local config = nil\nlocal port = config.port\nreturn function() return port end\n",
    "loops.lua": "local n = 0\nwhile true do\n  n = n + 1\nend\nreturn { main = function() end }\n",
    "broken_lib.lua": "local M = {}\nerror('broken_lib is broken')\nreturn M\n",
    "huge.lua": "return function() return 1 end\n" + ("-- " + "x" * 100 + "\n") * 640_000,
    "calls.lua": textwrap.dedent("""\
        local funcs = require("funcs")
        return function(order)
          funcs.call("app:fine")                           -- an entry of the right kind
          funcs.call("app:fien", order)                    -- a typo
          funcs.call("worker")                             -- relative, but a temporal.worker
          -- funcs.call("app:in_a_comment")
          local text = "funcs.call('app:in_a_string')"
          process.spawn("app:loops", "app:worker", order)  -- fine
          process.spawn("app:loops", "orders", order)      -- a host named by its task queue: fine
          process.spawn("app:nothing_here", "app:worker")
          process.spawn_monitored("app:loops", "app:no_host", order)
          funcs.new():with_options({}):call("app:gone", 1)
          process.with_options({}):spawn("app:also_gone", "app:worker")
          workflow.exec("app:fine", order)                 -- a function.lua, not a workflow
          local n = order.db:exec("UPDATE t SET x = :x")   -- not an entry ID: another object's method
          return funcs.call "app:last_one"
        end
    """),
}

EXPECTED = [
    "app.yaml:15, entry app:no_method, field method: field method 'main' is not a function in the table the "
    "source returns (functions: start)",
    "app.yaml:18, entry app:returns_nothing, field source: the source must return a function or a table of "
    "functions, not nothing",
    "app.yaml:29, entry app:hog, field source: loading it runs past the memory cap of 32 MiB (app:worker): a loop "
    "or a large table at the top level?",
    "app.yaml:34, entry app:blocks, field source: app:blocks blocks (call) while loading; call blocking functions "
    "from inside the entry's method",
    "app.yaml:45, entry app:b, field imports.a: import cycle: app:a -> app:b -> app:a",
    "broken_lib.lua:2, entry app:broken_lib, field source: loading it raised: broken_lib is broken",
    "calls.lua:4, entry app:calls, field source: 'app:fien' names no entry (did you mean 'app:fine'? expected a "
    "function.lua)",
    "calls.lua:5, entry app:calls, field source: 'worker' is a temporal.worker, expected a function.lua",
    "calls.lua:10, entry app:calls, field source: 'app:nothing_here' names no entry (expected a process.lua or "
    "workflow.lua)",
    "calls.lua:11, entry app:calls, field source: 'app:no_host' names no entry (expected a process.host or "
    "temporal.worker)",
    "calls.lua:12, entry app:calls, field source: 'app:gone' names no entry (did you mean 'app:huge'? expected a "
    "function.lua)",
    "calls.lua:13, entry app:calls, field source: 'app:also_gone' names no entry (did you mean 'app:loops'? "
    "expected a process.lua or workflow.lua)",
    "calls.lua:14, entry app:calls, field source: 'app:fine' is a function.lua, expected a workflow.lua",
    "calls.lua:16, entry app:calls, field source: 'app:last_one' names no entry (did you mean 'app:raises'? "
    "expected a function.lua)",
    "huge.lua, entry app:huge, field source: the source (66.6 MB) is too big to compile within the Lua memory "
    "cap of 64 MiB",
    "loops.lua:3, entry app:loops, field source: loading it runs past the instruction budget of 20,000,000 "
    "instructions (app:worker): a loop or a large table at the top level?",
    "raises.lua:2, entry app:raises, field source: loading it raised: attempt to index a nil value (local "
    "'config')",
]


def with_head(entries: str) -> str:
    """The app's client and worker, then ``entries`` (YAML list items, indented as at the top level)."""
    return HEAD + textwrap.indent(textwrap.dedent(entries), "  ")


def write_app(root: Path, yaml: str = APP, sources: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.yaml").write_text(yaml)
    for name, text in (SOURCES if sources is None else sources).items():
        (root / name).write_text(text)
    return root


def test_check_reports_every_problem_at_once_where_it_is(tmp_path: Path) -> None:
    app = write_app(tmp_path / "app")
    out = moontide("check", str(app))
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert lines[0] == f"{len(EXPECTED)} problems in the app:", out.stderr
    # the budget stops the loop on either of its lines (where the count hook lands)
    assert [re.sub(r"^loops\.lua:2,", "loops.lua:3,", line.strip()) for line in lines[1:]] == EXPECTED


def test_check_passes_what_only_a_running_worker_can_judge(tmp_path: Path) -> None:
    # workflow.info() at the top level needs a workflow: the check cannot tell, so it says nothing;
    # the clock, uuids and logs work at load as in a function
    yaml = with_head("""\
        - name: info_at_load
          kind: workflow.lua
          source: |
            local started_as = workflow.info().workflow_type
            return function() return started_as end
          modules: [workflow]
        - name: clock_at_load
          kind: function.lua
          source: |
            local t0, id = time.now(), uuid.v4()
            logger.info("loaded")
            return function() return id end
          modules: [time, uuid, logger]
    """)
    out = moontide("check", str(write_app(tmp_path / "app", yaml, {})))
    assert out.returncode == 0, out
    assert out.stdout.strip().endswith("4 entries, no problems")


def test_the_worker_sets_the_limits_a_chunk_loads_under(tmp_path: Path) -> None:
    # the same 40 MiB at load: refused under a 32 MiB cap, loaded under 128 MiB
    yaml = HEAD + "  - name: hog\n" + APP.split("  - name: hog\n")[1].split("  - name: blocks")[0]
    assert moontide("check", str(write_app(tmp_path / "small", yaml, {}))).returncode == 2
    roomy = yaml.replace("memory_limit_mb: 32", "memory_limit_mb: 128")
    out = moontide("check", str(write_app(tmp_path / "roomy", roomy, {})))
    assert out.returncode == 0, out


def test_run_refuses_to_start_on_a_loop_at_load_instead_of_hanging(tmp_path: Path, temporal_address: str) -> None:
    yaml = with_head("""\
        - name: loops
          kind: workflow.lua
          source: file://loops.lua
          method: main
    """)
    app = write_app(tmp_path / "app", yaml, {"loops.lua": SOURCES["loops.lua"]})
    started = time.monotonic()
    proc = subprocess.run([MOONTIDE, "run", str(app), "--temporal", temporal_address, "--no-ui"],
                          capture_output=True, text=True, timeout=HANG, env=MOONTIDE_ENV)
    assert proc.returncode == 2, proc
    assert re.search(r"loops\.lua:[23], entry app:loops, field source: loading it runs past the instruction "
                     r"budget of 20,000,000 instructions", proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < HANG


def test_run_leaves_literal_ids_to_check_a_missing_function_fails_when_called(
        make_app: Callable[..., Path], temporal_address: str, tmp_path: Path) -> None:
    # Wippy's docs call "app:missing_activity" on purpose and handle its NotFound (en/temporal/activities.md)
    yaml = with_head("""\
        - name: probe
          kind: workflow.lua
          source: |
            return function()
              local v, err = funcs.call("app:missing_activity", 1)
              return err:kind()
            end
          modules: [funcs]
    """)
    app = write_app(tmp_path / "app", yaml, {})
    check = moontide("check", str(app))
    assert check.returncode == 2 and "'app:missing_activity' names no entry" in check.stderr, check
    run = moontide("run", str(app), "--temporal", temporal_address, "--no-ui", "--spawn", "app:probe")
    assert run.returncode == 0, run
    assert run.stdout.strip() == '"NotFound"'
