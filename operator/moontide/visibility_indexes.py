"""Fewer indexes on the embedded server's visibility table: what a tuned ``DevServer`` does to its database.

Temporal's SQLite schema indexes ``executions_visibility`` 58 ways besides its
primary key: by each system column and by each pre-allocated search-attribute
column (``Keyword01``..``10``, ``Int01``..``03``, ...), each index led by the
namespace and followed by the list order. A workflow writes its visibility row about 3 times (start, first workflow
task, close), and the server's SQLite driver prepares every statement anew, so
each write compiles code for all 58 indexes and then updates all 58. Trimming
them to ``KEPT`` is the largest saving of the tuned server after the pragmas
(benchmarks/README.md: 13-28% more workflows/s, 8-20% less server CPU).

What is lost is speed, not answers: a list filter on another column (a custom
search attribute, ``ParentWorkflowId``, ``HistoryLength``, ...) still works, by
reading the whole table (benchmarks/README.md gives the time per 100,000
executions). Partial indexes (``WHERE column IS NOT NULL``) would keep those
filters fast but gave back half the saving: the compiling is per index, empty or
not.

The definitions of the dropped indexes stay in the database (table
``moontide_dropped_indexes``); ``restore`` recreates them, and a server started
with ``DevServer(tuned=False)`` or ``trim_visibility_indexes=False`` calls it. Temporal itself does not touch an existing schema: the dev
server writes its schema when it creates the file and never migrates one
(temporalio/cli, internal/devserver/server.go).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

__all__ = ["KEPT", "restore", "trim"]

TABLE = "executions_visibility"

#: The indexes a tuned server keeps: the Web UI's list (a namespace, newest first)
#: and the filters it offers on every list (workflow ID, type, status, start time,
#: task queue). The primary key (namespace, run ID) is not an index one can drop.
KEPT = frozenset({"default_idx", "by_execution_time", "by_workflow_id", "by_workflow_type", "by_status",
                  "by_task_queue"})

_SAVED = "moontide_dropped_indexes"


def trim(db: Path) -> int:
    """Drop the indexes of the visibility table not in ``KEPT``, saving their definitions; how many."""
    with _transaction(db) as c:
        rows = c.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                         "AND sql IS NOT NULL", (TABLE,)).fetchall()
        dropped = [(name, sql) for name, sql in rows if name not in KEPT]
        if dropped:
            c.execute(f"CREATE TABLE IF NOT EXISTS {_SAVED} (name TEXT PRIMARY KEY, sql TEXT NOT NULL)")
            for name, sql in dropped:
                c.execute(f"INSERT OR REPLACE INTO {_SAVED} (name, sql) VALUES (?, ?)", (name, sql))
                c.execute(f'DROP INDEX "{name}"')
    return len(dropped)


def restore(db: Path) -> int:
    """Recreate the indexes ``trim`` dropped (none if it never ran); how many."""
    if not db.exists():
        return 0
    with _transaction(db) as c:
        if c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_SAVED,)).fetchone() is None:
            return 0
        saved = c.execute(f"SELECT name, sql FROM {_SAVED}").fetchall()
        for _name, sql in saved:
            c.execute(sql)
        c.execute(f"DROP TABLE {_SAVED}")
    return len(saved)


@contextlib.contextmanager
def _transaction(db: Path) -> Iterator[sqlite3.Connection]:
    """One transaction on ``db``, committed if the block returns; fails at once if the file is locked."""
    c = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")
    finally:
        c.close()
