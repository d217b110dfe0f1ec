"""The ``moontide`` command as a user runs it (issue 2, item 7): check, run --spawn, spawn, result.

Every command is a real subprocess against the session's Temporal dev server
(``--temporal``), so the embedded server is not involved here.
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from moontide_testing import TEMPORAL_ENTRIES, moontide, moontide_run

@pytest.fixture
def app(make_app: Callable[..., Path]) -> Path:
    """Workflows ``app:double`` (n -> 2n via a function) and ``app:refuse`` (fails as Declined)."""
    yaml = textwrap.dedent(TEMPORAL_ENTRIES).strip("\n") + """
  - name: double
    kind: workflow.lua
    source: file://double.lua
    modules: [funcs, time]
  - name: refuse
    kind: workflow.lua
    source: file://refuse.lua
    modules: [errors]
  - name: times
    kind: function.lua
    source: file://times.lua
"""
    return make_app({
        "app.yaml": yaml,
        "double.lua": """
            return function(input, extra)
              time.sleep("100ms")
              return { n = funcs.call("times", input.n, 2), extra = extra, items = input.items }
            end
        """,
        "refuse.lua": """
            return function(input)
              return nil, errors.new{kind = "Declined", message = "card declined for " .. input.amount}
            end
        """,
        "times.lua": "return function(a, b) return a * b end",
    })


# -- check ----------------------------------------------------------------------

def test_check_reports_every_problem_with_file_entry_field_and_line(make_app: Callable[..., Path]) -> None:
    bad = make_app({
        "a.yaml": """
            version: "1.0"
            namespace: app
            entries:
              - name: client
                kind: temporal.client
                address: 127.0.0.1:1
              - name: worker
                kind: temporal.worker
                client: client
                worker_options:
                  max_cached_workflows: lots
              - name: flow
                kind: workflow.lua
                source: file://flow.lua
                modules: [funcs, http]
        """,
        "b.yaml": """
            version: "1.0"
            namespace: app.api
            entries:
              - name: charge
                kind: function.lua
                source: |
                  return function(payment)
                    local x = = 1
                  end
        """,
        "flow.lua": "return function() return 1 end\n",
    })
    out = moontide("check", str(bad))
    assert out.returncode == 2, out
    assert out.stdout == ""
    err = out.stderr
    assert "3 problems" in err
    assert re.search(r"a\.yaml:11, entry app:worker, field worker_options\.max_cached_workflows: .*integer", err), err
    assert re.search(r"a\.yaml:15, entry app:flow, field modules\[1\]: .*'http'", err), err
    assert re.search(r"b\.yaml:8, entry app\.api:charge, field source: .*", err), err
    assert "Traceback" not in err


def test_check_a_good_app(app: Path) -> None:
    out = moontide("check", str(app))
    assert out.returncode == 0, out
    assert "no problems" in out.stdout


# -- run --spawn --------------------------------------------------------------------

def test_run_spawn_prints_the_json_result_and_exits_0(app: Path, temporal_address: str) -> None:
    out = moontide("run", str(app), "--temporal", temporal_address, "--spawn", "app:double",
                   "--input", '{"n": 21, "items": []}', "--input", '"more"')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"n": 42, "extra": "more", "items": []}


def test_run_spawn_of_a_failing_workflow_exits_1_with_the_failure(app: Path, temporal_address: str) -> None:
    out = moontide("run", str(app), "--temporal", temporal_address, "--spawn", "app:refuse",
                   "--input", '{"amount": 10}')
    assert out.returncode == 1, out.stderr
    assert out.stdout == ""
    assert "Declined" in out.stderr
    assert "card declined for 10" in out.stderr


def test_run_spawn_of_an_unknown_workflow_is_refused(app: Path, temporal_address: str) -> None:
    out = moontide("run", str(app), "--temporal", temporal_address, "--spawn", "app:nope")
    assert out.returncode == 2, out.stderr
    assert "app:nope" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("argv", [
    ["run", "APP", "--spawn", "app:double", "--input", "{n: 1}"],
    ["spawn", "app:double", "app:worker", "{not json", "--app", "APP"],
    ["spawn", "app:double", "app:worker", "--app", "APP", "--options", "nope"],
])
def test_bad_json_arguments_are_a_usage_error(app: Path, argv: list[str]) -> None:
    out = moontide(*[str(app) if a == "APP" else a for a in argv])
    assert out.returncode == 2, out
    assert "not JSON" in out.stderr
    assert "usage:" in out.stderr
    assert "Traceback" not in out.stderr


DEEP_5000 = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize("argv,words", [
    (["spawn", "app:double", "app:worker", DEEP_5000, "--app", "APP"],
     "argument JSON: value[1][1][1][1][1][1][1][1]...(244 more)...[1][1][1][1]: nested deeper than 256 levels"),
    (["run", "APP", "--spawn", "app:double", "--input", '{"n": 1, "items": ' + DEEP_5000 + "}"],
     "argument --input: value.items[1][1][1][1][1][1][1]...(244 more)"),
    (["send", "{app:client@app:worker|x}", "m", DEEP_5000, "--app", "APP"], "nested deeper than 256 levels"),
    (["send", "{app:client@app:worker|x}", "m", '"\\ud800"', "--app", "APP"],
     "argument JSON: value: string holds a lone surrogate \\ud800"),
    (["spawn", "app:double", "app:worker", '{"n": NaN}', "--app", "APP"], "value: NaN is not a JSON number"),
])
def test_json_arguments_lua_could_not_take_are_a_usage_error_naming_the_problem(
        app: Path, argv: list[str], words: str) -> None:
    out = moontide(*[str(app) if a == "APP" else a for a in argv])
    assert out.returncode == 2, out
    assert words in out.stderr
    assert "usage:" in out.stderr
    assert "Traceback" not in out.stderr


def test_json_arguments_up_to_the_depth_limit_cross_the_cli(app: Path, temporal_address: str) -> None:
    from moontide.values import MAX_DEPTH

    items = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)  # under {"items": ...}: MAX_DEPTH deep
    out = moontide("run", str(app), "--temporal", temporal_address, "--spawn", "app:double",
                   "--input", '{"n": 1, "items": ' + items + "}")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"n": 2, "items": json.loads(items)}
    deeper = moontide("run", str(app), "--temporal", temporal_address, "--spawn", "app:double",
                      "--input", '{"n": 1, "items": [' + items + "]}")
    assert deeper.returncode == 2, deeper
    assert "value.items[1][1]" in deeper.stderr and "nested deeper than 256 levels" in deeper.stderr
    assert "Traceback" not in deeper.stderr


# -- spawn / result against a serving `moontide run` ---------------------------------

@pytest.fixture
def serving(app: Path, temporal_address: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with moontide_run(app, tmp_path / "run.log", "--temporal", temporal_address) as proc:
        yield proc


def test_spawn_prints_a_pid_and_result_prints_the_result(
        app: Path, temporal_address: str, serving: subprocess.Popen[bytes]) -> None:
    spawned = moontide("spawn", "app:double", "app:worker", '{"n": 5}', '"x"', "--app", str(app),
                       "--temporal", temporal_address)
    assert spawned.returncode == 0, spawned.stderr
    pid = spawned.stdout.strip()
    assert re.fullmatch(r"\{app:client@app:worker\|double-[0-9a-f]+\}", pid), pid
    result = moontide("result", pid, "--app", str(app), "--temporal", temporal_address)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"n": 10, "extra": "x"}

    failing = moontide("spawn", "app:refuse", "app:worker", '{"amount": 3}', "--app", str(app),
                       "--temporal", temporal_address, "--id", "refused-order")
    assert failing.returncode == 0, failing.stderr
    assert failing.stdout.strip() == "{app:client@app:worker|refused-order}"
    failed = moontide("result", failing.stdout.strip(), "--app", str(app), "--temporal", temporal_address)
    assert failed.returncode == 1
    assert "card declined for 3" in failed.stderr

    # SIGTERM: a graceful stop, not a crash
    serving.terminate()
    assert serving.wait(30) in (0, 130)


@pytest.mark.parametrize("pid,words", [
    ("not-a-pid", ["[Invalid]", "invalid pid"]),
    ("{app:client@app:worker|no-such-workflow}", ["[NotFound]", "no-such-workflow"]),
])
def test_result_of_a_bad_pid_is_bad_input_not_a_failed_workflow(
        app: Path, temporal_address: str, pid: str, words: list[str]) -> None:
    out = moontide("result", pid, "--app", str(app), "--temporal", temporal_address)
    assert out.returncode == 2, out.stderr
    for w in words:
        assert w in out.stderr
    assert "failed" not in out.stderr
    assert "Traceback" not in out.stderr
