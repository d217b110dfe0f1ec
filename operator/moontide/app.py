"""Load an app directory: its entries validated, every Lua source compiled and checked (all problems at once)."""

from __future__ import annotations

import functools
from pathlib import Path

from . import entries
from .lua import check_syntax

__all__ = ["load"]


def load(root: Path, *, literal_ids: bool = False) -> entries.App:
    """Load and validate an app, compiling and loading every Lua source (all problems at once).

    ``literal_ids``: also report entry IDs in the Lua sources that name no entry (``moontide check``).
    """
    from .check import check_code

    return entries.load_app(Path(root), check_lua=check_syntax,
                            check_code=functools.partial(check_code, literal_ids=literal_ids))
