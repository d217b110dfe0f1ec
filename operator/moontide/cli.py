"""The ``moontide`` command: run an app, spawn workflows, reach workflows and processes, check entries,
run the dev server.

Results go to stdout as JSON (so they pipe); progress and logs go to stderr.
Exit codes: 0 ok, 1 the workflow (or process) failed, 2 bad input (entries,
arguments, unknown pid), 3 Temporal unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import inspect
import json
import logging
import os
import signal
import sys
from typing import Any

from . import errors, values
from .devserver import SEARCH_ATTRIBUTE_TYPES, DevServer
from .runtime import AppRuntime, ProcessFailed, WorkflowFailed

__all__ = ["main"]

def _have_module(name: str) -> bool:
    # A subsystem package may exist before (or without) its commands module.
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


_COMMAND_MODULES = [m for m in ("moontide.processes.commands", "moontide.controller.commands") if _have_module(m)]

log = logging.getLogger("moontide")


def _json_arg(text: str) -> Any:
    try:
        return values.decode(text, "value")
    except errors.Invalid as e:
        raise argparse.ArgumentTypeError(e.message) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moontide", description="Durable business processes in plain Lua, on Temporal.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logs")
    sub = p.add_subparsers(dest="command", required=True)

    def temporal(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--temporal", metavar="HOST:PORT",
                        help="use this Temporal server instead of the app's clients / the embedded one")

    run = sub.add_parser("run", help="run an app until Ctrl-C: Temporal workers (embedded dev server by default), "
                                     "process hosts, auto_start services")
    run.add_argument("app", metavar="APP_DIR")
    run.add_argument("--spawn", metavar="ENTRY_ID",
                     help="also start this workflow.lua or process.lua entry, print its result and exit")
    run.add_argument("--input", type=_json_arg, action="append", default=[], metavar="JSON",
                     help="an argument for --spawn (repeat for more)")
    run.add_argument("--host", metavar="HOST_ID",
                     help="the temporal.worker (or process.host) to spawn on, if the app has several")
    run.add_argument("--id", dest="workflow_id", metavar="WORKFLOW_ID", help="explicit workflow ID for --spawn")
    run.add_argument("--no-ui", action="store_true", help="start the embedded server without its Web UI")
    temporal(run)

    spawn = sub.add_parser("spawn", help="start a workflow on a running app; prints its pid")
    spawn.add_argument("entry", metavar="ENTRY_ID")
    spawn.add_argument("host", metavar="WORKER_ID")
    spawn.add_argument("args", nargs="*", type=_json_arg, metavar="JSON")
    spawn.add_argument("--app", required=True, metavar="APP_DIR")
    spawn.add_argument("--id", dest="workflow_id", metavar="WORKFLOW_ID",
                       help="explicit workflow ID: spawning it while it runs answers the running one's pid")
    spawn.add_argument("--options", type=_json_arg, default={}, metavar="JSON",
                       help='Wippy\'s spawn options, e.g. \'{"workflow.id_conflict_policy": "fail", '
                            '"workflow.execution_timeout": "1h"}\' (docs/lua-api.md)')
    temporal(spawn)

    send = sub.add_parser("send", help="send a message to a workflow (a Temporal signal) or a process (its inbox)")
    send.add_argument("pid", metavar="PID")
    send.add_argument("topic", metavar="TOPIC")
    send.add_argument("payload", type=_json_arg, nargs="?", default=None, metavar="JSON")
    send.add_argument("--app", required=True, metavar="APP_DIR")
    temporal(send)

    for name, what in (("cancel", "ask a workflow or process to cancel (Lua sees pid.cancel and can compensate)"),
                       ("terminate", "terminate a workflow or process at once (no Lua runs)")):
        sp = sub.add_parser(name, help=what)
        sp.add_argument("pid", metavar="PID")
        sp.add_argument("--reason", default=None)
        sp.add_argument("--app", required=True, metavar="APP_DIR")
        temporal(sp)

    status = sub.add_parser("status", help="where a workflow or process is: status, Lua entry, blocking point, "
                                           "pending work")
    status.add_argument("pid", metavar="PID")
    status.add_argument("--app", required=True, metavar="APP_DIR")
    status.add_argument("--json", action="store_true", help="print JSON")
    temporal(status)

    result = sub.add_parser("result", help="wait for a workflow or process and print its result as JSON")
    result.add_argument("pid", metavar="PID")
    result.add_argument("--app", required=True, metavar="APP_DIR")
    temporal(result)

    check = sub.add_parser("check", help="validate an app's entries and Lua (every problem at once)")
    check.add_argument("app", metavar="APP_DIR")

    replay = sub.add_parser("replay", help="replay recorded workflow histories against the app's current Lua; "
                                           "exit 1 if any would take another path (a check before a deploy)")
    replay.add_argument("--app", required=True, metavar="APP_DIR")
    replay.add_argument("--history", action="append", default=[], metavar="FILE.json",
                        help="a history in Temporal's JSON (temporal workflow show -o json); repeat for more")
    replay.add_argument("--workflow-id", action="append", default=[], metavar="ID",
                        help="the latest run of this workflow, from the server; repeat for more")
    replay.add_argument("--query", metavar="QUERY", help="workflows of a visibility query, e.g. "
                                                         "'WorkflowType=\"app:order\"', newest first")
    replay.add_argument("--limit", type=int, metavar="N", help="replay at most N histories")
    replay.add_argument("--client", metavar="CLIENT_ID",
                        help="the temporal.client entry to fetch with (default: the app's only one)")
    temporal(replay)

    dev = sub.add_parser("devserver", help="run Moontide's tuned Temporal dev server in the foreground until "
                                           "Ctrl-C or SIGTERM (the Helm chart's dev server runs this)")
    dev.add_argument("--state-dir", default=".moontide", metavar="DIR",
                     help="where its database (temporal.db) and server.json live (default: .moontide; an app's "
                          ".moontide/ lets `moontide run APP` use this server)")
    dev.add_argument("--ip", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    dev.add_argument("--port", type=int, metavar="PORT",
                     help="frontend (gRPC) port (default: the one last used in DIR if free, else any free one)")
    dev.add_argument("--namespace", default="default", help="Temporal namespace to create (default: default)")
    ui = dev.add_mutually_exclusive_group()
    ui.add_argument("--ui-port", type=int, metavar="PORT",
                    help="Web UI port (default: the one last used in DIR if free, else any free one)")
    ui.add_argument("--headless", action="store_true", help="no Web UI")
    dev.add_argument("--log-level", default="warn", choices=["debug", "info", "warn", "error"],
                     help="the server's log level; it logs to stderr (default: warn)")
    dev.add_argument("--search-attribute", action="append", default=[], type=_search_attribute,
                     metavar="NAME=TYPE", help="register a search attribute; TYPE is one of "
                                               f"{', '.join(SEARCH_ATTRIBUTE_TYPES)} (repeat for more)")

    # Command groups that live with their subsystem: each module's
    # register(sub) adds parsers with set_defaults(handler=fn), where fn(args)
    # returns an exit code (or a coroutine of one).
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def _search_attribute(text: str) -> tuple[str, str]:
    name, _, kind = text.partition("=")
    if not name or kind not in SEARCH_ATTRIBUTE_TYPES:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=TYPE, TYPE one of "
                                         f"{', '.join(SEARCH_ATTRIBUTE_TYPES)}")
    return name, kind


def _devserver_of(args: argparse.Namespace) -> DevServer:
    """The server ``moontide devserver ARGS`` runs (tests/controller/test_helm_chart.py checks the chart's)."""
    from pathlib import Path

    return DevServer(state_dir=Path(args.state_dir), ip=args.ip, port=args.port, namespace=args.namespace,
                     ui=not args.headless, ui_port=args.ui_port, log_level=args.log_level,
                     search_attributes=dict(args.search_attribute), log_to_stderr=True)


def _devserver(args: argparse.Namespace) -> int:
    server = _devserver_of(args)

    def ready(s: DevServer) -> None:
        # stdout: one JSON line, for scripts; stderr: for people
        _print_json_line({"address": s.address, "namespace": s.namespace, "ui": s.ui_url, "pid": s.pid,
                          "db": str(s.db_file)})
        log.info("Temporal dev server at %s (namespace %s%s), database %s; Ctrl-C to stop", s.address, s.namespace,
                 f", Web UI {s.ui_url}" if s.ui_url else "", s.db_file)

    server.serve(ready)
    return 0


def _print_json_line(value: Any) -> None:
    print(json.dumps(value, sort_keys=True, ensure_ascii=False), flush=True)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


async def _result(rt: AppRuntime, pid: Any) -> int:
    try:
        _print_json(await rt.result(pid))
        return 0
    except (WorkflowFailed, ProcessFailed) as e:
        # Only the execution's own failure is exit 1; a malformed pid, an unknown
        # execution or an unreachable server go to main() (exit 2 or 3).
        what = "process" if isinstance(e, ProcessFailed) else "workflow"
        print(f"{what} {pid} failed: [{e.kind}] {e.message}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace) -> int:
    rt = AppRuntime(args.app, temporal=args.temporal, serve=True, ui=not args.no_ui)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with rt:
        if args.spawn:
            pid = await rt.spawn(args.spawn, args.host, *args.input, workflow_id=args.workflow_id)
            log.info("spawned %s", pid)
            job: asyncio.Task[int] = asyncio.create_task(_result(rt, pid))
        else:
            log.info("serving %s; Ctrl-C to stop", rt.root)
            job = asyncio.create_task(_forever(rt))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({job, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if job in done:
            stopper.cancel()
            return job.result()
        job.cancel()
        log.info("stopping: services in reverse order, then processes, then workers (finishing in-flight tasks)")
        return 130


async def _forever(rt: AppRuntime) -> int:
    await rt.wait()
    return 0


async def _spawn(args: argparse.Namespace) -> int:
    rt = AppRuntime(args.app, temporal=args.temporal)
    pid = await rt.spawn(args.entry, args.host, *args.args, workflow_id=args.workflow_id, options=args.options)
    print(pid)
    return 0


async def _send(args: argparse.Namespace) -> int:
    await AppRuntime(args.app, temporal=args.temporal).send(args.pid, args.topic, args.payload)
    return 0


async def _cancel(args: argparse.Namespace) -> int:
    await AppRuntime(args.app, temporal=args.temporal).cancel(args.pid, args.reason)
    return 0


async def _terminate(args: argparse.Namespace) -> int:
    await AppRuntime(args.app, temporal=args.temporal).terminate(args.pid, args.reason)
    return 0


async def _status(args: argparse.Namespace) -> int:
    st = await AppRuntime(args.app, temporal=args.temporal).status(args.pid)
    if args.json:
        _print_json(st)
        return 0
    if "entry" in st:
        print(_process_status(st))
        return 0
    lua = st.get("lua") or {}
    lines = [f"{st['pid']}", f"  status:   {st['status']}", f"  workflow: {st['workflow_type']}",
             f"  started:  {st['start_time']}"]
    if st.get("close_time"):
        lines.append(f"  closed:   {st['close_time']}")
    if lua.get("blocking"):
        lines.append(f"  now:      {lua['blocking']}")
    code = st.get("code") or {}
    if code.get("runs"):
        runs = str(code["runs"])[:12]
        how = f" ({code['versioning_behavior']})" if code.get("versioning_behavior") else ""
        newer = f"; newer code in the app: {code['newest'][:12]} (moontide replay checks it)" \
            if code.get("newer_code") else ""
        lines.append(f"  code:     {runs}{how}{newer}")
    if "messages_waiting" in lua:
        dropped = lua.get("messages_dropped")
        lines.append(f"  messages: {lua['messages_received']} received, {lua['messages_waiting']} not yet read"
                     + (f", {dropped} dropped (could not be decoded)" if dropped else ""))
    if lua.get("unavailable"):
        lines.append(f"  lua:      unavailable ({lua['unavailable']})")
    for p in st["pending_activities"]:
        failure = f", last failure: {p['last_failure']}" if p["last_failure"] else ""
        lines.append(f"  pending:  {p['activity']} (attempt {p['attempt']}, {p['state'].lower()}{failure})")
    lines.append(f"  history:  {st['history_length']} events")
    print("\n".join(lines))
    return 0


def _process_status(st: dict[str, Any]) -> str:
    lines = [f"{st['pid']}", f"  status:   {st['status']}", f"  process:  {st['entry']} on {st['host']}"]
    if st["status"] == "RUNNING":
        lines += [f"  started:  {st['start_time']}", f"  now:      {st['state']}",
                  f"  messages: {st['received']} received, {st['inbox']} not yet read"]
        if st.get("links"):
            lines.append(f"  links:    {', '.join(st['links'])}")
        if st.get("monitored_by"):
            lines.append(f"  watchers: {', '.join(st['monitored_by'])}")
    else:
        lines.append(f"  closed:   {st['close_time']}")
        if st.get("error"):
            lines.append(f"  error:    [{st['error']['kind']}] {st['error']['message']}")
    return "\n".join(lines)


async def _result_cmd(args: argparse.Namespace) -> int:
    return await _result(AppRuntime(args.app, temporal=args.temporal), args.pid)


async def _replay(args: argparse.Namespace) -> int:
    from .workflows import fetch_histories, history_from_file, replay

    if not (args.history or args.workflow_id or args.query):
        raise errors.Invalid("nothing to replay: give --history FILE, --workflow-id ID or --query QUERY")
    rt = AppRuntime(args.app, temporal=args.temporal)
    histories = [history_from_file(f) for f in args.history]
    if args.workflow_id or args.query:
        clients = [e.id for e in rt.app.of_kind("temporal.client")]
        client_id = args.client or (clients[0] if len(clients) == 1 else None)
        if client_id is None:
            raise errors.Invalid(f"the app has {len(clients)} temporal.client entries: choose one with --client "
                                 f"({', '.join(clients) or 'none'})")
        histories += await fetch_histories(await rt.client(client_id), workflow_ids=args.workflow_id,
                                           query=args.query, limit=args.limit)
    if args.limit is not None:
        histories = histories[:args.limit]
    bad = total = 0
    async for report in replay(rt.app, histories):
        total += 1
        bad += not report.ok
        print(report, flush=True)
    print(f"{total} replayed, {total - bad} OK, {bad} not", file=sys.stderr)
    return 1 if bad else 0


#: Commands that talk to Temporal through a client, then exit (``run`` too: after
#: ``--spawn`` or Ctrl-C it exits the same way, and aborted with -6 without this).
_CLIENT_COMMANDS = frozenset({"run", "spawn", "send", "cancel", "terminate", "status", "result", "devserver",
                              "replay"})


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    code = _main(args)
    if argv is None and args.command in _CLIENT_COMMANDS:
        # Run as the `moontide` command: leave without interpreter teardown,
        # where the Temporal client's Rust threads can abort the process
        # after its work is done ("Fatal Python error: PyGILState_Release",
        # exit -6; temporalio/sdk-python#300).
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    return code


def _main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not args.verbose:
        # our own lines say what failed; the SDK's add a traceback per attempt
        logging.getLogger("temporalio").setLevel(logging.ERROR)
    try:
        if args.command == "check":
            from .runtime import load
            from pathlib import Path

            app = load(Path(args.app).resolve(), literal_ids=True)
            print(f"{args.app}: {len(app.entries)} entries, no problems")
            return 0
        builtin = {"run": _run, "spawn": _spawn, "result": _result_cmd, "send": _send, "cancel": _cancel,
                   "terminate": _terminate, "status": _status, "devserver": _devserver, "replay": _replay}
        handler = builtin.get(args.command) or args.handler
        out = handler(args)
        return int(asyncio.run(out) if inspect.iscoroutine(out) else out)
    except errors.EntryErrors as e:
        print(e.message, file=sys.stderr)
        return 2
    except errors.MoontideError as e:
        print(f"moontide: [{e.kind}] {e.message}", file=sys.stderr)
        return 3 if e.kind == "Unavailable" else 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
