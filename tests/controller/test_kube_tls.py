"""A kubeconfig's inline client certificate and key are loaded without leaving a file behind."""

from __future__ import annotations

import base64
import datetime as dt
import ssl
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from moontide.k8s import kube


def _pair() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "moontide-test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def test_inline_client_credentials_leave_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the key would be written
    cert, key = _pair()
    info = SimpleNamespace(insecure=False, ca_path=None, ca_data=None, certificate_path=None, private_key_path=None,
                           certificate_data=base64.b64encode(cert).decode(), private_key_data=base64.b64encode(key))
    ctx = kube._ssl_context(info)
    assert isinstance(ctx, ssl.SSLContext)
    assert list(tmp_path.iterdir()) == []  # loaded, then gone: no client key on disk
