"""Stepping a process's Lua thread on the hot path, with exactly ``Thread.step``'s outcomes.

A message between two processes costs two steps (the send, the receive), so
the per-step wrapping shows: ``Thread.step`` builds a ``Yield`` object for every
yield, and a received message would cost one more call into Lua to build its
table. Here a yield comes back as the raw tuple ``("yield", op, *args)``, and a
message is built inside the same call into Lua that resumes the thread
(``Codec.step_message``).

Every other outcome (the thread returned or raised, the budget ran out, lupa
raised) is handed to ``Thread.step`` itself, replayed over a stand-in runtime
that returns (or raises) what the real call did: how an outcome becomes a
``Done``/``Failed`` is written once, in ``moontide.lua.runtime``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

from ..lua import runtime as rt_mod

__all__ = ["step_raw"]

_NULL = contextlib.nullcontext()


class _Raised:
    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class _Replay:
    """A runtime whose one step answers with an outcome we already have."""

    __slots__ = ("_rt", "_out", "host", "lock")

    def __init__(self, rt: rt_mod.Runtime, out: Any) -> None:
        self._rt = rt
        self._out = out
        self.host = None
        self.lock = _NULL

    def _step(self, *_: Any) -> Any:
        if isinstance(self._out, _Raised):
            raise self._out.error
        return self._out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rt, name)


def step_raw(rt: rt_mod.Runtime, thread: rt_mod.Thread, host: Any, call: Callable[..., Any],
             *args: Any) -> tuple[Any, ...] | rt_mod.Step:
    """``call(thread.co, budget, *args)`` under the runtime's lock with ``host`` answering.

    Returns the raw ``("yield", op, *args)`` tuple, or the ``Done``/``Failed`` that
    ``Thread.step`` makes of any other outcome.
    """
    with rt.lock:
        rt.host = host
        try:
            rt.make_room(*args)  # lupa pushes them unprotected (lua.runtime._LIFTED)
            out: Any = call(thread.co, rt.instruction_budget, *args)
        except Exception as e:  # lupa's own errors: Thread.step knows what they mean
            out = _Raised(e)
        finally:
            rt.host = None
    if type(out) is tuple and out[0] == "yield":
        return out
    replay = rt_mod.Thread(_Replay(rt, out), thread.co, host)  # type: ignore[arg-type]
    step = replay.step()
    if replay.co is None:  # out of memory: the coroutine is dropped
        thread.co = None
    return step
