"""The ``moontide`` command fits its ecosystem (issue 15): --version, -o json|yaml|table, list, ps of any
running app, the app directory the same way everywhere, spawn with no WORKER_ID, progress on a terminal,
completion scripts, a closed pipe."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from moontide_testing import HANG, MOONTIDE, TEMPORAL_ENTRIES, running


@pytest.fixture
def app(make_app: Callable[..., Path]) -> Path:
    return make_app({
        "app.yaml": textwrap.dedent(TEMPORAL_ENTRIES).strip("\n") + """
  - name: hold
    kind: workflow.lua
    source: file://hold.lua
""",
        "hold.lua": """
            return function(n)
              local msg = process.inbox():receive()
              return {n = n, got = msg:payload():data()}
            end
        """,
    })


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where running apps leave their records, for this test alone (in-process runtimes and commands)."""
    d = tmp_path / "running"
    monkeypatch.setenv("MOONTIDE_RUN_DIR", str(d))
    return d


def env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}, "PYTHONUNBUFFERED": "1",
            **extra}


async def moontide(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [MOONTIDE, *args], capture_output=True, text=True,
                                   env=env(**extra), timeout=HANG)


async def test_version() -> None:
    out = await moontide("--version")
    assert out.returncode == 0 and out.stdout.strip() == "moontide 0.1.0", out


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
async def test_completion_scripts(shell: str) -> None:
    out = await moontide("completion", shell)
    assert out.returncode == 0, out.stderr
    output = "-l output" if shell == "fish" else "--output"
    for word in ("run", "spawn", "result", "list", "ps", output, "json yaml table"):
        assert word in out.stdout, (word, out.stdout[:500])
    if shell == "bash":
        check = subprocess.run(["bash", "-n"], input=out.stdout, capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        # completing "moontide li" offers list
        probe = out.stdout + '\nCOMP_WORDS=(moontide li); COMP_CWORD=1; _moontide; echo "${COMPREPLY[@]}"\n'
        done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True)
        assert done.stdout.split() == ["list"], done


def test_a_closed_pipe_is_no_traceback(run_dir: Path) -> None:
    # the reader is gone before the command writes: `moontide completion bash | head -c0`
    proc = subprocess.Popen([MOONTIDE, "completion", "bash"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env(MOONTIDE_RUN_DIR=str(run_dir)))
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(HANG) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


async def test_ps_sees_any_running_app_even_one_without_process_hosts(app: Path, temporal_address: str,
                                                                      run_dir: Path) -> None:
    none = await moontide("ps", MOONTIDE_RUN_DIR=str(run_dir))
    assert none.returncode == 0 and "no Moontide app is running" in none.stdout, none
    async with running(app, temporal_address):
        listed = await moontide("ps", "-o", "json", MOONTIDE_RUN_DIR=str(run_dir))
        assert listed.returncode == 0, listed.stderr
        apps = json.loads(listed.stdout)["apps"]
        assert [(a["app"], list(a["workers"]), a["address"]) for a in apps] == [
            (str(app.resolve()), ["app:worker"], temporal_address)]
        table = await moontide("ps", MOONTIDE_RUN_DIR=str(run_dir))
        assert str(app.resolve()) in table.stdout and "app:worker" in table.stdout, table.stdout
        one = await moontide("ps", "--app", str(app), MOONTIDE_RUN_DIR=str(run_dir))
        assert "is running" in one.stdout and "no Moontide app is running" not in one.stdout, one.stdout
        as_yaml = await moontide("ps", "--app", str(app), "-o", "yaml", MOONTIDE_RUN_DIR=str(run_dir))
        assert yaml.safe_load(as_yaml.stdout)["running"] is True
    after = await moontide("ps", "-o", "json", MOONTIDE_RUN_DIR=str(run_dir))
    assert json.loads(after.stdout) == {"apps": []}


async def test_spawn_defaults_to_the_only_worker_and_every_printer_answers(
        app: Path, temporal_address: str, run_dir: Path) -> None:
    async with running(app, temporal_address) as rt:
        spawned = await moontide("spawn", "app:hold", "7", "--app", str(app), "--temporal", temporal_address,
                                 "-o", "json")
        assert spawned.returncode == 0, spawned.stderr
        pid = json.loads(spawned.stdout)["pid"]
        assert pid.startswith("{app:client@app:worker|hold-")
        plain = await moontide("spawn", "app:hold", "app:worker", "8", "--app", str(app), "--temporal",
                               temporal_address)
        assert plain.returncode == 0 and plain.stdout.startswith("{app:client@app:worker|hold-"), plain
        for output, parse in (("json", json.loads), ("yaml", yaml.safe_load)):
            st = await moontide("status", pid, "-o", output, "--address", temporal_address)
            assert parse(st.stdout)["status"] == "RUNNING", st
        table = await moontide("status", pid, "--address", temporal_address)
        assert "status:   RUNNING" in table.stdout
        wid = pid.split("|")[1].rstrip("}")
        for output in ("table", "json", "yaml"):
            listed = await moontide("list", f"WorkflowId = '{wid}'", "-o", output, "--app", str(app),
                                    "--temporal", temporal_address)
            assert listed.returncode == 0, listed.stderr
            assert (pid if output == "table" else wid) in listed.stdout, listed.stdout
        listed = await moontide("list", f"WorkflowId = '{wid}'", "-o", "json", "--app", str(app), "--temporal",
                                temporal_address)
        assert json.loads(listed.stdout)[0]["pid"] == pid
        await rt.send(pid, "go", "x")
        result = await moontide("result", pid, "-o", "yaml", "--address", temporal_address)
        assert yaml.safe_load(result.stdout) == {"n": 7, "got": "x"}


async def test_the_app_directory_is_the_same_option_everywhere(app: Path) -> None:
    for argv in (["check", "--app", str(app)], ["check", str(app)]):
        out = await moontide(*argv)
        assert out.returncode == 0 and "no problems" in out.stdout, out
    here = await asyncio.to_thread(subprocess.run, [MOONTIDE, "check"], capture_output=True, text=True,
                                   cwd=app, env=env(), timeout=HANG)
    assert here.returncode == 0 and "no problems" in here.stdout, here
    for command in ("run", "spawn", "send", "cancel", "terminate", "status", "result", "list", "ps", "check",
                    "replay", "upgrade"):
        out = await moontide(command, "--help")
        assert "-a APP_DIR, --app APP_DIR" in out.stdout, (command, out.stdout)


async def test_result_shows_progress_on_a_terminal_only(app: Path, temporal_address: str) -> None:
    async with running(app, temporal_address) as rt:
        pid = str(await rt.spawn("app:hold", None, 1))
        controller, terminal = pty.openpty()
        try:
            proc = await asyncio.create_subprocess_exec(MOONTIDE, "result", pid, "--address", temporal_address,
                                                        stdout=terminal, stderr=subprocess.PIPE, env=env())
            os.close(terminal)
            terminal = -1
            await asyncio.sleep(0)  # let it start; the progress line comes before the wait
            assert proc.stderr is not None
            first = await asyncio.wait_for(proc.stderr.read(len("\rwaiting for ")), HANG)
            assert first == b"\rwaiting for ", first
            await rt.send(pid, "go", "y")
            rest = await asyncio.wait_for(proc.stderr.read(), HANG)
            assert await proc.wait() == 0, rest
            assert pid.encode() in rest
            printed = await asyncio.to_thread(os.read, controller, 4096)
            assert json.loads(printed.decode()) == {"n": 1, "got": "y"}
        finally:
            os.close(controller)
            if terminal >= 0:
                os.close(terminal)
        quiet_pid = str(await rt.spawn("app:hold", None, 2))
        await rt.send(quiet_pid, "go", "z")
        quiet = await moontide("result", quiet_pid, "--address", temporal_address)
        assert quiet.returncode == 0 and "waiting for" not in quiet.stderr, quiet
