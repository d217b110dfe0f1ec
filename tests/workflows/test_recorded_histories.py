"""Histories recorded by an earlier Moontide still replay on today's code.

``tests/histories/<example>/*.json`` are finished executions of the examples'
workflows (written by ``tests/histories/record.py``). A change to the Lua
runtime, the workflow driver, a module or the ``temporalio`` pin that would
make running executions take another path on replay fails here, with the
Lua line where the path changed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from moontide.runtime import load
from moontide.workflows import history_from_file, replay

ROOT = Path(__file__).resolve().parents[2]
HISTORIES = sorted((ROOT / "tests" / "histories").glob("*/*.json"))


def test_every_example_with_workflows_has_recorded_histories() -> None:
    assert {p.parent.name for p in HISTORIES} >= {"orders", "workflow_concepts", "typed"}


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_a_recorded_history_replays_on_todays_code(path: Path) -> None:
    app = load(ROOT / "examples" / path.parent.name)
    reports = [r async for r in replay(app, [history_from_file(path)])]
    assert [r.ok for r in reports] == [True], [str(r) for r in reports]


async def test_a_changed_example_fails_the_replay_with_its_line(tmp_path: Path) -> None:
    """The check above can fail: the saga with its first two steps swapped diverges at the first."""
    import shutil

    app_dir = Path(shutil.copytree(ROOT / "examples" / "workflow_concepts", tmp_path / "workflow_concepts"))
    saga = next(app_dir.rglob("order_saga.lua"))
    text = saga.read_text()
    reserve = 'funcs.call("app.inventory:reserve"'
    charge = 'funcs.call("app.payments:charge"'
    assert reserve in text and charge in text
    saga.write_text(text.replace(reserve, "\0").replace(charge, reserve).replace("\0", charge))
    history = history_from_file(ROOT / "tests" / "histories" / "workflow_concepts" / "order_saga-ok.json")
    (report,) = [r async for r in replay(load(app_dir), [history])]
    assert report.divergence is not None, str(report)
    assert (report.divergence.history, report.divergence.code) == (
        "activity app.inventory:reserve", "activity app.payments:charge")
    assert report.divergence.where is not None and "order_saga.lua:" in report.divergence.where
