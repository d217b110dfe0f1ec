"""The commands this package adds to ``moontide``; import-time layering."""

from __future__ import annotations

import argparse
import subprocess
import sys

from moontide import kubernetes_commands
from moontide.tools import crds


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    kubernetes_commands.register(p.add_subparsers(dest="command"))
    return p


def test_commands_are_registered_with_handlers() -> None:
    p = _parser()
    for argv in (["operator", "-n", "a"], ["worker", "--bundle", "/b"], ["service", "--bundle", "/b"],
                 ["manifests", "app"], ["crds"]):
        args = p.parse_args(argv)
        assert callable(args.handler), argv


def test_crds_command_prints_every_crd(capsys: object) -> None:
    args = _parser().parse_args(["crds"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert out == "---\n".join(crds.files().values())


def test_the_controller_does_not_load_lupa_or_the_temporal_worker_at_import() -> None:
    code = ("import sys; import moontide.kubernetes_commands, moontide.controller.handlers, "
            "moontide.controller.reconciler, moontide.controller.spawning, moontide.tools.crds, "
            "moontide.tools.manifests, moontide.k8s.bundle, moontide.controller.operator_cmd, "
            "moontide.pod.serve; "
            "bad = [m for m in sys.modules if m.startswith(('lupa', 'temporalio.worker', 'moontide.lua', "
            "'moontide.workflows', 'moontide.runtime'))]; print(bad); assert not bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
