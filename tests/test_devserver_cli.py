"""``moontide devserver``: the tuned dev server in the foreground (what the Helm chart's pod runs).

A real ``moontide devserver`` subprocess on free ports in a tmp dir: it serves
its namespace, its ``temporal`` child carries the tuned pragmas and dynamic
config of ``moontide.devserver`` (one source of truth), SIGTERM stops both, a
second one on the same directory is refused, and the child dies with it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from moontide.devserver import TUNED_DYNAMIC_CONFIG, TUNED_PRAGMAS, running_address
from moontide_testing import MOONTIDE, free_port

LIVENESS = 60.0  # a hang guard, not a speed check


class Foreground:
    """A ``moontide devserver`` subprocess and the JSON line it printed when ready."""

    def __init__(self, state_dir: Path, *args: str) -> None:
        self.proc = subprocess.Popen([MOONTIDE, "devserver", "--state-dir", str(state_dir), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], LIVENESS)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"moontide devserver printed no address (exit {self.proc.returncode}):\n{err}")
        self.info: dict[str, Any] = json.loads(line)

    def signal(self, sig: int) -> int:
        """Send ``sig``, wait for the exit; its code."""
        self.proc.send_signal(sig)
        return self.wait()

    def wait(self) -> int:
        """Wait for the exit (its stderr in ``self.stderr``); its code."""
        try:
            self.proc.wait(timeout=LIVENESS)
        except subprocess.TimeoutExpired:
            raise AssertionError("moontide devserver did not exit") from None
        try:  # EOF once every holder of the pipe is gone: the server writes to it too
            _, self.stderr = self.proc.communicate(timeout=LIVENESS)
        except subprocess.TimeoutExpired:
            raise AssertionError("moontide devserver exited, but its server still holds its stderr") from None
        return self.proc.returncode

    def close(self) -> None:
        """Kill whatever is left (after a failed test), without waiting on pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not gone(self.info["pid"]):
            os.kill(self.info["pid"], signal.SIGKILL)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def foreground(tmp_path: Path) -> Iterator[Any]:
    started: list[Foreground] = []

    def start(*args: str) -> Foreground:
        started.append(Foreground(tmp_path, *args))
        return started[-1]

    yield start
    for f in started:
        f.close()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its new parent to reap it is gone too
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + LIVENESS
    while not gone(pid):
        assert time.monotonic() < deadline, f"the Temporal dev server (pid {pid}) outlived moontide devserver"
        time.sleep(0.05)


async def test_serves_tuned_and_stops_on_sigterm(tmp_path: Path, foreground: Any) -> None:
    port, ui_port = free_port(), free_port()
    dev = foreground("--ip", "127.0.0.1", "--port", str(port), "--ui-port", str(ui_port), "--namespace", "orders",
                     "--search-attribute", "Customer=keyword")
    info = dev.info
    assert info["address"] == f"127.0.0.1:{port}" and info["ui"] == f"http://127.0.0.1:{ui_port}"
    assert info["db"] == str(tmp_path / "temporal.db")

    client = await Client.connect(info["address"], namespace="orders")
    ns = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="orders"))
    assert ns.namespace_info.name == "orders"
    with urllib.request.urlopen(info["ui"], timeout=10) as page:
        assert page.status == 200

    cmdline = Path(f"/proc/{info['pid']}/cmdline").read_bytes().decode().split("\0")
    pairs = list(zip(cmdline, cmdline[1:]))
    for key, value in TUNED_PRAGMAS.items():
        assert ("--sqlite-pragma", f"{key}={value}") in pairs
    for key, value in TUNED_DYNAMIC_CONFIG.items():
        assert ("--dynamic-config-value", f"{key}={json.dumps(value)}") in pairs
    assert ("--db-filename", str(tmp_path / "temporal.db")) in pairs
    assert ("--search-attribute", "Customer=Keyword") in pairs
    assert running_address(tmp_path) == info["address"]  # `moontide run` of an app with this .moontide/ attaches

    # one database, one server: a second one on the directory is refused, the first keeps serving
    second = subprocess.run([MOONTIDE, "devserver", "--state-dir", str(tmp_path), "--headless"],
                            capture_output=True, text=True, timeout=LIVENESS)
    assert second.returncode == 2 and "[AlreadyExists]" in second.stderr and str(info["pid"]) in second.stderr

    assert dev.signal(signal.SIGTERM) == 0
    assert gone(info["pid"])  # stopped and reaped before moontide exited
    assert running_address(tmp_path) is None
    assert "SIGTERM: stopping" in dev.stderr


def test_the_server_dies_with_it(tmp_path: Path, foreground: Any) -> None:
    """SIGKILL (no handler runs): PR_SET_PDEATHSIG stops the server all the same."""
    dev = foreground("--headless")
    assert dev.signal(signal.SIGKILL) == -signal.SIGKILL
    wait_gone(dev.info["pid"])


def test_a_server_that_exits_by_itself_fails_the_command(tmp_path: Path, foreground: Any) -> None:
    """So a pod restarts instead of idling without a server."""
    dev = foreground("--headless", "--log-level", "error")
    os.kill(dev.info["pid"], signal.SIGKILL)
    assert dev.wait() == 3
    assert f"exited by itself with code {-signal.SIGKILL}" in dev.stderr
    assert running_address(tmp_path) is None


def test_bad_search_attribute_is_refused(tmp_path: Path) -> None:
    out = subprocess.run([MOONTIDE, "devserver", "--state-dir", str(tmp_path), "--search-attribute", "Customer=str"],
                         capture_output=True, text=True, timeout=LIVENESS)
    assert out.returncode == 2 and "'Customer=str': expected NAME=TYPE" in out.stderr
    assert not (tmp_path / "temporal.db").exists()
