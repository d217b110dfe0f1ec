"""The public Python API: what ``moontide`` exports is frozen here (a change to it is a decision, made
by editing this list), a type checker sees real types, and the error tree is one table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import moontide
from moontide import errors, failures

ROOT = Path(__file__).resolve().parents[1]

EXPORTS = ["AppRuntime", "Client", "MoontideError", "Pid", "ProcessFailed", "ProcessPid", "Runtime",
           "WorkflowFailed", "WorkflowPid", "errors", "load", "parse_pid", "testing"]


def test_the_exports_are_frozen() -> None:
    assert sorted(moontide.__all__) == EXPORTS
    for name in EXPORTS:
        assert getattr(moontide, name) is not None, name
        assert name in dir(moontide)
    assert moontide.AppRuntime is moontide.Runtime
    assert moontide.Pid is moontide.WorkflowPid
    with pytest.raises(AttributeError):
        moontide.App  # type: ignore[attr-defined]  # noqa: B018 - a name the old docstring promised


def test_a_type_checker_sees_the_exports_typed(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import moontide\n"
                     "reveal_type(moontide.Client.connect)\n"
                     "reveal_type(moontide.Runtime)\n"
                     "reveal_type(moontide.parse_pid)\n"
                     "reveal_type(moontide.testing.running)\n")
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent", str(probe)],
                       capture_output=True, text=True, cwd=ROOT)
    revealed = [ln for ln in r.stdout.splitlines() if "Revealed type" in ln]
    assert len(revealed) == 4, r.stdout + r.stderr
    assert not any('"Any"' in ln for ln in revealed), revealed
    assert "moontide.client.Client" in revealed[0], revealed


def test_mypy_is_clean_and_strict_on_the_public_modules() -> None:
    # the settings (strict modules, the controller left out while it is split) are pyproject.toml's [tool.mypy]
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr


def test_every_kind_is_a_class_with_its_retry_meaning() -> None:
    for kind in errors.KINDS:
        e = errors.of_kind(kind, "m")
        assert type(e) is not errors.MoontideError and e.kind == kind, kind
        assert type(e).__name__ == kind
        assert isinstance(e.retryable, bool)
    assert errors.of_kind("Declined", "m").kind == "Declined"  # Lua's own kinds keep their name
    assert errors.of_kind(None, "m").kind == "Internal"
    assert not errors.of_kind("NotFound", "m").retryable and errors.of_kind("Unavailable", "m").retryable
    assert errors.of_kind("Unavailable", "m", retryable=False).retryable is False
    assert isinstance(errors.NotReady("no bundle yet", delay=2), errors.Unavailable)


def test_exit_codes_come_from_the_tree() -> None:
    assert errors.exit_code(errors.WorkflowFailed("x", kind="Declined")) == 1
    assert errors.exit_code(errors.Unavailable("x")) == 3
    assert errors.exit_code(errors.of_kind("Unavailable", "x")) == 3
    assert errors.exit_code(errors.Invalid("x")) == 2
    assert errors.exit_code(errors.NotFound("x")) == 2
    assert errors.exit_code(ValueError("x")) == 2
    assert errors.condition_reason(errors.Timeout("x")) == "Timeout"


def test_temporal_failures_map_both_ways() -> None:
    from temporalio.exceptions import ApplicationError, CancelledError, TerminatedError

    app = failures.application_error(errors.NotFound("gone", details={"id": 1}))
    assert (app.type, app.non_retryable, app.message, list(app.details)) == ("NotFound", True, "gone", [{"id": 1}])
    back = failures.error_of(app)
    assert type(back) is errors.NotFound and back.details == {"id": 1}
    assert failures.error_of(ApplicationError("x", type="Unavailable")).retryable is True
    assert type(failures.error_of(CancelledError("c"))) is errors.Canceled
    assert type(failures.error_of(TerminatedError("t"))) is errors.Terminated
    failed = failures.workflow_failed(TerminatedError("t"))
    assert (type(failed), failed.kind, failed.retryable) == (errors.WorkflowFailed, "Terminated", False)


def test_the_error_tree_is_drawn_with_every_class() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, errors.MoontideError) and obj is not errors.MoontideError:
            assert f"── {name} " in doc or f"── {name}\n" in doc, name
    assert "\n    MoontideError " in doc
