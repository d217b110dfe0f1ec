"""Process names: ``process.registry.register/lookup/unregister``, one namespace per ``ProcessSystem``.

A name points at one pid (a local process or a workflow). Names of a local
process go away when it exits, so a restarted service registers again.
"""

from __future__ import annotations

from typing import Any

from .. import errors

__all__ = ["Registry"]


class Registry:
    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self._by_pid: dict[str, set[str]] = {}

    @staticmethod
    def check(name: Any, what: str) -> str:
        if not isinstance(name, str) or not name or name.startswith("{"):
            raise errors.Invalid(f"{what}: a name is a non-empty string not starting with '{{', got {name!r}")
        return name

    def register(self, name: Any, pid: str) -> None:
        name = self.check(name, "process.registry.register")
        current = self.names.get(name)
        if current is not None and current != pid:
            raise errors.AlreadyExists(f"process.registry.register: {name!r} is taken by {current}")
        self.names[name] = pid
        self._by_pid.setdefault(pid, set()).add(name)

    def lookup(self, name: Any) -> str:
        name = self.check(name, "process.registry.lookup")
        pid = self.names.get(name)
        if pid is None:
            raise errors.NotFound(f"process.registry.lookup: no process is registered as {name!r}")
        return pid

    def unregister(self, name: Any) -> None:
        name = self.check(name, "process.registry.unregister")
        pid = self.names.pop(name, None)
        if pid is None:
            raise errors.NotFound(f"process.registry.unregister: no process is registered as {name!r}")
        names = self._by_pid.get(pid)
        if names is not None:
            names.discard(name)
            if not names:
                del self._by_pid[pid]

    def forget(self, pid: str) -> None:
        """``pid`` has exited: its names are free."""
        for name in self._by_pid.pop(pid, ()):
            if self.names.get(name) == pid:
                del self.names[name]
