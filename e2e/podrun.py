"""Run a Deployment's container as a local process: the testbed has no kubelet.

``pod_process(kubectl, deployment)`` reads the pod template and starts the same
command and arguments with the same environment, its ConfigMap volumes (plain
and projected) written to temporary directories from the ConfigMaps in the
API server, and every mount path in the arguments and environment pointed at
those directories. ``valueFrom`` resolves fieldRef ``metadata.name`` and
secretKeyRef/configMapKeyRef through the API. The executable is taken from the
venv of the running interpreter (``moontide``), as the image would have it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PodProcess", "free_port", "materialize", "pod_process"]

Getter = Callable[[str, str], dict[str, Any] | None]  # (kind plural, name) -> object or None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_configmap(target: Path, cm: dict[str, Any] | None, items: list[dict[str, Any]] | None,
                     optional: bool) -> None:
    if cm is None:
        if optional:
            return
        raise RuntimeError(f"ConfigMap for {target} not found")
    data = cm.get("data") or {}
    pairs = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
    for key, rel in pairs:
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data[key])


def materialize(template: dict[str, Any], get: Getter, root: Path) -> dict[str, Path]:
    """Write the pod's volumes under ``root``; {mountPath: local directory} of the first container."""
    volumes = {v["name"]: v for v in template["spec"].get("volumes") or []}
    container = template["spec"]["containers"][0]
    out: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        vol = volumes[mount["name"]]
        local = root / mount["name"]
        local.mkdir(parents=True, exist_ok=True)
        if "configMap" in vol:
            src = vol["configMap"]
            _write_configmap(local, get("configmaps", src["name"]), src.get("items"), src.get("optional", False))
        elif "projected" in vol:
            for source in vol["projected"]["sources"]:
                src = source["configMap"]
                _write_configmap(local, get("configmaps", src["name"]), src.get("items"), src.get("optional", False))
        elif "secret" in vol:
            secret = get("secrets", vol["secret"]["secretName"]) or {}
            for k, v in (secret.get("data") or {}).items():
                (local / k).write_bytes(base64.b64decode(v))
        out[mount["mountPath"]] = local
    return out


def _remap(text: str, mounts: dict[str, Path]) -> str:
    for mount_path, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        if text == mount_path or text.startswith(mount_path + "/"):
            return str(local) + text[len(mount_path):]
    return text


def _env(container: dict[str, Any], get: Getter, mounts: dict[str, Path], pod_name: str,
         pod_namespace: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOONTIDE_TEMPORAL_")}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = _remap(str(item["value"]), mounts)
            continue
        ref = item.get("valueFrom") or {}
        if "fieldRef" in ref:
            env[item["name"]] = {"metadata.name": pod_name, "metadata.namespace": pod_namespace}.get(
                ref["fieldRef"]["fieldPath"], "")
        elif "secretKeyRef" in ref:
            obj = get("secrets", ref["secretKeyRef"]["name"]) or {}
            env[item["name"]] = base64.b64decode((obj.get("data") or {})[ref["secretKeyRef"]["key"]]).decode()
        elif "configMapKeyRef" in ref:
            obj = get("configmaps", ref["configMapKeyRef"]["name"]) or {}
            env[item["name"]] = (obj.get("data") or {})[ref["configMapKeyRef"]["key"]]
    return env


@dataclass
class PodProcess:
    """A Deployment's container, running locally."""

    proc: subprocess.Popen[bytes]
    argv: list[str]
    env: dict[str, str]
    mounts: dict[str, Path]
    http_port: int
    root: Path
    log: Path
    log_file: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def stop(self, sig: int = 15, timeout: float = 20) -> int:
        """Signal the process (SIGTERM, or e.g. SIGKILL), wait for it, clean up; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None
        shutil.rmtree(self.root, ignore_errors=True)
        return int(self.proc.returncode or 0)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def pod_process(deployment: dict[str, Any], get: Getter, *, pod_name: str = "pod-0",
                log_dir: Path | None = None, extra_env: dict[str, str] | None = None) -> PodProcess:
    """Start the Deployment's first container as a local process (its HTTP port moved to a free one).

    ``--http-port``/``--health-port`` get a free port; ``PodProcess.http_port`` says which.
    """
    template = deployment["spec"]["template"]
    container = template["spec"]["containers"][0]
    root = Path(tempfile.mkdtemp(prefix="moontide-pod-"))
    mounts = materialize(template, get, root)
    exe = container["command"][0]
    local_exe = Path(sys.executable).with_name(exe)
    argv = [str(local_exe) if local_exe.exists() else exe, *container["command"][1:]]
    args = [_remap(a, mounts) for a in container.get("args") or []]
    port = free_port()
    for flag in ("--http-port", "--health-port"):
        if flag in args:
            args[args.index(flag) + 1] = str(port)
    argv += args
    env = _env(container, get, mounts, pod_name, deployment["metadata"].get("namespace") or "default")
    env.update(extra_env or {})
    env.setdefault("MOONTIDE_CODE_STORE", str(mounts.get("/tmp", root / "tmp") / "moontide" / "code"))
    log = (log_dir or root) / f"{pod_name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    return PodProcess(proc, argv, env, mounts, port, root, log, out)


def kubectl_getter(kubectl: list[str], namespace: str) -> Getter:
    def get(plural: str, name: str) -> dict[str, Any] | None:
        r = subprocess.run([*kubectl, "get", plural, name, "-n", namespace, "-o", "json"], capture_output=True,
                           text=True)
        return json.loads(r.stdout) if r.returncode == 0 else None

    return get
