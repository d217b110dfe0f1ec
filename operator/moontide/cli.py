"""The ``moontide`` command: run an app, spawn workflows, read results, check entries.

Results go to stdout as JSON (so they pipe); progress and logs go to stderr.
Exit codes: 0 ok, 1 the workflow failed, 2 bad input (entries, arguments),
3 Temporal unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from typing import Any

from . import errors
from .runtime import AppRuntime

__all__ = ["main"]

log = logging.getLogger("moontide")


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moontide", description="Durable business processes in plain Lua, on Temporal.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logs")
    sub = p.add_subparsers(dest="command", required=True)

    def temporal(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--temporal", metavar="HOST:PORT",
                        help="use this Temporal server instead of the app's clients / the embedded one")

    run = sub.add_parser("run", help="run an app (embedded Temporal dev server by default) until Ctrl-C")
    run.add_argument("app", metavar="APP_DIR")
    run.add_argument("--spawn", metavar="ENTRY_ID", help="also start this workflow, print its result and exit")
    run.add_argument("--input", type=_json_arg, action="append", default=[], metavar="JSON",
                     help="an argument for --spawn (repeat for more)")
    run.add_argument("--host", metavar="WORKER_ID", help="the temporal.worker to spawn on (if the app has several)")
    run.add_argument("--id", dest="workflow_id", metavar="WORKFLOW_ID", help="explicit workflow ID for --spawn")
    run.add_argument("--no-ui", action="store_true", help="start the embedded server without its Web UI")
    temporal(run)

    spawn = sub.add_parser("spawn", help="start a workflow on a running app; prints its pid")
    spawn.add_argument("entry", metavar="ENTRY_ID")
    spawn.add_argument("host", metavar="WORKER_ID")
    spawn.add_argument("args", nargs="*", type=_json_arg, metavar="JSON")
    spawn.add_argument("--app", required=True, metavar="APP_DIR")
    spawn.add_argument("--id", dest="workflow_id", metavar="WORKFLOW_ID")
    temporal(spawn)

    result = sub.add_parser("result", help="wait for a workflow and print its result as JSON")
    result.add_argument("pid", metavar="PID")
    result.add_argument("--app", required=True, metavar="APP_DIR")
    temporal(result)

    check = sub.add_parser("check", help="validate an app's entries and Lua (every problem at once)")
    check.add_argument("app", metavar="APP_DIR")
    return p


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


async def _result(rt: AppRuntime, pid: Any) -> int:
    try:
        _print_json(await rt.result(pid))
        return 0
    except errors.MoontideError as e:
        print(f"workflow {pid} failed: [{e.kind}] {e.message}", file=sys.stderr)
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
        log.info("stopping: finishing in-flight tasks")
        return 130


async def _forever(rt: AppRuntime) -> int:
    await rt.wait()
    return 0


async def _spawn(args: argparse.Namespace) -> int:
    rt = AppRuntime(args.app, temporal=args.temporal)
    pid = await rt.spawn(args.entry, args.host, *args.args, workflow_id=args.workflow_id)
    print(pid)
    return 0


async def _result_cmd(args: argparse.Namespace) -> int:
    return await _result(AppRuntime(args.app, temporal=args.temporal), args.pid)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not args.verbose:
        # our own lines say what failed; the SDK's add a traceback per attempt
        logging.getLogger("temporalio").setLevel(logging.ERROR)
    try:
        if args.command == "check":
            from .runtime import load
            from pathlib import Path

            app = load(Path(args.app).resolve())
            print(f"{args.app}: {len(app.entries)} entries, no problems")
            return 0
        command = {"run": _run, "spawn": _spawn, "result": _result_cmd}[args.command]
        return asyncio.run(command(args))
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
