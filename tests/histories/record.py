"""Record the histories of the examples' workflows into this folder (tests/workflows/test_recorded_histories.py).

Each file is one finished execution in Temporal's JSON (as ``temporal workflow
show -o json`` writes it) plus its ``workflowId``. The test replays every one
on today's code: a change to the Lua runtime, the workflow driver or the
``temporalio`` pin that would break executions recorded by an earlier
Moontide fails the suite. Record again only on purpose (a deliberate,
documented break), never to make that test pass:

    .venv/bin/python tests/histories/record.py
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[1] / "examples"
sys.path.insert(0, str(HERE.parent))

from moontide_testing import dev_server, eventually  # noqa: E402

Spawn = tuple[str, str | None, tuple[Any, ...], Callable[[Any, Any], Awaitable[None]] | None]


async def _approve(rt: Any, pid: Any, message: dict[str, Any]) -> None:
    await eventually(lambda: rt.status(pid), lambda s: "receive" in str(s.get("lua")), what="the signal wait")
    await rt.send(pid, "update", message)


#: example -> name -> (entry, worker, arguments, what to do while it runs)
RUNS: dict[str, dict[str, Spawn]] = {
    "orders": {
        "order_processor-paid": ("app.workflows:order_processor", None,
                                 ({"payment": {"amount": 42}, "wait": "10ms"},), None),
        "order_processor-refunded": ("app.workflows:order_processor", None,
                                     ({"payment": {"amount": 10, "status": "failed"}, "wait": "10ms"},), None),
        "order_saga-shipped": ("app.workflows:order_saga", None, ({"sku": "book", "payment": {"amount": 10}},), None),
        "order_saga-compensated": ("app.workflows:order_saga", None,
                                   ({"sku": "book", "payment": {"amount": 10}, "fail": {"ship": True}},), None),
    },
    "workflow_concepts": {
        "order_saga-ok": ("app.workflows:order_saga", "app:temporal_worker",
                          (["book", "pen"], 25, {"id": "o-1", "address": "1 Main St"}), None),
        "order_saga-declined": ("app.workflows:order_saga", "app:temporal_worker",
                                (["book"], 5000, {"id": "o-1", "address": "1 Main St"}), None),
        "approval-approved": ("app.workflows:approval", "app:temporal_worker", ({"id": "r-1", "order_id": "o-1"},),
                              lambda rt, pid: _approve(rt, pid, {"approved": True})),
        "approval-rejected": ("app.workflows:approval", "app:temporal_worker", ({"id": "r-2", "order_id": "o-2"},),
                              lambda rt, pid: _approve(rt, pid, {"status": "approved"})),
    },
    "typed": {
        "signup": ("app:signup", None, ({"signup": {"email": "Alice@Example.com", "name": "Alice", "age": 30,
                                                    "plan": "pro", "tags": ["beta"]},
                                         "cooling_off": "10ms"},), None),
    },
}


async def record(address: str) -> None:
    from moontide.runtime import AppRuntime

    for example, runs in RUNS.items():
        with tempfile.TemporaryDirectory() as tmp:
            app = Path(shutil.copytree(EXAMPLES / example, Path(tmp) / example))
            async with AppRuntime(app, temporal=address, serve=True) as rt:
                for name, (entry, worker, args, during) in runs.items():
                    pid = await rt.spawn(entry, worker, *args, workflow_id=f"{example}-{name}")
                    if during is not None:
                        await during(rt, pid)
                    try:
                        await rt.result(pid)
                    except Exception as e:  # a failed execution is a history too
                        print(f"  {example}/{name}: ended with {e}")
                    history = await (await rt.handle(pid)).fetch_history()
                    out = HERE / example / f"{name}.json"
                    out.parent.mkdir(exist_ok=True)
                    data = {"workflowId": history.workflow_id, **json.loads(history.to_json())}
                    out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
                    print(f"{out.relative_to(HERE.parents[1])}: {len(history.events)} events")


if __name__ == "__main__":
    logging.getLogger("temporalio").setLevel(logging.ERROR)  # the examples' failing activities are on purpose
    with dev_server() as address:
        asyncio.run(record(address))
