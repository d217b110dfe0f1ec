"""The ``moontide`` command: run an app, spawn workflows, reach workflows and processes, check entries,
run the dev server.

Results go to stdout (``-o json|yaml|table``; JSON by default for results, so
they pipe); progress and logs go to stderr. Exit codes (``moontide.errors``):
0 ok, 1 the workflow (or process) failed, 2 bad input (entries, arguments,
unknown pid), 3 Temporal unreachable.

The commands that reach an execution by pid (``send``, ``cancel``,
``terminate``, ``status``, ``result``) and ``list`` need no app: they connect
as Temporal's CLI does (``--address``, ``TEMPORAL_ADDRESS``, ``temporal.toml``
profiles ...; ``moontide.Client``). With ``--app DIR`` they use that app's
``temporal.client`` (its Lua is not compiled) and its embedded server.
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
import re
import signal
import sys
from pathlib import Path
from typing import Any, cast

from . import __version__, errors, values
from .client import Client
from .devserver import SEARCH_ATTRIBUTE_TYPES, DevServer
from .errors import ExecutionFailed, ProcessFailed
from .protocol import is_process_pid
from .runtime import Runtime

__all__ = ["main"]

def _have_module(name: str) -> bool:
    # A subsystem package may exist before (or without) its commands module.
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


_COMMAND_MODULES = [m for m in ("moontide.processes.commands", "moontide.kubernetes_commands") if _have_module(m)]

log = logging.getLogger("moontide")


def _json_arg(text: str) -> Any:
    try:
        return values.decode(text, "value")
    except errors.Invalid as e:
        raise argparse.ArgumentTypeError(e.message) from None


#: What ``-o`` may ask for.
OUTPUTS = ("json", "yaml", "table")


def _output(sp: argparse.ArgumentParser, default: str) -> None:
    sp.add_argument("-o", "--output", choices=OUTPUTS, default=default,
                    help=f"how to print what it answers (default: {default})")


def _app_option(sp: argparse.ArgumentParser, *, required_here: bool) -> None:
    what = ("the app directory (default: the current directory)" if required_here else
            "reach executions through this app's temporal.client and its embedded server (its Lua is not "
            "compiled); without it, connect as Temporal's CLI does")
    sp.add_argument("-a", "--app", metavar="APP_DIR", default=None, help=what)


def _connection(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--temporal", "--address", dest="temporal", metavar="HOST:PORT",
                    help="the Temporal server (default: the app's, else TEMPORAL_ADDRESS or the temporal.toml "
                         "profile, else localhost:7233)")
    sp.add_argument("--namespace", metavar="NS", help="Temporal namespace (default: TEMPORAL_NAMESPACE, the "
                                                      "profile's, or default)")
    sp.add_argument("--profile", metavar="NAME", help="temporal.toml profile (default: TEMPORAL_PROFILE or default)")


def _query_options(sp: argparse.ArgumentParser, *, query: str, limit: str, client: str) -> None:
    """--query, --limit, --client and --temporal of the app commands that reach executions (replay, upgrade)."""
    sp.add_argument("--query", metavar="QUERY", help=f"{query}, e.g. 'WorkflowType=\"app:order\"', newest first")
    sp.add_argument("--limit", type=int, metavar="N", help=limit)
    sp.add_argument("--client", metavar="CLIENT_ID", help=f"{client} (default: the app's only one)")
    sp.add_argument("--temporal", "--address", dest="temporal", metavar="HOST:PORT",
                    help="use this Temporal server instead of the app's client's")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moontide", description="Durable business processes in plain Lua, on Temporal.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logs")
    p.add_argument("--version", action="version", version=f"moontide {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run an app until Ctrl-C: Temporal workers (embedded dev server by default), "
                                     "process hosts, auto_start services")
    run.add_argument("app_dir", metavar="APP_DIR", nargs="?", help="the app directory (default: the current one)")
    _app_option(run, required_here=True)
    run.add_argument("--spawn", metavar="ENTRY_ID",
                     help="also start this workflow.lua or process.lua entry, print its result and exit")
    run.add_argument("--input", type=_json_arg, action="append", default=[], metavar="JSON",
                     help="an argument for --spawn (repeat for more)")
    run.add_argument("--host", metavar="HOST_ID",
                     help="the temporal.worker (or process.host) to spawn on, if the app has several")
    run.add_argument("--id", dest="workflow_id", metavar="WORKFLOW_ID", help="explicit workflow ID for --spawn")
    run.add_argument("--no-ui", action="store_true", help="start the embedded server without its Web UI")
    run.add_argument("--temporal", "--address", dest="temporal", metavar="HOST:PORT",
                     help="use this Temporal server instead of the app's clients / the embedded one")
    _output(run, "json")

    spawn = sub.add_parser("spawn", help="start a workflow of an app on a running server; prints its pid")
    spawn.add_argument("entry", metavar="ENTRY_ID")
    spawn.add_argument("args", nargs="*", metavar="[WORKER_ID] JSON",
                       help="the temporal.worker to start it on (when the app has several), then its arguments")
    spawn.add_argument("--host", "--worker", dest="host", metavar="WORKER_ID",
                       help="the temporal.worker to start it on (default: the app's only one)")
    _app_option(spawn, required_here=True)
    spawn.add_argument("--id", dest="workflow_id", metavar="WORKFLOW_ID",
                       help="explicit workflow ID: spawning it while it runs answers the running one's pid")
    spawn.add_argument("--options", type=_json_arg, default={}, metavar="JSON",
                       help='Wippy\'s spawn options, e.g. \'{"workflow.id_conflict_policy": "fail", '
                            '"workflow.execution_timeout": "1h"}\' (docs/lua-api.md)')
    spawn.add_argument("--temporal", "--address", dest="temporal", metavar="HOST:PORT",
                       help="use this Temporal server instead of the app's clients / its embedded one")
    _output(spawn, "table")

    send = sub.add_parser("send", help="send a message to a workflow (a Temporal signal) or a process (its inbox)")
    send.add_argument("pid", metavar="PID")
    send.add_argument("topic", metavar="TOPIC")
    send.add_argument("payload", type=_json_arg, nargs="?", default=None, metavar="JSON")
    _app_option(send, required_here=False)
    _connection(send)

    for name, what in (("cancel", "ask a workflow or process to cancel (Lua sees pid.cancel and can compensate)"),
                       ("terminate", "terminate a workflow or process at once (no Lua runs)")):
        sp = sub.add_parser(name, help=what)
        sp.add_argument("pid", metavar="PID")
        sp.add_argument("--reason", default=None)
        _app_option(sp, required_here=False)
        _connection(sp)

    status = sub.add_parser("status", help="where a workflow or process is: status, Lua entry, blocking point, "
                                           "pending work")
    status.add_argument("pid", metavar="PID")
    _app_option(status, required_here=False)
    _connection(status)
    _output(status, "table")
    status.add_argument("--json", dest="output", action="store_const", const="json", help="same as -o json")

    result = sub.add_parser("result", help="wait for a workflow or process and print its result")
    result.add_argument("pid", metavar="PID")
    _app_option(result, required_here=False)
    _connection(result)
    _output(result, "json")

    lst = sub.add_parser("list", help="list workflow executions, newest first (like `temporal workflow list`)")
    lst.add_argument("query", metavar="QUERY", nargs="?", default=None,
                     help="a visibility query, e.g. \"ExecutionStatus = 'Running' AND WorkflowType = 'app:order'\"")
    lst.add_argument("--limit", type=int, default=50, metavar="N", help="at most N (default: 50; 0: all)")
    _app_option(lst, required_here=False)
    _connection(lst)
    _output(lst, "table")

    check = sub.add_parser("check", help="validate an app's entries and Lua (every problem at once)")
    check.add_argument("app_dir", metavar="APP_DIR", nargs="?", help="the app directory (default: the current one)")
    _app_option(check, required_here=True)

    replay = sub.add_parser("replay", help="replay recorded workflow histories against the app's current Lua; "
                                           "exit 1 if any would take another path (a check before a deploy)")
    _app_option(replay, required_here=True)
    replay.add_argument("--history", action="append", default=[], metavar="FILE.json",
                        help="a history in Temporal's JSON (temporal workflow show -o json); repeat for more")
    replay.add_argument("--workflow-id", action="append", default=[], metavar="ID",
                        help="the latest run of this workflow, from the server; repeat for more")
    _query_options(replay, query="workflows of a visibility query", limit="replay at most N histories",
                   client="the temporal.client entry to fetch with")

    upg = sub.add_parser("upgrade", help="move pinned workflow executions to the app's newest Lua, each only if its "
                                         "history replays on it; exit 1 if any is refused")
    upg.add_argument("pids", nargs="*", metavar="PID",
                     help="a workflow pid ({client@worker|workflow_id}) or workflow ID; repeat for more")
    _app_option(upg, required_here=True)
    _query_options(upg, query="also the running executions of a visibility query",
                   limit="at most N executions of --query", client="the temporal.client entry for --query and "
                                                                   "workflow IDs")
    _output(upg, "table")

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

    comp = sub.add_parser("completion", help="print a shell completion script: "
                                             "`source <(moontide completion bash)`")
    comp.add_argument("shell", choices=("bash", "zsh", "fish"))

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


def _emit(output: str, value: Any, table: Any = None) -> None:
    """Print ``value`` as ``output`` asks: JSON, YAML, or ``table(value)`` (text for people)."""
    if output == "yaml":
        import yaml

        print(yaml.safe_dump(value, sort_keys=True, allow_unicode=True, default_flow_style=False), end="")
    elif output == "table" and table is not None:
        print(table(value))
    else:
        _print_json(value)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _app_dir(args: argparse.Namespace) -> Path:
    """The app directory of a command that needs one: APP_DIR, --app, else the current directory."""
    return Path(getattr(args, "app_dir", None) or args.app or ".").resolve()


async def _progress(what: str, stop: asyncio.Event) -> None:
    """``waiting for PID ... 12s`` on stderr, updated each second (only when stdout is a terminal)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        while not stop.is_set():
            print(f"\rwaiting for {what} ... {loop.time() - start:.0f}s", end="", file=sys.stderr, flush=True)
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
    finally:
        print("\r\033[K", end="", file=sys.stderr, flush=True)


async def _wait_result(reach: Any, pid: Any, output: str) -> int:
    """Wait for ``pid`` through ``reach`` (a Runtime or a Client) and print its result."""
    stop = asyncio.Event()
    shown = asyncio.create_task(_progress(str(pid), stop)) if sys.stdout.isatty() else None
    try:
        value = await reach.result(pid)
    except ExecutionFailed as e:
        # Only the execution's own failure is exit 1; a malformed pid, an unknown
        # execution or an unreachable server go to main() (exit 2 or 3).
        what = "process" if isinstance(e, ProcessFailed) else "workflow"
        print(f"{what} {pid} failed: [{e.kind}] {e.message}", file=sys.stderr)
        return errors.exit_code(e)
    finally:
        stop.set()
        if shown is not None:
            await shown
    _emit(output, value)
    return 0


async def _run(args: argparse.Namespace) -> int:
    rt = Runtime(_app_dir(args), temporal=args.temporal, serve=True, ui=not args.no_ui)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with rt:
        if args.spawn:
            pid = await rt.spawn(args.spawn, args.host, *args.input, workflow_id=args.workflow_id)
            log.info("spawned %s", pid)
            job: asyncio.Task[int] = asyncio.create_task(_wait_result(rt, pid, args.output))
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


async def _forever(rt: Runtime) -> int:
    await rt.wait()
    return 0


_WORD = re.compile(r"^[A-Za-z0-9_.:/-]+$")


def _spawn_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``spawn ENTRY [WORKER_ID] JSON...``: a first word that is an ID and not JSON names the worker."""
    rest = list(args.args)
    if rest and args.host is None and _WORD.match(rest[0]):
        try:
            json.loads(rest[0])
        except ValueError:
            args.host = rest.pop(0)
    decoded = []
    for text in rest:
        try:
            decoded.append(_json_arg(text))
        except argparse.ArgumentTypeError as e:
            parser.error(f"argument JSON: {e}")
    args.args = decoded


async def _spawn(args: argparse.Namespace) -> int:
    rt = Runtime(_app_dir(args), temporal=args.temporal)
    pid = await rt.spawn(args.entry, args.host, *args.args, workflow_id=args.workflow_id, options=args.options)
    _emit(args.output, {"pid": str(pid)}, lambda v: v["pid"])
    return 0


async def connect(args: argparse.Namespace, pid: str | None = None) -> Client:
    """The Client a pid command uses: the app's temporal.client with --app, else Temporal's own settings.

    With no --app, no --address, TEMPORAL_ADDRESS nor profile address, the embedded server of an app
    running in the current directory is used, if there is one.
    """
    from .client import DEFAULT_ADDRESS, connect_settings, connect_temporal

    if args.app:
        return await _app_client(Path(args.app).resolve(), args.temporal, pid)
    settings = connect_settings(args.temporal, namespace=args.namespace, profile=args.profile)
    address = settings.address
    if address == DEFAULT_ADDRESS and not args.temporal:
        from .devserver import running_address
        from .protocol import STATE_DIR

        address = running_address(Path.cwd() / STATE_DIR) or address
    return Client(await connect_temporal(address, **settings.kw))


async def _app_client(root: Path, override: str | None, pid: str | None) -> Client:
    """The Client of an app's temporal.client (the pid's, else the first), from its entries alone."""
    from . import entries
    from .client import connect_options, connect_temporal
    from .devserver import running_address
    from .protocol import STATE_DIR, WorkflowPid, is_workflow_pid
    from .runtime import process_client_id

    app = entries.load_app(root)
    client_id = (WorkflowPid.parse(pid).client if pid is not None and is_workflow_pid(pid.strip())
                 else process_client_id(app))
    if client_id is None:
        raise errors.Unavailable(f"{root}: the app has no temporal.client", retryable=False)
    entry = app.get(client_id)
    if entry.kind != "temporal.client":
        raise errors.Invalid(f"{client_id} is a {entry.kind}, not a temporal.client")
    address = override or entries.expand_env(entry.data.get("address"), f"{client_id}: address")
    if not address:
        address = running_address(root / STATE_DIR)
        if address is None:
            raise errors.Unavailable(f"no Moontide app is running for {root} (start it with `moontide run {root}`, "
                                     "or pass --temporal HOST:PORT)")
    client = await connect_temporal(str(address), what=client_id, **connect_options(entry, root))
    return Client(client, client_id=client_id)


async def _send(args: argparse.Namespace) -> int:
    await (await connect(args, args.pid)).send(args.pid, args.topic, args.payload)
    return 0


async def _cancel(args: argparse.Namespace) -> int:
    await (await connect(args, args.pid)).cancel(args.pid, args.reason)
    return 0


async def _terminate(args: argparse.Namespace) -> int:
    await (await connect(args, args.pid)).terminate(args.pid, args.reason)
    return 0


async def _status(args: argparse.Namespace) -> int:
    if args.app and not is_process_pid(args.pid.strip()):
        # the app knows more: its newest code for the workflow and the versioning behavior (its Lua is loaded)
        st = await Runtime(Path(args.app).resolve(), temporal=args.temporal).status(args.pid)
    else:
        st = await (await connect(args, args.pid)).status(args.pid)
    _emit(args.output, st, lambda s: _process_status(s) if "entry" in s else _workflow_status(s))
    return 0


def _workflow_status(st: dict[str, Any]) -> str:
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
        newer = f"; newer code in the app: {code['newest'][:12]} (moontide upgrade moves it there)" \
            if code.get("newer_code") else ""
        if code.get("upgraded_to"):
            how += f", upgraded from {str(code['started_with'])[:12]}"
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
    return "\n".join(lines)


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
    return await _wait_result(await connect(args, args.pid), args.pid, args.output)


async def _list(args: argparse.Namespace) -> int:
    client = await connect(args)
    rows = await client.list(args.query, limit=args.limit or None)
    if args.app:  # name each execution by its pid, where a worker of the app serves its task queue
        from . import entries
        from .protocol import WorkflowPid

        app = entries.load_app(Path(args.app).resolve())
        workers = {app.task_queue(w): w.id for w in app.of_kind("temporal.worker")}
        for r in rows:
            if r["task_queue"] in workers and client.client_id:
                r["pid"] = str(WorkflowPid(client.client_id, workers[r["task_queue"]], r["workflow_id"]))

    def table(rs: list[dict[str, Any]]) -> str:
        if not rs:
            return "no workflow executions" + (f" match {args.query!r}" if args.query else "")
        out = [["WORKFLOW ID", "TYPE", "STATUS", "STARTED", "TASK QUEUE"]]
        out += [[r.get("pid") or r["workflow_id"], r["workflow_type"], r["status"], r["start_time"] or "-",
                 r["task_queue"]] for r in rs]
        return _table(out)

    _emit(args.output, rows, table)
    return 0


def _check(args: argparse.Namespace) -> int:
    from .app import load

    root = _app_dir(args)
    app = load(root, literal_ids=True)
    print(f"{getattr(args, 'app_dir', None) or args.app or root}: {len(app.entries)} entries, no problems")
    return 0


def _completion(args: argparse.Namespace) -> int:
    from .completion import script

    print(script(_parser(), args.shell))
    return 0


async def _replay(args: argparse.Namespace) -> int:
    from .workflows import fetch_histories, history_from_file, replay

    if not (args.history or args.workflow_id or args.query):
        raise errors.Invalid("nothing to replay: give --history FILE, --workflow-id ID or --query QUERY")
    rt = Runtime(_app_dir(args), temporal=args.temporal)
    histories = [history_from_file(f) for f in args.history]
    if args.workflow_id or args.query:
        histories += await fetch_histories(await rt.client(rt.client_id(args.client)), workflow_ids=args.workflow_id,
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


async def _upgrade(args: argparse.Namespace) -> int:
    if not (args.pids or args.query):
        raise errors.Invalid("nothing to upgrade: give PIDs or --query QUERY")
    rt = Runtime(_app_dir(args), temporal=args.temporal)
    reports = []
    async for report in rt.upgrade(args.pids, query=args.query, limit=args.limit, client_id=args.client):
        reports.append(report)
        if args.output == "table":
            print(report, flush=True)  # one line each as it is decided: a refusal shows its replay report
    if args.output != "table":
        _emit(args.output, [r.as_dict() for r in reports])
    counts = {o: sum(r.outcome == o for r in reports) for o in ("upgraded", "refused", "skipped")}
    print(f"{len(reports)} executions: " + ", ".join(f"{n} {o}" for o, n in counts.items()), file=sys.stderr)
    return 1 if counts["refused"] else 0


#: Commands that talk to Temporal through a client, then exit (``run`` too: after
#: ``--spawn`` or Ctrl-C it exits the same way, and aborted with -6 without this).
_CLIENT_COMMANDS = frozenset({"run", "spawn", "send", "cancel", "terminate", "status", "result", "devserver",
                              "list", "replay", "upgrade"})


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "spawn":
        _spawn_args(parser, args)
    try:
        code = _main(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # stdout closed early (`moontide ps -o json | head`): what was asked is done; no traceback,
        # and none at exit either (Python flushes stdout again then)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 141
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


def _core_logs_to_logging() -> None:
    """Temporal's core logs (its console: stdout) go to the ``temporalio.core`` logger instead: a replay that
    diverges makes core warn, and stdout is for the report (shown with -v)."""
    from temporalio.runtime import LogForwardingConfig, LoggingConfig, TelemetryConfig, TelemetryFilter
    from temporalio.runtime import Runtime as TemporalRuntime

    TemporalRuntime.set_default(TemporalRuntime(telemetry=TelemetryConfig(logging=LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core"))))))


def _main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not args.verbose:
        # our own lines say what failed; the SDK's add a traceback per attempt
        logging.getLogger("temporalio").setLevel(logging.ERROR)
    try:
        if args.command in ("replay", "upgrade"):
            _core_logs_to_logging()
        builtin = {"run": _run, "spawn": _spawn, "result": _result_cmd, "send": _send, "cancel": _cancel,
                   "terminate": _terminate, "status": _status, "devserver": _devserver, "list": _list,
                   "check": _check, "completion": _completion, "replay": _replay,
                   "upgrade": _upgrade}
        handler = builtin.get(args.command) or args.handler
        out = handler(args)
        return int(cast(int, asyncio.run(out) if inspect.iscoroutine(out) else out))
    except errors.EntryErrors as e:
        print(e.message, file=sys.stderr)
        return 2
    except errors.MoontideError as e:
        print(f"moontide: [{e.kind}] {e.message}", file=sys.stderr)
        return errors.exit_code(e)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
