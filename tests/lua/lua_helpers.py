"""Helpers (imported by the tests of tests/lua) for unit tests of the Lua sandbox: real lupa, no network, no Temporal.

``run_lua(source, *args, modules=[...])`` builds a ``LuaCode`` whose source is
the *body of the entry's function* (the helper wraps it as
``return function(...) <source> end``), instantiates it on a ``Runtime`` with a
``FunctionHost`` and steps the thread once, returning the ``Step``.
``run_chunk`` does the same with a full source that returns the function itself.

Not a conftest.py on purpose: test modules elsewhere do ``from moontide_testing import
...`` and a second conftest module would shadow tests/conftest.py for them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from typing import Any

import pytest

from moontide import errors
from moontide.lua import Done, Failed, LuaCode, Runtime, Thread, Yield, instantiate
from moontide.lua.host import FunctionHost

#: Small budget keeps runaway-loop tests fast (about 0.1 s each).
SMALL_BUDGET = 1_000_000

PYTHON = "/work/venv/bin/python" if os.path.exists("/work/venv/bin/python") else sys.executable


def make_runtime(**kw: Any) -> Runtime:
    kw.setdefault("instruction_budget", SMALL_BUDGET)
    kw.setdefault("memory_limit", 64 << 20)
    return Runtime(**kw)


def code_of(source: str, *, modules: Iterable[str] = (), chunkname: str = "test.lua", method: str = "",
            imports: Iterable[tuple[str, LuaCode]] = (), first_line: int = 1, id: str = "test:entry") -> LuaCode:
    return LuaCode(id=id, kind="function.lua", source=source, chunkname=chunkname, method=method,
                   modules=tuple(modules), imports=tuple(imports), first_line=first_line)


def start_chunk(rt: Runtime, source: str, *args: Any, modules: Iterable[str] = (), chunkname: str = "test.lua",
                seed: int = 1, host: FunctionHost | None = None, **kw: Any) -> Thread:
    host = host if host is not None else FunctionHost(rt)
    fn = instantiate(rt, code_of(source, modules=modules, chunkname=chunkname, **kw), host=host, seed=seed)
    return rt.start(fn, host, *args)


def run_chunk(source: str, *args: Any, rt: Runtime | None = None, **kw: Any) -> Any:
    """Instantiate a full chunk (which returns the function) and step it once."""
    rt = rt if rt is not None else make_runtime()
    return start_chunk(rt, source, *args, **kw).step()


def wrap_body(body: str) -> str:
    # Everything on line 1 so user line N stays line N.
    return "return function(...) " + textwrap.dedent(body) + "\nend"


def run_lua(body: str, *args: Any, rt: Runtime | None = None, **kw: Any) -> Any:
    """Run ``body`` as the entry's function (``...`` are ``args``); return the Step."""
    return run_chunk(wrap_body(body), *args, rt=rt, **kw)


def done(step: Any) -> tuple[Any, ...]:
    """The values of a Done step (fails the test with the error otherwise)."""
    if isinstance(step, Failed):
        pytest.fail(f"Lua failed: {type(step.error).__name__}({step.error.kind}): {step.error}\n"
                    f"{getattr(step.error, 'traceback', '')}")
    assert isinstance(step, Done), step
    return step.values


def value(step: Any) -> Any:
    vals = done(step)
    assert vals, "the Lua function returned nothing"
    return vals[0]


def failed(step: Any) -> errors.MoontideError:
    """The error of a Failed step (fails the test if it finished)."""
    assert isinstance(step, Failed), f"expected a failure, got {step!r}"
    return step.error


def eval_lua(expr_body: str, *args: Any, **kw: Any) -> Any:
    """Shorthand: the first value returned by ``body``."""
    return value(run_lua(expr_body, *args, **kw))


HERE = os.path.dirname(os.path.abspath(__file__))


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    """Run Python in a fresh interpreter (its own string hashes and addresses); its stdout.

    The code can ``from lua_helpers import ...``. A hang fails the test after
    ``timeout`` seconds instead of hanging the suite: use it for anything that
    ran forever before its defence existed.
    """
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, full_env.get("PYTHONPATH")) if p)
    full_env.update(env or {})
    try:
        out = subprocess.run([PYTHON, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                             env=full_env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout} s (a runaway that nothing stopped)")
    assert out.returncode == 0, out.stderr
    return out.stdout


__all__ = ["Done", "Failed", "Yield", "SMALL_BUDGET", "code_of", "done", "eval_lua", "failed", "make_runtime",
           "run_chunk", "run_lua", "run_python", "start_chunk", "value", "wrap_body"]
