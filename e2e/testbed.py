"""The test cluster: prepared, started and stopped here, outside pytest (no test timeout covers a build).

The cluster is the single-node Kubernetes of the testbed scripts
(``../shared/k8s-testbed``, or ``$MOONTIDE_K8S_TESTBED_SCRIPTS``): a real
kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy,
containerd + runc, a pod network and a cluster DNS stand-in, all built from
Debian's own packages and cached in ``~/.cache/moontide-k8s-testbed``
(``$MOONTIDE_TESTBED``). Pods run the project's image, built from its
``Dockerfile``. Everything needs root.

    python e2e/testbed.py prepare       # Debian packages (apt-get, only those missing), the control plane
                                        # (build.sh), the node (build-node.sh), the pause image and the
                                        # project image (rebuilt only when its inputs changed)
    python e2e/testbed.py image         # the project image's reference: moontide.local/moontide:<hash>
    python e2e/testbed.py start RUNDIR  # start-cluster.sh: one cluster per machine; RUNDIR/kubeconfig
                                        # (first undoes what a killed cluster left: bridge, mounts, chains)
    python e2e/testbed.py stop RUNDIR   # stop-cluster.sh: stops it and undoes its host changes

The image's tag is a hash of what the Dockerfile copies (``Dockerfile``,
``pyproject.toml``, ``operator/``); it is built from a context of exactly
those files, so the tag names what is inside.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import k8s
import tools

__all__ = ["IMAGE_REPOSITORY", "cache_dir", "cluster", "connect", "image_ref", "load_image", "prepare", "prepared",
           "rundir_of", "scripts_dir", "start", "stop"]

REPO = Path(__file__).resolve().parents[1]
IMAGE_REPOSITORY = "moontide.local/moontide"
#: What the testbed README asks for (containerd ... docker.io), plus what its scripts call (curl, openssl, ip, conntrack).
PACKAGES = ("containerd", "runc", "containernetworking-plugins", "iptables", "dnsmasq-base", "debootstrap",
            "docker.io", "conntrack", "curl", "openssl", "iproute2", "ca-certificates")
#: The image's inputs: what the Dockerfile copies into the build.
IMAGE_INPUTS = ("Dockerfile", "pyproject.toml", "operator")
_SKIP = ("__pycache__", ".egg-info", ".pyc", ".mypy_cache", ".ruff_cache")


def scripts_dir() -> Path:
    return Path(os.environ.get("MOONTIDE_K8S_TESTBED_SCRIPTS") or REPO.parent / "shared" / "k8s-testbed")


def cache_dir() -> Path:
    return Path(os.environ.get("MOONTIDE_TESTBED") or Path.home() / ".cache" / "moontide-k8s-testbed")


def say(msg: str) -> None:
    print(f"testbed: {msg}", flush=True)


def _input_files() -> list[Path]:
    out: list[Path] = []
    for name in IMAGE_INPUTS:
        p = REPO / name
        if p.is_file():
            out.append(p)
            continue
        for f in sorted(p.rglob("*")):
            rel = str(f.relative_to(REPO))
            if f.is_file() and not any(s in rel for s in _SKIP):
                out.append(f)
    return sorted(out)


def image_ref() -> str:
    """``moontide.local/moontide:<12 hex>``: the hash of the image's inputs (paths and contents)."""
    h = hashlib.sha256()
    for f in _input_files():
        h.update(str(f.relative_to(REPO)).encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return f"{IMAGE_REPOSITORY}:{h.hexdigest()[:12]}"


def _missing_packages() -> list[str]:
    missing = []
    for pkg in PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if r.returncode != 0 or "install ok installed" not in r.stdout:
            missing.append(pkg)
    return missing


def _step(what: str, argv: list[str], log: Path, *, env: dict[str, str] | None = None,
          heartbeat: float = 60) -> None:
    """Run a long step with its output in ``log``; a progress line every ``heartbeat`` seconds."""
    say(f"{what} (log {log}) ...")
    t0 = time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            while True:
                try:
                    proc.wait(heartbeat)
                    break
                except subprocess.TimeoutExpired:
                    say(f"  ... {what}: {int(time.monotonic() - t0) // 60} min so far")
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise
    took = time.monotonic() - t0
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        raise SystemExit(f"testbed: {what} failed (exit {proc.returncode}) after {took:.0f} s; last lines of {log}:\n"
                         + "\n".join(tail))
    say(f"{what}: done in {took:.0f} s")


def _background(what: str, argv: list[str], log: Path) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            _step(what, argv, log, heartbeat=120)
        except BaseException as e:  # noqa: B036 - handed to the caller
            errors.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, errors


def _stage_context(into: Path) -> None:
    for f in _input_files():
        dest = into / f.relative_to(REPO)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)


def prepare() -> str:
    """Make everything a cluster run needs; the project image's reference."""
    if os.geteuid() != 0:
        raise SystemExit("testbed: the e2e cluster needs root (containerd, kubelet, network setup); run as root")
    scripts, cache = scripts_dir(), cache_dir()
    if not (scripts / "start-cluster.sh").exists():
        raise SystemExit(f"testbed: the testbed scripts are not in {scripts} (set MOONTIDE_K8S_TESTBED_SCRIPTS)")
    logs = cache / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    missing = _missing_packages()
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _step("apt-get update", ["apt-get", "update", "-q"], logs / "apt-get-update.log", env=env)
        _step(f"apt-get install {' '.join(missing)}", ["apt-get", "install", "-y", "-q", "--no-install-recommends",
                                                       *missing], logs / "apt-get-install.log", env=env)
    else:
        say("Debian packages: all installed")
    # The base rootfs (debootstrap: network and dpkg) while the Go builds take the CPU.
    base: tuple[threading.Thread, list[BaseException]] | None = None
    if not (cache / "images" / "base-rootfs.tar").exists():
        base = _background("base image rootfs (image.sh base: debootstrap bookworm + python3)",
                           ["bash", str(scripts / "image.sh"), "base"], logs / "image-base.log")
    bins = cache / "bin"
    if all((bins / b).exists() for b in ("kube-apiserver", "kube-controller-manager", "etcd")):
        say("control plane: already built")
    else:
        _step("control plane (build.sh: kube-apiserver, kube-controller-manager from Debian's sources; ~10 min cold)",
              ["bash", str(scripts / "build.sh")], logs / "build.log")
    if all((bins / b).exists() for b in ("kubelet", "kube-scheduler", "kube-proxy", "pause")):
        say("node: already built")
    else:
        _step("node (build-node.sh: kubelet, kube-scheduler, kube-proxy, pause; ~7-12 min cold)",
              ["bash", str(scripts / "build-node.sh")], logs / "build-node.log")
    if (cache / "images" / "pause.tar").exists():
        say("pause image: already there")
    else:
        _step("pause image", ["bash", str(scripts / "image.sh"), "pause"], logs / "image-pause.log")
    if base is not None:
        base[0].join()
        if base[1]:
            raise base[1][0]
    ref = image_ref()
    stamp = cache / "images" / "moontide.ref"
    tar = cache / "images" / "moontide.tar"
    if tar.exists() and stamp.exists() and stamp.read_text().strip() == ref:
        say(f"image {ref}: up to date")
    else:
        with tempfile.TemporaryDirectory(prefix="moontide-image-") as ctx:
            _stage_context(Path(ctx))
            _step(f"image {ref} (image.sh build: docker build of the Dockerfile)",
                  ["bash", str(scripts / "image.sh"), "build", ctx, ref, "moontide"], logs / "image-build.log")
        stamp.write_text(ref + "\n")
    say(f"prepared in {time.monotonic() - t0:.0f} s; image {ref}")
    return ref


def _live_cluster_process() -> str | None:
    """A running process of a testbed cluster (one of the cache's binaries or its containerd), if any."""
    bins, me = str(cache_dir() / "bin") + "/", os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        cmd = [a.decode(errors="replace") for a in argv if a]
        if cmd and (cmd[0].startswith(bins) or (Path(cmd[0]).name == "containerd" and "/containerd/" in " ".join(cmd))):
            return f"pid {proc.name}: {' '.join(cmd)[:120]}"
    return None


def _clear_stale_cluster(rundir: Path) -> None:
    """Undo what a killed cluster left on the host (its bridge, mounts, chains), so a new one can start.

    A run killed before its stop (a lost session, SIGKILL) leaves ``mtnode0`` and its mounts but no
    process; start-cluster.sh then refuses with "another cluster seems to run here". A live cluster
    is never touched: that one must be stopped by whoever started it.
    """
    if not Path("/sys/class/net/mtnode0").exists():
        return
    live = _live_cluster_process()
    if live:
        raise RuntimeError(f"another test cluster is running here ({live}); stop it first "
                           "(python e2e/testbed.py stop ITS_RUNDIR)")
    # its RUNDIR: where its mounts are (start-cluster.sh wrote host/existed.before there)
    points = [Path(line.split()[1]) for line in Path("/proc/mounts").read_text().splitlines()]
    stale = sorted({d for m in points for d in m.parents if (d / "host" / "existed.before").is_file()})
    for old in stale or [rundir]:
        say(f"clearing what a killed cluster left on the host ({old}) ...")
        stop(old)


def start(rundir: Path) -> Path:
    """start-cluster.sh RUNDIR; the kubeconfig. On failure the half-started cluster is stopped."""
    _clear_stale_cluster(rundir)
    say(f"starting the cluster in {rundir} ...")
    t0 = time.monotonic()
    r = subprocess.run(["bash", str(scripts_dir() / "start-cluster.sh"), str(rundir)], capture_output=True, text=True)
    if r.returncode != 0:
        stop(rundir)
        raise RuntimeError(f"start-cluster.sh failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    say(f"cluster up in {time.monotonic() - t0:.0f} s")
    return rundir / "kubeconfig"


def stop(rundir: Path) -> None:
    say(f"stopping the cluster in {rundir} ...")
    t0 = time.monotonic()
    subprocess.run(["bash", str(scripts_dir() / "stop-cluster.sh"), str(rundir)], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    say(f"cluster stopped in {time.monotonic() - t0:.0f} s")


@contextlib.contextmanager
def cluster() -> Iterator[Path]:
    """A started cluster (its kubeconfig), stopped on the way out, SIGTERM included."""
    rundir = Path(tempfile.mkdtemp(prefix="moontide-e2e-", dir="/tmp"))
    previous = signal.getsignal(signal.SIGTERM)

    def terminated(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    try:
        yield start(rundir)
    finally:
        stop(rundir)
        for big in ("containerd", "etcd-data", "kubelet"):  # the logs stay
            shutil.rmtree(rundir / big, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


def prepared() -> bool:
    """Whether ``prepare`` made everything a cluster of this code needs."""
    cache = cache_dir()
    stamp = cache / "images" / "moontide.ref"
    return (cache / "bin" / "kubelet").exists() and stamp.exists() and stamp.read_text().strip() == image_ref()


@contextlib.contextmanager
def connect() -> Iterator[k8s.Cluster]:
    """``KUBECONFIG``'s cluster, or a testbed cluster started now and stopped on the way out."""
    bins = tools.binaries()
    given = os.environ.get("KUBECONFIG")
    if given:
        rundir = rundir_of(given)
        if rundir is not None and prepared():
            load_image(rundir)
        yield k8s.Cluster(given, str(bins["kubectl"]), str(bins["helm"]), rundir)
        return
    with cluster() as kubeconfig:
        yield k8s.Cluster(str(kubeconfig), str(bins["kubectl"]), str(bins["helm"]), kubeconfig.parent)


def load_image(rundir: Path) -> None:
    """Import the project image into a running testbed cluster that lacks it (the code changed since it started)."""
    ref = image_ref()
    ctr = ["ctr", "--address", str(rundir / "containerd" / "containerd.sock"), "-n", "k8s.io"]
    have = subprocess.run([*ctr, "images", "ls", "-q", f"name=={ref}"], capture_output=True, text=True)
    if have.returncode == 0 and have.stdout.strip():
        return
    say(f"importing {ref} into the running cluster ...")
    subprocess.run(["bash", str(scripts_dir() / "image.sh"), "load", str(rundir),
                    str(cache_dir() / "images" / "moontide.tar")], check=True, capture_output=True)


def rundir_of(kubeconfig: str) -> Path | None:
    """The testbed RUNDIR of a kubeconfig when it is a cluster of start-cluster.sh here (its containerd socket)."""
    d = Path(kubeconfig).resolve().parent
    return d if (d / "containerd" / "containerd.sock").exists() and (d / "kubelet.pid").exists() else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare", help="install and build what the cluster needs (idempotent)")
    sub.add_parser("image", help="print the project image's reference")
    for name in ("start", "stop"):
        sub.add_parser(name).add_argument("rundir", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "prepare":
        prepare()
    elif args.cmd == "image":
        print(image_ref())
    elif args.cmd == "start":
        print(f"export KUBECONFIG={start(args.rundir.resolve())}")
    else:
        stop(args.rundir.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
