"""``moontide.Client`` and the pid commands with no app directory (issue 15): a running app is reached
through TEMPORAL_ADDRESS or a temporal.toml profile, as Temporal's own tools reach a server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from moontide import Client, WorkflowPid, errors
from moontide_testing import HANG, MOONTIDE, TEMPORAL_ENTRIES, running


@pytest.fixture
def app(make_app: Callable[..., Path]) -> Path:
    """``app:hold`` waits for a "go" message and returns its payload; ``app:refuse`` fails as Declined."""
    return make_app({
        "app.yaml": textwrap.dedent(TEMPORAL_ENTRIES).strip("\n") + """
  - name: hold
    kind: workflow.lua
    source: file://hold.lua
  - name: refuse
    kind: workflow.lua
    source: file://refuse.lua
    modules: [errors]
""",
        "hold.lua": """
            return function()
              local msg = process.inbox():receive()
              return msg:payload():data()
            end
        """,
        "refuse.lua": """
            return function() return nil, errors.new{kind = "Declined", message = "no"} end
        """,
    })


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


async def moontide(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``moontide ARGS`` in a directory with no app, off the event loop the app runs on."""
    return await asyncio.to_thread(subprocess.run, [MOONTIDE, *args], capture_output=True, text=True, env=env,
                                   cwd=cwd, timeout=HANG)


async def test_pid_commands_reach_a_running_app_through_temporal_address(
        app: Path, temporal_address: str, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _env(TEMPORAL_ADDRESS=temporal_address)
    async with running(app, temporal_address) as rt:
        pid = str(await rt.spawn("app:hold", None))
        status = await moontide("status", pid, "-o", "json", env=env, cwd=elsewhere)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["status"] == "RUNNING"
        sent = await moontide("send", pid, "go", '{"x": 1}', env=env, cwd=elsewhere)
        assert sent.returncode == 0, sent.stderr
        result = await moontide("result", pid, env=env, cwd=elsewhere)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"x": 1}
        failed_pid = str(await rt.spawn("app:refuse", None))
        failed = await moontide("result", failed_pid, "-o", "yaml", env=env, cwd=elsewhere)
        assert failed.returncode == 1 and "[Declined] no" in failed.stderr, failed


async def test_pid_commands_and_the_client_reach_it_through_a_profile(
        app: Path, temporal_address: str, tmp_path: Path) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text(f'[profile.moontide-test]\naddress = "{temporal_address}"\nnamespace = "default"\n')
    env = _env(TEMPORAL_CONFIG_FILE=str(config))
    async with running(app, temporal_address) as rt:
        pid = str(await rt.spawn("app:hold", None))
        sent = await moontide("send", pid, "go", '"hi"', "--profile", "moontide-test", env=env, cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
        client = await Client.connect(profile="moontide-test", config_file=config)
        assert client.namespace == "default"
        assert await client.result(pid) == "hi"
        listed = await moontide("list", f"WorkflowId = '{WorkflowPid.parse(pid).workflow_id}'", "-o", "json",
                                "--profile", "moontide-test", env=env, cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert [(r["workflow_type"], r["status"]) for r in rows] == [("app:hold", "COMPLETED")]


async def test_the_client_starts_lists_and_maps_failures(app: Path, temporal_address: str) -> None:
    async with running(app, temporal_address) as rt:
        client = await Client.connect(temporal_address)
        # spawn through the runtime (it knows the app's code), reach through a client that does not
        pid = await rt.spawn("app:hold", None, workflow_id="client-hold")
        await client.send(str(pid), "go", [1, 2])
        assert await client.result(pid) == [1, 2]
        rows = await client.list("WorkflowId = 'client-hold'")
        assert rows[0]["workflow_id"] == "client-hold" and rows[0]["task_queue"] == rt.app.task_queue(
            rt.app.get("app:worker"))
        with pytest.raises(errors.WorkflowFailed) as failed:
            await client.result(await rt.spawn("app:refuse", None))
        assert (failed.value.kind, failed.value.message) == ("Declined", "no")
        with pytest.raises(errors.NotFound):
            await client.status("{app:client@app:worker|no-such-workflow}")
        with pytest.raises(errors.Invalid):
            await client.list("this is not a query")
        with pytest.raises(errors.Invalid, match="invalid pid"):
            await client.cancel("nope")
        # one place starts a workflow: AlreadyExists when the spawn asks for it
        with pytest.raises(errors.AlreadyExists):
            await rt.spawn("app:hold", None, workflow_id="client-hold-2")
            await rt.spawn("app:hold", None, options={"workflow.id": "client-hold-2",
                                                      "workflow.id_conflict_policy": "fail"})
        await client.terminate("{app:client@app:worker|client-hold-2}", "done")


async def test_an_unreachable_server_is_unavailable_exit_3(tmp_path: Path) -> None:
    out = await moontide("status", "{app:client@app:worker|x}", "--address", "127.0.0.1:1", env=_env(),
                         cwd=tmp_path)
    assert out.returncode == 3, out
    assert "[Unavailable]" in out.stderr and "Traceback" not in out.stderr
    with pytest.raises(errors.Invalid, match="Temporal connection settings"):
        await Client.connect(profile="no-such-profile", config_file=tmp_path / "missing.toml")

