"""A sandboxed Lua 5.4 runtime (lupa) and the threads that run user code in it.

Who calls it: the workflow driver (one runtime per workflow execution), the
function pool (pooled runtimes per ``function.lua`` entry) and the entry
checker (compiles sources to find syntax errors).

How Lua is kept away from Python (docs/architecture.md, "Measured hazards and their answers"): lupa's ``python``
global is deleted by the prelude, every attribute access on a Python object
is refused by ``attribute_filter``, and the only Python object in the Lua
state is the host callable, held as a private upvalue of the prelude. Values
cross as JSON text (Lua -> Python) or as freshly built Lua tables
(Python -> Lua), never as wrapped Python objects.
"""

from __future__ import annotations

import json
import math
import threading
import time
import weakref
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import lupa.lua54 as lupa

from .. import errors, values
from . import typed

__all__ = ["Done", "Failed", "Host", "Runtime", "Shards", "Step", "Thread", "Yield", "check_syntax"]

_PRELUDE = resources.files(__package__).joinpath("prelude.lua").read_text(encoding="utf-8")
_MODULES = resources.files(__package__).joinpath("modules")
_module_sources: dict[str, str] = {}

BUDGET_MESSAGE = "instruction budget exceeded"
#: Seconds of thread CPU one step (a workflow activation, a function call, a
#: process's run between waits) may take per DEFAULT_BUDGET instructions of its
#: budget (never less), whatever its instruction count: the net for work no
#: instruction shows. With the default budget, below Temporal's 2 s deadlock detector.
CPU_LIMIT = 1.0
DEFAULT_BUDGET = 20_000_000

# Python puts values into Lua through lupa (tables built by ``table_from``,
# arguments of calls into Lua, answers of host calls), and lupa does it with no
# protected call around it: an allocation the memory cap refuses there longjmps
# across the C stack, skipping Python's own frames (inside a host call the GIL is
# never given back and the process hangs for good; outside one Lua panics and
# aborts the process). So the cap must never refuse such an allocation: tables
# are built with the cap lifted, after checking that they fit (``_room``), and
# strings are pushed only when they fit.
_LIFTED = 1 << 62
#: Lua 5.4's sizes on 64-bit: a table, an array slot, a hash node, a string beyond its bytes
_TABLE, _SLOT, _NODE, _STRING = 56, 16, 24, 25
#: to_lua measures the memory every _MEASURE of json.decode charge (~1,000 items)
_MEASURE = 20_000
#: What json.decode is charged, in instructions (~10 ns each): text bytes / 4
#: (json.loads, strings copied), 200 a table and 16 an item (Python building the
#: tables through lupa), measured at ~1-2x the time the same instructions take
JSON_BYTES_PER_INSTRUCTION, JSON_CHARGE_TABLE, JSON_CHARGE_ITEM = 4, 200, 16
#: the host's answer when what it built does not fit: both push without
#: allocating (the prelude holds the string), and the prelude raises it as the
#: memory error
_NO_MEMORY = (False, "not enough memory")
#: A runtime is crowded past this share of its memory cap: before a step, the
#: thread holding the most (at least HOG of the cap) is evicted.
CROWDED, HOG = 0.75, 0.25


def _pow2(n: int) -> int:
    return 1 << (n - 1).bit_length() if n else 0


def _pushed_size(values: tuple[Any, ...]) -> int:
    """Bytes Lua allocates when lupa pushes ``values`` (strings; tables are already in Lua)."""
    size = 0
    for v in values:
        if isinstance(v, str):
            size += _STRING + (len(v) if v.isascii() else len(v.encode("utf-8", "surrogatepass")))
        elif isinstance(v, bytes):
            size += _STRING + len(v)
    return size


def module_source(name: str) -> str:
    src = _module_sources.get(name)
    if src is None:
        path = _MODULES.joinpath(f"{name}.lua")
        if not path.is_file():
            raise errors.NotFound(f"no Lua module named {name!r}")
        src = _module_sources[name] = path.read_text(encoding="utf-8")
    return src


def _refuse_attributes(obj: object, name: object, is_setting: bool) -> str:
    raise AttributeError("Lua code has no access to Python objects")


class Host(Protocol):
    """Answers the synchronous calls Lua modules make (``host(op, ...)``)."""

    def __call__(self, op: str, *args: Any) -> Any: ...


@dataclass(frozen=True)
class Yield:
    """The Lua thread asks for something that may block: ``op`` with raw Lua args."""

    op: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Done:
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Failed:
    error: errors.MoontideError


Step = Yield | Done | Failed


class Runtime:
    """One Lua state with the sandbox prelude loaded, shared by many executions.

    Compiled code (``factories``) and modules are shared; each execution has
    its own globals, closures, ``math.random`` and coroutine. Each step runs
    under ``lock`` with its thread's host answering the host calls, so
    executions never see each other's host.
    """

    def __init__(
        self,
        *,
        memory_limit: int = 64 << 20,
        instruction_budget: int = DEFAULT_BUDGET,
        cpu_limit: float | None = None,
        stoppable: bool = False,
    ) -> None:
        self.host: Host | None = None
        #: why the running step must end now (``stop``); None while it may go on
        self.stop_reason: errors.MoontideError | None = None
        self.lock = threading.RLock()
        #: compiled chunk factories by code digest
        self.factories: dict[str, Any] = {}
        self.memory_limit = memory_limit
        self.instruction_budget = instruction_budget
        #: instructions the current host call charges (json.decode): the prelude charges them
        self.pending_charge = 0
        self._work = self._work_limit = self._check_at = 0  # of the value being built: see _build
        self._threads: weakref.WeakSet[Thread] = weakref.WeakSet()
        #: a bigger budget is a promise of longer steps: the net grows with it
        self.cpu_limit = (cpu_limit if cpu_limit is not None
                          else CPU_LIMIT * max(1.0, instruction_budget / DEFAULT_BUDGET))
        self.lua = lupa.LuaRuntime(
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            attribute_filter=_refuse_attributes,
            max_memory=memory_limit,
            overflow_handler=float,
        )
        self._set_cap = self.lua.set_max_memory
        self._memory = self.lua.get_memory_used
        # The hook reads this clock every thousand instructions: a stoppable
        # runtime's clock also says "past the deadline" once stop() was called.
        clock = self._stoppable_clock if stoppable else time.thread_time
        self.sandbox = self.lua.execute(_PRELUDE, self._host, BUDGET_MESSAGE, clock, values.MAX_DEPTH,
                                        values.TOO_DEEP)
        self.sandbox.set_cpu_limit(self.cpu_limit if instruction_budget > 0 else 0)
        self._step = self.sandbox.step
        self._table_from = self.lua.table_from
        self._mark_array = self.sandbox.mark_array
        self._mark_object = self.sandbox.mark_object
        self._null = self.sandbox.null  # json.null: None inside a list (nil would be a hole)
        self._new_env = self.sandbox.new_env
        self._compile = self.sandbox.compile
        self._start = self.sandbox.start
        self._to_json = self.sandbox.to_json_bounded
        self._error_parts = self.sandbox.error_parts
        # looked up once: reading a Lua table from Python inside a host call
        # returns whatever lies on the running Lua stack as well
        self._instructions_used = self.sandbox.instructions_used
        self._new_error = self.sandbox.new_error  # error_to_lua runs inside host calls too
        self._collect = self.lua.globals().collectgarbage

    # -- stopping a step from another thread ---------------------------------
    def stop(self, reason: errors.MoontideError) -> None:
        """End the step running on another thread with ``reason``, within a thousand instructions.

        For code that must not outlive what it runs for (a function whose
        activity timed out or was canceled). Only a ``stoppable`` runtime
        notices; ``stop_reason`` stays set until the owner clears it.
        """
        self.stop_reason = reason

    def _stoppable_clock(self) -> float:
        return math.inf if self.stop_reason is not None else time.thread_time()

    # -- the host callable: the one door from Lua to Python -----------------
    def _host(self, op: Any, *args: Any) -> tuple[Any, ...]:
        out: tuple[Any, ...]
        self.pending_charge = 0
        try:
            if op == "module.source":
                out = True, module_source(str(args[0]))
            elif self.host is None:
                raise errors.Unavailable(f"{op}: not available here")
            else:
                out = True, self.host(op, *args)
        except errors.MoontideError as e:
            out = False, e.message, e.kind, e.retryable
        except lupa.LuaMemoryError:
            out = _NO_MEMORY
        except Exception as e:  # a bug on the Python side must not leak a traceback object into Lua
            out = False, f"{op}: {type(e).__name__}: {e}", "Internal", False
        # lupa pushes the answer's strings unprotected (see _LIFTED)
        if not self._can_push(out):
            out = _NO_MEMORY
        if self.pending_charge:  # the prelude's call_host charges it
            out = (*out, None, None, None)[:4] + (self.pending_charge,)
        return out

    # -- values -------------------------------------------------------------
    def to_lua(self, value: Any) -> Any:
        """A JSON value as a Lua value (dicts and lists become fresh tables, None in a list json.null).

        Raises lupa.LuaMemoryError, keeping nothing, when the tables do not fit under the memory cap.
        """
        if not isinstance(value, (dict, list)):
            return value  # a string is pushed where it is used (answers and steps check it fits)
        return self._build_all(value, _LIFTED)

    def json_to_lua(self, text: str) -> Any:
        """``to_lua(values.decode(text))`` charged to the instruction budget of the running step.

        The charge (``pending_charge``) is made by the prelude when the host call
        returns; past the budget the tables are not built (or not finished).
        """
        work = self.pending_charge = len(text) // JSON_BYTES_PER_INSTRUCTION
        limit = self._budget_left()
        if work > limit:
            raise errors.BudgetExceeded("json.decode: over the instruction budget")
        value = values.decode(text, "json.decode")
        if not isinstance(value, (dict, list)):
            return value
        try:
            return self._build_all(value, limit - work)
        finally:
            self.pending_charge = work + self._work

    def _budget_left(self) -> int:
        if self.instruction_budget <= 0:
            return 1 << 62
        return self.instruction_budget - int(self._instructions_used())

    def _build_all(self, value: Any, work_limit: int) -> Any:
        self.lock.acquire()  # the cap is the state's: no step may run while it is lifted
        try:
            self._work, self._work_limit = 0, work_limit
            self._check_at = min(_MEASURE, work_limit)
            if self.memory_limit <= 0:
                return self._build(value)
            self._set_cap(_LIFTED)
            try:
                out = self._build(value)
            finally:
                self._set_cap(self.memory_limit)
            if self._memory() >= self.memory_limit and not self._fits(0):
                del out
                self._collect()
                raise lupa.LuaMemoryError(self._memory_message())
            return out
        finally:
            self.lock.release()

    def _build(self, value: Any) -> Any:
        # Children first; ``_work`` counts the json.decode charge, and every
        # _MEASURE of it the memory is measured (_checkpoint).
        n = len(value)
        self._work += JSON_CHARGE_TABLE + JSON_CHARGE_ITEM * n
        if self._work > self._check_at:
            self._checkpoint(value)
        build = self._build
        if isinstance(value, dict):
            if not value or (next(iter(value.values())) is None and all(v is None for v in value.values())):
                # empty in Lua: json.encode writes it as {}, not []
                return self._mark_object(self._table_from({}))
            return self._table_from({k: build(v) if isinstance(v, (dict, list)) else v for k, v in value.items()})
        null = self._null
        return self._mark_array(self._table_from(
            [null if v is None else build(v) if isinstance(v, (dict, list)) else v for v in value]))

    def _checkpoint(self, value: Any) -> None:
        """Past the budget, or the cap with what is built so far and the slots of ``value``.

        What is built between two checkpoints, with the strings copied into it,
        is all the lifted cap can be overshot by; a long table (its charge alone
        is over _MEASURE) is checked before it is built, so it fails at once.
        """
        if self._work > self._work_limit:
            raise errors.BudgetExceeded("json.decode: over the instruction budget")
        self._check_at = min(self._work + _MEASURE, self._work_limit)
        self._room(_TABLE + (_NODE if isinstance(value, dict) else _SLOT) * _pow2(len(value)))

    def _fits(self, size: int) -> bool:
        """Whether ``size`` more bytes fit under the cap, after a full collection if needed."""
        if self.memory_limit <= 0 or self._memory() + size < self.memory_limit:
            return True
        self._collect()
        return self._memory() + size < self.memory_limit

    def _room(self, size: int) -> None:
        if not self._fits(size):
            raise lupa.LuaMemoryError(self._memory_message())

    def make_room(self, *values: Any) -> None:
        """Raise lupa.LuaMemoryError unless lupa can push ``values`` (arguments of a call into Lua).

        A string pushed over the cap would abort the process (see _LIFTED);
        tables made by ``to_lua`` are already in Lua.
        """
        if not self._can_push(values):
            raise lupa.LuaMemoryError(self._memory_message())

    def _can_push(self, values: tuple[Any, ...]) -> bool:
        size = _pushed_size(values)
        return not size or self._fits(size)

    def from_lua(self, value: Any, path: str = "value") -> Any:
        """A Lua value as a JSON value; raises errors.Invalid naming the path."""
        if value is None or isinstance(value, (bool, int, float, str)):
            if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
                raise errors.Invalid(f"{path}: number {value} has no JSON form")
            return value
        # bounded: a __tojson metamethod is user code running outside any step
        self.make_room(path)
        out = self._to_json(value, path, self.instruction_budget)
        if isinstance(out, tuple):  # nil, err
            raise errors.Invalid(self.error_from_lua(out[1]).message)
        return json.loads(out)

    def error_from_lua(self, err: Any) -> errors.MoontideError:
        """A Lua error object (or any value) as a MoontideError."""
        if err is None or isinstance(err, (bool, int, float, str)):
            return errors.Internal(str(err))
        # read in Lua without metamethods: err["kind"] here would run a user __index unbudgeted
        parts = self._error_parts(err, self.instruction_budget)
        if not isinstance(parts, tuple):
            parts = (parts,)
        kind, message = parts[0], parts[1]
        if kind is None:
            return errors.Internal(str(message))
        try:
            details = self.from_lua(parts[3], "details") if len(parts) > 3 else None
        except errors.Invalid:
            details = None
        return errors.MoontideError(message, kind=kind, retryable=bool(parts[2]), details=details)

    def error_to_lua(self, e: errors.MoontideError) -> Any:
        details = self.to_lua(e.details)
        self.make_room(e.kind, e.message)
        return self._new_error(e.kind, e.message, e.retryable, details)

    # -- code ---------------------------------------------------------------
    def new_env(self, name: str, modules: list[str] | tuple[str, ...], imports: dict[str, Any], *, seed: int) -> Any:
        """Globals for one execution of one program; ``seed`` seeds its math.random."""
        if seed >= 1 << 63:
            seed -= 1 << 64
        mods, imps = self.to_lua(list(modules)), self.to_lua(dict(imports))
        self.make_room(name)
        return self._new_env(name, mods, imps, seed)

    def compile(self, source: str, chunkname: str) -> Any:
        """Compile a chunk into a factory (``factory(env)`` runs it); raises errors.LuaError on a syntax error."""
        out = self._compile_typed(source, chunkname)
        if isinstance(out, tuple):  # nil, message
            raise errors.LuaError(str(out[1]), kind="Invalid")  # a LuaError (file:line) of kind Invalid
        return out

    # -- typed Lua: every source is translated (typed.py) before Lua compiles it
    def _compile_typed(self, source: str, chunkname: str) -> Any:
        """A factory, or (None, "chunkname:line: message")."""
        try:
            lua = typed.translate(source)
        except typed.TypeSyntaxError as e:
            # Plain Lua the translator cannot follow still runs; when Lua
            # refuses it too, the error found first is the one reported.
            self.make_room(source, chunkname)
            out = self._compile(source, chunkname)
            lua_line = _error_line(str(out[1]), chunkname) if isinstance(out, tuple) else 0
            if not isinstance(out, tuple) or lua_line > e.line or (lua_line == e.line and not e.typed):
                return out
            return None, f"{chunkname}:{e.line}: {e.message}"
        self.make_room(lua, chunkname)
        return self._compile(lua, chunkname)

    def start(self, fn: Any, host: Host | None, *args: Any) -> Thread:
        """A new thread that will call ``fn(*args)`` on its first step."""
        thread = Thread(self, self._start(fn), host, args)
        self._threads.add(thread)
        return thread

    # -- memory shared by executions: a hog fails itself --------------------
    def _crowded(self) -> bool:
        return 0 < self.memory_limit * CROWDED < self._memory()

    def _evict_hog(self, spare: Thread) -> None:
        """In a crowded runtime, drop the thread holding the most memory (never ``spare``, the one about to step).

        Memory is attributed to the thread whose steps grew it (``Thread.held``):
        an execution that keeps most of the cap loses its state and fails at
        its next step, instead of its neighbours failing one by one.
        """
        hog = max((t for t in self._threads if t is not spare and t.co is not None),
                  key=lambda t: t.held, default=None)
        if hog is None or hog.held < self.memory_limit * HOG:
            return
        hog.evict(errors.BudgetExceeded(
            f"evicted: this execution held about {hog.held >> 20} MiB of its runtime's Lua memory limit of "
            f"{self.memory_limit >> 20} MiB, crowding out the executions that share it"))
        self._collect()

    def _memory_message(self) -> str:
        return f"Lua memory limit of {self.memory_limit >> 20} MiB exceeded"

    def collect_garbage(self) -> None:
        self._collect()

    def memory_used(self) -> int:
        return int(self.lua.get_memory_used() or 0)


class Shards:
    """Runtimes shared by many executions: at most ``per_runtime`` live executions each.

    Sharing keeps a parked execution down to its own globals and coroutine
    (a few KiB) instead of a whole Lua state with the modules loaded (~160 KiB).
    The memory cap applies per runtime, so a runaway execution can only
    disturb the executions of its own shard, and only until it fails.
    """

    def __init__(self, *, per_runtime: int = 256, memory_limit: int = 64 << 20,
                 instruction_budget: int = DEFAULT_BUDGET) -> None:
        self.per_runtime = per_runtime
        self.memory_limit = memory_limit
        self.instruction_budget = instruction_budget
        self._live: dict[Runtime, int] = {}
        # Reentrant: a garbage collection inside acquire() may run an owner's
        # finalizer (_release) on this thread while the lock is held.
        self._lock = threading.RLock()

    def acquire(self, owner: object) -> Runtime:
        """A runtime for ``owner``; its slot is freed when ``owner`` is garbage-collected."""
        with self._lock:
            rt = min(self._live, key=self._live.__getitem__, default=None)
            if rt is None or self._live[rt] >= self.per_runtime:
                rt = Runtime(memory_limit=self.memory_limit, instruction_budget=self.instruction_budget)
                self._live[rt] = 0
            self._live[rt] += 1
        weakref.finalize(owner, self._release, rt)
        return rt

    def _release(self, rt: Runtime) -> None:
        with self._lock:
            self._live[rt] -= 1


class Thread:
    """A coroutine running user code; each step runs under a fresh instruction budget."""

    __slots__ = ("runtime", "co", "host", "_first", "held", "evicted", "__weakref__")

    def __init__(self, runtime: Runtime, co: Any, host: Host | None, args: tuple[Any, ...] = ()) -> None:
        self.runtime = runtime
        self.co = co
        self.host = host
        self._first: tuple[Any, ...] | None = args
        #: bytes of the runtime's memory this thread's steps grew it by (what it holds, roughly)
        self.held = 0
        #: why the runtime dropped this thread's state (``Runtime._evict_hog``)
        self.evicted: errors.MoontideError | None = None

    def evict(self, reason: errors.MoontideError) -> None:
        """Let go of the Lua state; the next step fails with ``reason``."""
        self.co, self.evicted, self.held = None, reason, 0

    def where(self) -> str | None:
        """``file:line`` of the user code this thread is at (its running or last task), or None."""
        if self.co is None:
            return None
        with self.runtime.lock:
            where = self.runtime.sandbox.where(self.co)
        return None if where is None else str(where)

    def step(self, *values: Any) -> Step:
        """Run until the code finishes, fails or yields; ``values`` answer the last yield."""
        rt = self.runtime
        if self._first is not None:
            values, self._first = self._first, None
        with rt.lock:
            if self.evicted is not None:
                return Failed(self.evicted)
            if rt._crowded():
                rt._evict_hog(self)
            # lupa pushes the values before Lua protects anything (see _LIFTED)
            if not rt._can_push(values):
                return self._out_of_memory()
            rt.host = self.host
            before = rt._memory()
            try:
                out = rt._step(self.co, rt.instruction_budget, *values)
            except lupa.LuaMemoryError:
                return self._out_of_memory()
            except lupa.LuaError as e:  # raised by lupa itself, e.g. converting a value
                return Failed(errors.LuaError(str(e)))
            except UnicodeDecodeError as e:  # lupa decoding a returned/raised Lua string
                return Failed(errors.Invalid(
                    f"Lua returned, raised or passed to the host a string that is not valid UTF-8 text "
                    f"({e.reason} at byte {e.start}); encode binary data with base64"))
            finally:
                rt.host = None
            self.held = max(0, self.held + rt._memory() - before)
        if not isinstance(out, tuple):
            out = (out,)
        tag = out[0]
        if tag == "yield":
            return Yield(out[1], out[2:])
        if tag == "done":
            return Done(out[1:])
        message, tb = out[1], out[2]
        if message == BUDGET_MESSAGE and rt.stop_reason is not None:
            return Failed(rt.stop_reason)
        if message == BUDGET_MESSAGE and rt.sandbox.instructions_used() <= rt.instruction_budget:
            return Failed(errors.BudgetExceeded(
                f"Lua ran past its CPU limit of {rt.cpu_limit:g} s in one activation, within its instruction "
                "budget: work the budget does not count, such as `..` on long strings in a loop\n"
                + _clean_traceback(tb)))
        if message == BUDGET_MESSAGE:
            return Failed(errors.BudgetExceeded(
                f"Lua ran past its instruction budget of {rt.instruction_budget:,} instructions "
                "in one activation (runaway loop?)\n" + _clean_traceback(tb)))
        if message in ("not enough memory", ""):
            return self._out_of_memory()
        kind = out[3] if len(out) > 3 and out[3] else "LuaError"
        retryable = bool(out[4]) if len(out) > 4 else False
        return Failed(errors.LuaError(str(message), traceback=_clean_traceback(tb), kind=kind, retryable=retryable))


    def _out_of_memory(self) -> Failed:
        # The dead coroutine holds what filled the memory: let it go now, so
        # the runtime is usable again (Lua 5.4 runtimes survive a memory error).
        # Still crowded after that: another thread holds it, and goes.
        rt = self.runtime
        self.evict(errors.BudgetExceeded(rt._memory_message()))
        rt.collect_garbage()
        if rt._crowded():
            rt._evict_hog(self)
        return Failed(errors.BudgetExceeded(rt._memory_message()))


def _clean_traceback(tb: Any) -> str:
    """Keep the user's frames: drop C frames and the sandbox's own plumbing."""
    lines = str(tb or "").splitlines()
    keep = [ln for ln in lines if ln.strip() and "[C]" not in ln and "<python>" not in ln and "in hook" not in ln
            and not ln.strip().startswith(("_patterns:", "_types:", "(...tail calls...)"))]
    return "\n".join(keep)


def check_syntax(source: str, chunkname: str) -> tuple[int, str] | None:
    """Compile ``source`` without running it: None, or (line, message) for a syntax error."""
    rt = _checker()
    with rt.lock:
        try:
            out = rt._compile_typed(source, chunkname)
        except lupa.LuaMemoryError:
            out = None, "not enough memory"
    if not isinstance(out, tuple):
        return None
    text = str(out[1])
    if text == "not enough memory":
        size = len(source.encode("utf-8", "surrogatepass"))
        return 0, (f"the source ({size / 1e6:.1f} MB) is too big to compile within the Lua memory cap of "
                   f"{rt.memory_limit >> 20} MiB")
    line = _error_line(text, chunkname)
    if line:
        return line, text[len(chunkname) + 1:].partition(":")[2].strip()
    return 0, text


def _error_line(message: str, chunkname: str) -> int:
    """The line a compile error names ("chunkname:12: ..."), or 0."""
    prefix = chunkname + ":"
    if message.startswith(prefix):
        line = message[len(prefix):].partition(":")[0]
        if line.isdigit():
            return int(line)
    return 0


_checker_rt: list[Runtime] = []


def _checker() -> Runtime:
    if not _checker_rt:
        _checker_rt.append(Runtime())
    return _checker_rt[0]

