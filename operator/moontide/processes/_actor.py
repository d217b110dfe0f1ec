"""One Lua process (actor): its thread, its mailbox, and the driver that answers what it asks.

The host's scheduler calls ``Actor.run(values)``: the Lua thread runs until it
asks for something that may block (``Yield(op, args)``). Ops that can be
answered at once (a send into an inbox with room, a receive with a message
waiting, a local spawn, a link) are answered in the same turn, so a busy
process runs many of them per turn without touching the event loop. Ops that
must wait record what the process waits for and return; whoever completes them
(a message, a timer, a function call in a thread, a workflow through the
bridge) calls ``wake`` and the host schedules the process again. A blocked
process is a few Python objects and a suspended coroutine: no task, no CPU.

Exit rules (docs/processes.md):

- a monitor gets ``{kind="pid.exit", from=pid, result={value=} or {error=}}`` on
  every exit of the process it monitors;
- a link is both ways: when one end fails (error, terminate), the other gets
  ``{kind="pid.link.down", from=pid, result={error=}}``, and, unless it has
  ever waited on ``process.events()`` (Erlang's trap_exit, implicit), it is
  terminated too, which its own links see in turn; when one end returns
  cleanly, the other gets ``pid.exit`` (once, if it also monitors);
- ``process.cancel`` puts ``{kind="pid.cancel"}`` on the process's events and
  makes its current (or next) blocking wait that does not include the events
  channel return a Canceled error, once; ``process.terminate`` ends it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import concurrent.futures
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .. import errors
from ..lua import code as code_mod
from ..lua import host as host_mod
from ..lua import runtime as rt_mod
from ._codec import codec
from ._exit import Exit, error_dict, first_line
from ._mailbox import Mailbox, Message, topic_of
from ._process_ops import ProcessOps
from ._stepper import step_raw

if TYPE_CHECKING:
    from ._host import ProcessHost

__all__ = ["Actor", "Exit"]

log = logging.getLogger("moontide.processes")

#: Blocking ops one process may answer in a row before the others get a turn.
TURN = 256

_Yield, _Done = rt_mod.Yield, rt_mod.Done


class _Inbox:
    """Resume values meaning "this inbox message": built into a Lua table in the call that resumes."""

    __slots__ = ("topic", "sender", "text", "selecting")

    def __init__(self, message: Message, selecting: bool) -> None:
        self.topic, self.sender, self.text = message
        self.selecting = selecting


class _Slot:
    """Holds a process's place in its runtime (``Shards``): dropped at exit, the place is free."""

    __slots__ = ("__weakref__",)


class _Op:
    """A blocking request started beside other coroutines' (``op.start``): a wait of its own.

    Its channel ``op:<n>`` is ready once ``values`` (what its coroutine resumes with) are in.
    """

    __slots__ = ("values", "token", "undo", "what")

    def __init__(self) -> None:
        self.values: tuple[Any, ...] | None = None
        self.token = 0
        self.undo: Callable[[], object] | None = None
        self.what = ""


_sync_ops: dict[str, Callable[..., Any]] = {}


class Actor(ProcessOps, host_mod.FunctionHost):
    """A running process; also the host answering its Lua's synchronous calls."""

    __slots__ = ("host", "pid", "code", "parent", "slot", "codec", "thread", "mailbox", "state", "blocked",
                 "waiting", "selecting", "token", "undo", "links", "monitors", "watching", "traps", "interrupt",
                 "exit", "waiters", "started", "activated", "seq", "remote", "context", "detached", "op_waits")

    logger = log

    def __init__(self, host: ProcessHost, pid: str, code: code_mod.LuaCode, rt: rt_mod.Runtime, slot: _Slot,
                 parent: str | None, context: dict[str, Any] | None = None) -> None:
        # BaseHost.__init__ is skipped on purpose: the op cache is per class, not per process.
        self.runtime = rt
        self.host = host
        self.pid = pid
        self.code = code
        self.parent = parent
        self.slot: _Slot | None = slot
        self.codec = codec(rt)
        self.thread: rt_mod.Thread | None = None
        self.mailbox = Mailbox()
        self.state = "ready"
        self.blocked = ""
        #: channel ids of the receive/select it waits in (None: not waiting on channels)
        self.waiting: tuple[str, ...] | None = None
        self.selecting = False
        #: bumped whenever it blocks or wakes: completions of an older wait are ignored
        self.token = 0
        #: undoes the current wait when it is interrupted (timer, send into a full inbox, exec child)
        self.undo: Callable[[], object] | None = None
        self.links: set[str] | None = None
        #: pids that monitor this process
        self.monitors: set[str] | None = None
        #: pids this process monitors
        self.watching: set[str] | None = None
        #: waited on process.events(): link-down is an event, not a death sentence
        self.traps = False
        self.interrupt: errors.MoontideError | None = None
        self.exit: Exit | None = None
        self.waiters: list[Callable[[Exit], None]] | None = None
        self.started = time.time()
        self.activated = False
        self.seq = 0
        #: workflow pids linked or monitored: pid -> (how, watcher task)
        self.remote: dict[str, tuple[str, asyncio.Future[Any]]] | None = None
        #: the request context (ctx module), from whoever spawned it
        self.context = context or {}
        #: the operation being started (op.start): its handler's wait is the operation's own
        self.detached: _Op | None = None
        #: started operations still waiting, by their (negative) wait token
        self.op_waits: dict[int, _Op] | None = None

    def __repr__(self) -> str:
        return f"<process {self.pid} {self.code.id} {self.state}>"

    # -- host calls -------------------------------------------------------------
    def __call__(self, op: str, *args: Any) -> Any:
        fn = _sync_ops.get(op)
        if fn is None:
            fn = getattr(Actor, "op_" + op.replace(".", "_"), None)
            if fn is None:
                raise errors.Unavailable(f"{op} is not available in processes",
                                           retryable=False)
            _sync_ops[op] = fn
        return fn(self, *args)

    # -- the driver loop ----------------------------------------------------------
    def run(self, values: tuple[Any, ...]) -> None:
        """Step the thread with ``values``; answer what it asks until it blocks, ends, or its turn is over."""
        thread = self.thread
        if thread is None:
            return
        self.state = "running"
        rt, handlers = self.runtime, _BLOCKING
        raw_step, step_message = rt._step, self.codec.step_message
        for _ in range(TURN):
            if not self.activated:
                # the first step passes the spawn arguments: Thread.step does that
                first = thread.step()
                if self.thread is not thread:
                    return  # upgraded in its first step (see below)
                if type(first) is not _Yield:
                    self.host.finish(self, first)
                    return
                self.activated = True
                self.host.activated(self)
                op, args = first.op, first.args
            else:
                if type(values) is _Inbox:
                    out = step_raw(rt, thread, self, step_message, values.selecting, values.topic, values.sender,
                                   values.text)
                    if out == "codec":  # the Lua decoder refused the text: the careful way
                        built = self.codec.message(values.topic, values.sender, values.text)
                        args0 = (True, "inbox", built) if values.selecting else (True, built)
                        out = step_raw(rt, thread, self, raw_step, *args0)
                else:
                    out = step_raw(rt, thread, self, raw_step, *values)
                if self.thread is not thread:
                    return  # process.upgrade from a coroutine among others (op.start): the old code is gone
                if type(out) is not tuple:
                    self.host.finish(self, out)  # type: ignore[arg-type]  # Yield, Done or Failed
                    return
                op, args = out[1], out[2:]
            handler = handlers.get(op)
            if handler is None:
                values = self._err(errors.Unavailable(f"{op} is not available in processes", retryable=False))
                continue
            try:
                result = handler(self, *args)
            except errors.MoontideError as e:
                result = self._err(e)
            except TypeError as e:
                result = self._err(errors.Invalid(f"{op}: bad arguments ({e})"))
            except Exception as e:  # a bug here must fail one call, not the host
                log.exception("%s: %s failed", self.pid, op)
                result = self._err(errors.Internal(f"{op}: {type(e).__name__}: {e}"))
            if self.exit is not None or result is None:
                return
            values = result
        self.state = "ready"
        self.host.schedule(self, values)

    # -- blocking and waking ------------------------------------------------------
    def _block(self, what: str, undo: Callable[[], object] | None = None) -> int:
        op = self.detached
        if op is not None:  # an operation started beside others waits on its own, under a token < 0
            self.seq += 1
            op.token, op.undo, op.what = -self.seq, undo, what
            if self.op_waits is None:
                self.op_waits = {}
            self.op_waits[op.token] = op
            return op.token
        self.state = "waiting"
        self.blocked = what
        self.undo = undo
        self.token += 1
        return self.token

    def _live(self, token: int) -> bool:
        """Whether the wait ``token`` is still waited for."""
        if token < 0:
            return self.exit is None and self.op_waits is not None and token in self.op_waits
        return self.exit is None and self.token == token

    def wake(self, values: tuple[Any, ...]) -> None:
        self.waiting = None
        self.undo = None
        self.blocked = ""
        self.token += 1
        self.state = "ready"
        self.host.schedule(self, values)

    def complete(self, token: int, values: tuple[Any, ...] | Callable[[], tuple[Any, ...]]) -> None:
        """Finish the wait ``token``, unless it was interrupted or the process has ended."""
        if not self._live(token):
            return
        if callable(values):
            try:
                values = values()
            except errors.MoontideError as e:
                values = self._err(e)
            except Exception as e:  # a bug here must fail one wait, not leave the process hanging
                log.exception("%s: completing %s failed", self.pid, self.blocked)
                values = self._err(errors.Internal(f"{type(e).__name__}: {e}"))
        if token < 0:  # a started operation: its channel is ready now
            assert self.op_waits is not None
            op = self.op_waits.pop(token)
            op.values, op.undo = values, None
            if self.waiting is not None:
                self.poke()
            return
        self.wake(values)

    def _from_thread(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the host's loop, from a worker thread (nothing if the loop is gone)."""
        try:
            self.host.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop has closed: the process is gone with it
            pass

    def _interruptible(self) -> tuple[Any, ...] | None:
        """A pending cancel ends the wait about to begin: its Canceled error, once."""
        if self.interrupt is None or self.detached is not None:  # started operations: their coroutines' wait
            return None
        e, self.interrupt = self.interrupt, None
        return self._err(e)

    def _err(self, e: errors.MoontideError) -> tuple[bool, Any]:
        return False, self.runtime.error_to_lua(e)

    def _ok(self, value: Any) -> tuple[bool, Any]:
        return True, self.runtime.to_lua(value)

    def _await(self, coro: Coroutine[Any, Any, Any], what: str,
               done: Callable[[Any], tuple[Any, ...]] | None = None) -> tuple[Any, ...] | None:
        """Wait for ``coro`` (bridge calls); ``done(result)`` makes the resume values."""
        pending = self._interruptible()
        if pending is not None:
            coro.close()
            return pending
        task = self.host.track(asyncio.ensure_future(coro))
        token = self._block(what, undo=task.cancel)

        def finished(t: asyncio.Future[Any]) -> None:
            if t.cancelled():
                return
            e = t.exception()
            if e is None:
                self.complete(token, lambda: done(t.result()) if done else (True, True))
            elif isinstance(e, errors.MoontideError):
                self.complete(token, lambda: self._err(e))
            else:
                self.complete(token, lambda: self._err(errors.Unavailable(f"{what}: {first_line(e)}")))
        task.add_done_callback(finished)
        return None

    # -- receiving ----------------------------------------------------------------
    def _take(self, channel: str) -> tuple[bool, Any]:
        """(ok, Lua value or Lua error) of a ready channel."""
        mb = self.mailbox
        if channel == "inbox":
            topic, sender, text = mb.take_message(channel)
            self._room()
            return True, self.codec.message(topic, sender, text)
        if channel == "events":
            ev = mb.take_event()
            if ev["kind"] == "pid.cancel":
                self.interrupt = None  # it reads the cancel itself
            return True, self.runtime.to_lua(ev)
        if channel.startswith("topic:"):
            _, _, text = mb.take_message(channel)
            self._room()
            return True, self.codec.decode(text)
        if channel.startswith("message:"):
            topic, sender, text = mb.take_message(channel)
            self._room()
            return True, self.codec.message(topic, sender, text)
        if channel.startswith("timer:"):
            return True, mb.take_timer(channel)
        if channel.startswith("event:"):
            return self.event_take(channel)
        ok, value = mb.future_result(channel)
        return (True, self.runtime.to_lua(value)) if ok else self._err(value)

    def _take_inbox(self, selecting: bool) -> _Inbox:
        message = self.mailbox.take_message("inbox")
        self._room()
        return _Inbox(message, selecting)

    def _room(self) -> None:
        """An inbox slot came free: let the first sender waiting for room in."""
        mb = self.mailbox
        senders = mb.senders
        while senders and len(mb.messages) < self.host.queue_size:
            resume, message = senders.popleft()
            if resume(True):
                mb.messages.append(message)

    def _admit_all(self) -> None:
        mb = self.mailbox
        senders, mb.senders = mb.senders, None
        for resume, message in senders or ():
            if resume(True):
                mb.messages.append(message)

    def poke(self) -> None:
        """Something arrived: wake the process if it waits on a channel that is now ready."""
        channels = self.waiting
        if channels is None or self.exit is not None:
            return
        mb = self.mailbox
        for c in channels:
            if mb.ready(c):
                if c == "inbox":
                    self.wake(self._take_inbox(self.selecting))  # type: ignore[arg-type]
                    return
                if c.startswith("op:"):
                    self.wake((True, c, *mb.take_op(c)))
                    return
                ok, value = self._take(c)
                if not self.selecting:
                    self.wake((ok, value))
                elif ok:
                    self.wake((True, c, value))
                else:
                    self.wake((True, c, None, value))
                return

    def _wait_on(self, channels: tuple[str, ...], selecting: bool) -> tuple[Any, ...] | None:
        mb = self.mailbox
        for c in channels:
            if not mb.known(c):
                return self._err(errors.NotFound(f"no channel {c!r}"))
        if "events" in channels:
            self.traps = True
        for attempt in (0, 1):
            for c in channels:
                if mb.ready(c):
                    if c == "inbox":
                        return self._take_inbox(selecting)  # type: ignore[return-value]
                    if c.startswith("op:"):
                        return (True, c, *mb.take_op(c))
                    ok, value = self._take(c)
                    if not selecting:
                        return ok, value
                    return (True, c, value) if ok else (True, c, None, value)
            if attempt == 0 and mb.senders:
                # About to wait with senders held back by a full inbox: what it waits for may be
                # among theirs (a listened topic). Let them all in rather than wait forever.
                self._admit_all()
            else:
                break
        if "events" not in channels:
            pending = self._interruptible()
            if pending is not None:
                return pending
        self.waiting = channels
        self.selecting = selecting
        self._block(("waiting in select on " if selecting else "waiting in receive on ") + _describe(channels, mb))
        return None

    def accept(self, message: Message) -> bool:
        """Put a message in the inbox if it has room; False when full.

        The bound holds senders back while the process is busy. A process that
        waits on channels, none of them ready, with a full inbox waits for what
        is not in it (a listened topic, an event): then messages come in anyway.
        """
        mb = self.mailbox
        if (len(mb.messages) >= self.host.queue_size or mb.senders) and self.waiting is None:
            return False
        mb.messages.append(message)
        if self.waiting is not None:
            self.poke()
        return True

    def wait_for_room(self, message: Message, resume: Callable[[bool], bool]) -> None:
        """Queue ``message`` behind a full inbox; ``resume(True)`` once it is in (it returns
        False if the sender gave up), ``resume(False)`` if this process exits first."""
        mb = self.mailbox
        if mb.senders is None:
            from collections import deque

            mb.senders = deque()
        mb.senders.append((resume, message))

    def notify(self, event: dict[str, Any]) -> None:
        """Put an event on ``process.events()``."""
        if self.exit is not None:
            return
        self.mailbox.event(event)
        if self.waiting is not None:
            self.poke()

    # -- lifecycle from outside -------------------------------------------------------
    def cancel(self, reason: str | None = None, by: str | None = None) -> None:
        """Ask the process to stop: a pid.cancel event, and a Canceled error from its wait."""
        if self.exit is not None:
            return
        ev: dict[str, Any] = {"kind": "pid.cancel"}
        if by:
            ev["from"] = by
        if reason:
            ev["reason"] = reason
        err = errors.Canceled("canceled" + (f": {reason}" if reason else ""))
        self.mailbox.event(ev)
        if self.state == "waiting":
            if self.waiting is not None and "events" in self.waiting:
                self.poke()
                return
            undo, self.undo = self.undo, None
            if undo is not None:
                undo()
            self.wake(self._err(errors.Canceled(f"canceled while {self.blocked}" + (f": {reason}" if reason else ""))))
        else:
            self.interrupt = err

    def on_exit(self, callback: Callable[[Exit], None]) -> None:
        if self.exit is not None:
            callback(self.exit)
            return
        if self.waiters is None:
            self.waiters = []
        self.waiters.append(callback)

    def drop_waits(self) -> None:
        """Stop what the thread waits for, and its started operations' waits: nothing of them resumes it."""
        undo, self.undo = self.undo, None
        if undo is not None:
            undo()
        for op in (self.op_waits or {}).values():
            if op.undo is not None:
                op.undo()
        self.op_waits = None
        self.waiting = None
        self.token += 1

    def end(self, ex: Exit) -> None:
        """The process is over: free its Lua, tell its links, monitors and waiters."""
        if self.exit is not None:
            return
        self.exit = ex
        self.state = "exited"
        self.blocked = ""
        self.drop_waits()
        self.thread = None
        self.slot = None
        self.close_events()
        self.mailbox.close()
        if self.remote:
            for _, task in self.remote.values():
                task.cancel()
            self.remote = None
        host = self.host
        node = host.node
        host.forget(self)
        if ex.error is not None:
            if ex.error.kind in ("Terminated", "Canceled"):
                log.info("[%s %s] %s", self.pid, self.code.id, first_line(ex.error))
            else:
                log.warning("[%s %s] failed: [%s] %s", self.pid, self.code.id, ex.error.kind, ex.error)
        monitors = self.monitors or ()
        for pid in monitors:
            other = node.actor(pid)
            if other is not None:
                if other.watching:
                    other.watching.discard(self.pid)
                other.notify({"kind": "pid.exit", "from": self.pid, "result": ex.result()})
        for pid in self.links or ():
            other = node.actor(pid)
            if other is None:
                continue
            if other.links:
                other.links.discard(self.pid)
            if ex.error is not None:
                other.link_down(self.pid, ex.error)
            elif pid not in monitors:
                other.notify({"kind": "pid.exit", "from": self.pid, "result": ex.result()})
        for pid in self.watching or ():
            other = node.actor(pid)
            if other is not None and other.monitors:
                other.monitors.discard(self.pid)
        self.links = self.monitors = self.watching = None
        waiters, self.waiters = self.waiters, None
        for cb in waiters or ():
            try:
                cb(ex)
            except Exception:
                log.exception("%s: exit callback failed", self.pid)

    def link_down(self, pid: str, error: errors.MoontideError) -> None:
        """A linked process failed: an event, and death unless this process handles events."""
        if self.exit is not None:
            return
        self.notify({"kind": "pid.link.down", "from": pid, "result": {"error": error_dict(error)}})
        if not self.traps:
            # deferred: a chain of links unwinds through the loop, not the stack
            self.host.loop.call_soon(self.host.kill, self, errors.Terminated(
                f"linked process {pid} failed: {error.message}"))

    # -- ops answered synchronously (host calls) ------------------------------------
    # -- the events and registry modules -------------------------------------------------
    @property
    def subs(self) -> dict[str, Any] | None:
        return self.mailbox.subs

    @subs.setter
    def subs(self, value: dict[str, Any] | None) -> None:
        self.mailbox.subs = value

    def app(self) -> Any:
        return self.host.node.app

    def event_notify(self) -> None:
        with contextlib.suppress(RuntimeError):  # the host's loop is gone: so is this process
            self.host.loop.call_soon_threadsafe(self.poke)

    def op_process_pid(self) -> str:
        return self.pid

    def op_log(self, level: str, message: str, fields: str | None = None) -> None:
        super().op_log(level, f"[{self.pid} {self.code.id}] {message}", fields)

    def op_process_trap_links(self, on: Any = True) -> bool:
        """Handle link-down as an event (also implied by waiting on process.events())."""
        self.traps = bool(on)
        return True

    def op_process_trap_links_get(self) -> bool:
        return self.traps

    def _start_timer(self, entry: list[Any], seconds: float) -> None:
        def fire() -> None:
            entry[0] = time.time_ns()  # a ticker's unread tick is replaced, as Go's ticker drops them
            entry[1] = None if entry[2] is None else self.host.loop.call_later(entry[2], fire)
            self.poke()

        entry[1] = self.host.loop.call_later(seconds, fire)

    def _new_timer(self, seconds: float, interval: float | None) -> str:
        self.seq += 1
        timer_id = f"timer:{self.seq}"
        mb = self.mailbox
        if mb.timers is None:
            mb.timers = {}
        entry: list[Any] = [None, None, interval]
        self._start_timer(entry, seconds)
        mb.timers[timer_id] = entry
        return timer_id

    def op_timer_after(self, ns: Any) -> str:
        return self._new_timer(max(0, int(ns)) / 1e9, None)

    def op_timer_stop(self, timer_id: Any) -> bool:
        """Stop a timer (or ticker) that may still fire: its channel gets nothing more. Whether it could."""
        entry = (self.mailbox.timers or {}).get(str(timer_id))
        if entry is None or entry[1] is None:
            return False
        entry[1].cancel()
        entry[1] = None
        return True

    def op_timer_reset(self, timer_id: Any, ns: Any) -> bool:
        """Start a timer that has not fired over; False (and nothing) once it fired or stopped."""
        entry = (self.mailbox.timers or {}).get(str(timer_id))
        if entry is None or entry[1] is None or entry[2] is not None:
            return False
        entry[1].cancel()
        self._start_timer(entry, max(0, int(ns)) / 1e9)
        return True

    def op_ticker_start(self, ns: Any) -> str:
        return self._new_timer(int(ns) / 1e9, int(ns) / 1e9)

    def op_ticker_stop(self, ticker_id: Any) -> bool:
        return self.op_timer_stop(ticker_id)

    def op_channel_listen(self, topic: Any) -> bool:
        self.mailbox.listen(str(topic))
        return True

    def op_channel_close(self, channel: Any) -> bool:
        """Stop listening to a topic, drop a timer (``time.after(d)`` channels left unread), or unsubscribe."""
        channel = str(channel)
        if channel.startswith("event:"):
            closed = self.event_close(channel)
            if self.waiting is not None:
                self.poke()  # another coroutine waiting on it gets nil, false
            return closed
        timers = self.mailbox.timers
        if timers and channel in timers:
            handle = timers.pop(channel)[1]
            if handle is not None:
                handle.cancel()
            return True
        topic = topic_of(channel)
        if topic is not None and self.mailbox.listening:
            self.mailbox.listening.discard(topic)
            if self.waiting is not None:
                self.poke()
        return True

    def op_channel_poll(self, ids_json: str) -> Any:
        """select with a default case: the first ready channel, without waiting (None: none ready)."""
        channels = json.loads(ids_json)
        mb = self.mailbox
        for c in channels:
            if not mb.known(c):
                raise errors.NotFound(f"no channel {c!r}")
        if "events" in channels:
            self.traps = True
        for c in channels:
            if mb.ready(c):
                ok, value = self._take(c)
                out = self.runtime.to_lua({"id": c, "ok": ok})
                out["value" if ok else "error"] = value
                return out
        return None

    # -- coroutines waiting side by side (modules/_sched.lua) ------------------------
    def op_sched_concurrent(self) -> bool:
        """Several coroutines' waits can be in flight at once here (op.start)."""
        return True

    def op_op_start(self, op: Any, *args: Any) -> str:
        """Start a blocking request beside others: channel ``op:<n>`` is ready when it ends."""
        self.seq += 1
        cid = f"op:{self.seq}"
        started = _Op()
        mb = self.mailbox
        if mb.ops is None:
            mb.ops = {}
        mb.ops[cid] = started
        handler = _BLOCKING.get(str(op))
        if handler is None or op in ("channel.receive", "channel.select"):  # channel waits are the select's own
            started.values = self._err(errors.Unavailable(f"{op} is not available in processes as an operation", retryable=False))
            return cid
        self.detached = started
        try:
            result = handler(self, *args)
        except errors.MoontideError as e:
            result = self._err(e)
        except TypeError as e:
            result = self._err(errors.Invalid(f"{op}: bad arguments ({e})"))
        finally:
            self.detached = None
        if result is not None:
            started.values = result
        return cid

    def op_op_cancel(self, cid: Any) -> bool:
        """Drop a started operation whose coroutine got a Canceled error instead."""
        op = self.mailbox.ops.pop(str(cid), None) if self.mailbox.ops else None
        if op is None:
            return False
        if self.op_waits:
            self.op_waits.pop(op.token, None)
        if op.undo is not None:
            op.undo()
        return True

    def op_funcs_async(self, fid: str, args_json: str, opts_json: str | None = None,
                       ctx_json: str | None = None) -> int:
        fut = self._start_call(fid, args_json, ctx_json)
        self.seq += 1
        mb = self.mailbox
        if mb.futures is None:
            mb.futures = {}
        mb.futures[f"future:{self.seq}"] = fut
        fut.add_done_callback(lambda _: self._from_thread(self.poke))
        return self.seq


    def op_future_cancel(self, handle: Any) -> bool:
        """Cancel a call still running: it reads as Canceled from now on (a call already in its
        thread runs on, unheard)."""
        channel = f"future:{handle}"
        fut = (self.mailbox.futures or {}).get(channel)
        if fut is None or fut.done() or channel in self.mailbox.canceled:
            return False
        fut.cancel()
        self.mailbox.canceled.add(channel)
        if self.waiting is not None:
            self.poke()
        return True

    def op_future_result(self, handle: Any) -> Any:
        """{ok=, value=} or {ok=false, error=} of a done future; None while it runs."""
        channel = f"future:{handle}"
        mb = self.mailbox
        if not (mb.futures and channel in mb.futures):
            raise errors.NotFound(f"no future {handle}")
        if not mb.ready(channel):
            return None
        ok, value = mb.future_result(channel)
        if ok:
            return self.runtime.to_lua({"ok": True, "value": value})
        return self.runtime.to_lua({"ok": False, "error": self.runtime.error_to_lua(value)})

    # -- blocking ops ------------------------------------------------------------------
    def _full(self, ref: Any, what: str) -> str:
        if not isinstance(ref, str) or not ref:
            raise errors.Invalid(f"{what}: expected an entry ID string, got {type(ref).__name__}")
        return ref if ":" in ref else f"{self.code.namespace}:{ref}"

    def _start_call(self, fid: str, args_json: str, ctx_json: str | None) -> concurrent.futures.Future[Any]:
        functions = self.host.node.functions
        full = self._full(fid, "funcs.call")
        if functions is None or full not in functions.codes:
            raise errors.NotFound(f"funcs.call: no function.lua entry {full!r} in this app")
        return self.host.executor.submit(functions.call, full, json.loads(args_json),
                                         context=self.outgoing_context(ctx_json))

    def wait_call(self, fid: str, args_json: str, opts_json: str | None = None,
                  ctx_json: str | None = None) -> tuple[Any, ...] | None:
        pending = self._interruptible()
        if pending is not None:
            return pending
        fut = self._start_call(fid, args_json, ctx_json)
        token = self._block(f"calling {self._full(fid, 'funcs.call')}")

        def done(f: concurrent.futures.Future[Any]) -> None:
            def values() -> tuple[Any, ...]:
                e = f.exception()
                if e is None:
                    return self._ok(f.result())
                if isinstance(e, errors.MoontideError):
                    return self._err(e)
                return self._err(errors.Internal(f"{fid}: {type(e).__name__}: {e}"))
            self._from_thread(self.complete, token, values)

        fut.add_done_callback(done)
        return None

    def op_http_blocking(self) -> bool:
        """The http module asks: here a request is a blocking op (``wait_http_request``), not a host call."""
        return True

    def wait_http_request(self, method: str, url: str, options_json: str | None = None) -> tuple[Any, ...] | None:
        # on the host's loop (an async client): this process waits, the others run
        kw = host_mod.http_arguments(method, url, options_json)
        return self._await(self.host.http(kw), f"waiting for http {method} {url}", done=self._ok)

    def wait_http_client_request(self, method: Any, url: Any, opts_json: str | None = None) -> tuple[Any, ...] | None:
        req = self.http_request(method, url, opts_json)
        return self._await(self.host.http_client(req), f"waiting for http_client {req.method} {req.url}",
                           done=self._ok)

    def wait_http_client_batch(self, requests_json: str) -> tuple[Any, ...] | None:
        reqs = self.http_batch(requests_json)
        return self._await(self.host.http_client(reqs), f"waiting for {len(reqs)} http_client requests",
                           done=self._ok)

    def wait_sleep(self, ns: Any) -> tuple[Any, ...] | None:
        pending = self._interruptible()
        if pending is not None:
            return pending
        seconds = max(0, int(ns)) / 1e9
        handle: list[asyncio.TimerHandle] = []
        token = self._block(f"sleeping {seconds:g}s", undo=lambda: handle[0].cancel())
        handle.append(self.host.loop.call_later(seconds, self.complete, token, (True, True)))
        return None

    def wait_channel_receive(self, channel: Any) -> tuple[Any, ...] | None:
        mb = self.mailbox
        if channel == "inbox" and mb.messages and not mb.listening:
            # the hot path: a receive on the inbox with a message waiting
            message = mb.messages.popleft()
            mb.received += 1
            if mb.senders:
                self._room()
            return _Inbox(message, False)  # type: ignore[return-value]
        return self._wait_on((str(channel),), False)

    def wait_channel_select(self, ids_json: str) -> tuple[Any, ...] | None:
        return self._wait_on(tuple(json.loads(ids_json)), True)

    # -- for ps -------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        state = self.state
        if state == "waiting":
            state = self.blocked
        return {
            "pid": self.pid, "entry": self.code.id, "state": state, "inbox": len(self.mailbox.messages),
            "received": self.mailbox.received, "parent": self.parent, "started": self.started,
            "links": sorted(self.links or ()), "monitored_by": sorted(self.monitors or ()),
        }


def _describe(channels: tuple[str, ...], mb: Mailbox) -> str:
    def name(c: str) -> str:
        topic = topic_of(c)
        if topic is not None:
            return topic + " (listen)"
        op = mb.ops.get(c) if mb.ops else None
        return f"{c} ({op.what or 'running'})" if op is not None else c
    return ", ".join(name(c) for c in channels)


#: op name -> handler; each returns the values to resume the thread with, or None when it waits.
_BLOCKING: dict[str, Callable[..., tuple[Any, ...] | None]] = {
    name[5:].replace("_", "."): getattr(Actor, name) for name in dir(Actor) if name.startswith("wait_")
}
