"""Credentials: a kubeconfig's inline CA, client certificate and key work, and no key file outlives loading;
Kopf logs in with the same credentials as the client."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import ssl
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lightkube.resources.core_v1 import ConfigMap

from moontide.k8s import kube


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey] | None = None,
          *, ca: bool = False, ip: str | None = None) -> bytes:
    now = dt.datetime.now(dt.timezone.utc)
    issuer_name, issuer_key = issuer or (subject, key)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
    return b.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


class Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (CN ``alice``), all PEM."""

    def __init__(self) -> None:
        ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
        self.ca = _cert("test-ca", ca_key, ca=True)
        self.server = _cert("apiserver", server_key, ("test-ca", ca_key), ip="127.0.0.1")
        self.server_key = _pem_key(server_key)
        self.client = _cert("alice", client_key, ("test-ca", ca_key))
        self.client_key = _pem_key(client_key)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _kubeconfig(path: Path, server: str, pki: Pki, *, key: bytes | None = None) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": server, "certificate-authority-data": _b64(pki.ca)}}],
        "users": [{"name": "alice", "user": {"client-certificate-data": _b64(pki.client),
                                             "client-key-data": _b64(key or pki.client_key)}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "alice", "namespace": "team"}}]}))
    return path


async def _api_server(pki: Pki, tmp: Path, seen: list[str]) -> asyncio.Server:
    """An HTTPS server that requires a client certificate of the CA and answers every GET with a ConfigMap."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    (tmp / "server.pem").write_bytes(pki.server + pki.server_key)
    ctx.load_cert_chain(tmp / "server.pem")
    ctx.load_verify_locations(cadata=pki.ca.decode())
    ctx.verify_mode = ssl.CERT_REQUIRED

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        peer = writer.get_extra_info("peercert")
        seen.append(dict(x[0] for x in peer["subject"])["commonName"])
        name = head.split(" ")[1].rsplit("/", 1)[-1]
        body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": name, "namespace": "team"}, "data": {"k": "v"}}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
        await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)


@pytest.fixture
def tmpdir_watched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary directory every temporary file (lightkube's, Kopf's, ours) would go to."""
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    return where


async def test_inline_client_credentials_work_and_leave_no_file(tmp_path: Path, tmpdir_watched: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pki, seen = Pki(), []
    server = await _api_server(pki, tmp_path, seen)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "config", f"https://127.0.0.1:{port}", pki)))
    loaded: list[tuple[str, int]] = []  # the key file ssl loads, and the mode of its directory then
    real_load = ssl.SSLContext.load_cert_chain

    def load_cert_chain(self: ssl.SSLContext, certfile: Any, keyfile: Any = None, password: Any = None) -> None:
        loaded.append((str(keyfile), Path(keyfile).parent.stat().st_mode & 0o777))
        real_load(self, certfile, keyfile, password)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", load_cert_chain)
    async with server:
        client = kube.Kube()
        ((key_file, mode),) = loaded
        assert mode == 0o700  # the key was in a private directory while ssl read it
        assert not Path(key_file).exists()  # loaded, then gone: no client key on disk
        assert list(tmpdir_watched.iterdir()) == []
        async with client:
            cm = await client.get(ConfigMap, "x", namespace="team")
    assert cm["data"] == {"k": "v"} and seen == ["alice"]  # the server saw the client certificate
    assert client.config.context.namespace == "team"
    assert list(tmpdir_watched.iterdir()) == []


def test_a_key_that_does_not_load_leaves_no_file_either(tmp_path: Path, tmpdir_watched: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pki = Pki()
    other = _pem_key(ec.generate_private_key(ec.SECP256R1()))  # not the certificate's key
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "config", "https://127.0.0.1:1", pki, key=other)))
    with pytest.raises(ssl.SSLError) as caught:
        kube.Kube()
    assert caught.tb is not None  # the error (and its frames) still alive, as where it is logged or reported
    assert list(tmpdir_watched.iterdir()) == []


def test_kopf_logs_in_as_the_client_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pki = Pki()
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "config", "https://127.0.0.1:6443", pki)))
    info = kube.login_info()
    config = kube.kube_config()
    assert info.server == config.cluster.server == "https://127.0.0.1:6443"
    assert base64.b64decode(info.ca_data) == pki.ca
    assert base64.b64decode(info.certificate_data) == pki.client
    assert base64.b64decode(info.private_key_data) == pki.client_key
    assert info.default_namespace == "team" and info.token is None


def test_kubeconfig_files_merge_as_kubectl_merges_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def write(name: str, **conf: Any) -> str:
        (tmp_path / name).write_text(yaml.safe_dump(conf))
        return str(tmp_path / name)

    first = write("a", **{"current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k",
                                                                                      "user": "u"}}],
                          "clusters": [{"name": "k", "cluster": {"server": "https://first:6443"}}]})
    second = write("b", **{"current-context": "other",
                           "clusters": [{"name": "k", "cluster": {"server": "https://second:6443"}}],
                           "users": [{"name": "u", "user": {"token": "t0ken"}}]})
    monkeypatch.setenv("KUBECONFIG", f"{first}:{tmp_path / 'missing'}:{second}")
    config = kube.kube_config()
    assert config.context_name == "c" and config.cluster.server == "https://first:6443"
    assert config.user is not None and config.user.token == "t0ken"
    info = kube.login_info()
    assert (info.server, info.token, info.scheme) == ("https://first:6443", "t0ken", "Bearer")


def test_a_service_account_token_is_read_from_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lightkube.config.kubeconfig import KubeConfig

    (tmp_path / "token").write_text("first\n")
    (tmp_path / "namespace").write_text("ops\n")
    (tmp_path / "ca.crt").write_bytes(Pki().ca)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    real = KubeConfig.from_service_account
    monkeypatch.setattr(KubeConfig, "from_service_account", classmethod(lambda cls: real(tmp_path)))
    assert kube.kube_config().context.namespace == "ops"
    (tmp_path / "token").write_text("rotated\n")  # the kubelet rotates it: Kopf's next login reads the new one
    info = kube.login_info()
    assert (info.server, info.token, info.default_namespace) == ("https://10.96.0.1:443", "rotated", "ops")
    assert info.ca_path == str(tmp_path / "ca.crt")


def test_an_exec_plugin_gives_kopf_and_the_client_one_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from lightkube.config.client_adapter import user_auth

    plugin = tmp_path / "plugin.py"
    plugin.write_text("import json; print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1', "
                      "'kind': 'ExecCredential', 'status': {'token': 'from-plugin'}}))")
    (tmp_path / "config").write_text(yaml.safe_dump({
        "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                                                   "command": sys.executable, "args": [str(plugin)]}}}]}))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    assert kube.login_info().token == "from-plugin"
    config = kube.kube_config()
    assert config.user is not None and type(user_auth(config.user)).__name__ == "ExecAuth"  # the client runs it too
