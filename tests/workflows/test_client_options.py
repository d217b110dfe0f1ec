"""A temporal.client's Wippy fields (en/temporal/overview.md) reach the Temporal client.

Connection options and credentials become ``Client.connect`` arguments (read from files and
``${env:NAME}`` when the app starts); ``health_check`` checks a real dev server while the app runs
and warns when it stops answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from moontide_testing import dev_server, eventually, running
from moontide import errors
from moontide.runtime import connect_options, load

CLIENT = """
version: "1.0"
namespace: app
entries:
  - name: client
    kind: temporal.client
    address: ADDRESS
{fields}
  - name: worker
    kind: temporal.worker
    client: client
    task_queue: TASK_QUEUE
"""


def client_app(make_app: Callable[..., Path], fields: str, address: str = "127.0.0.1:1",
               files: dict[str, str] | None = None) -> Path:
    return make_app({"app.yaml": CLIENT.format(fields=fields).replace("ADDRESS", address), **(files or {})})


def test_connection_options_and_api_key_file(make_app: Callable[..., Path]) -> None:
    app_dir = client_app(make_app, """\
    namespace: billing
    connection_timeout: 3s
    keep_alive_time: 20s
    keep_alive_timeout: 4s
    auth:
      type: api_key
      api_key_file: secrets/key.txt""", files={"secrets/key.txt": "sk-123\n"})
    app = load(app_dir)
    kw = connect_options(app.get("app:client"), app_dir)
    assert kw["namespace"] == "billing"
    assert kw["connect_timeout"] == timedelta(seconds=3)
    assert (kw["keep_alive_config"].interval_millis, kw["keep_alive_config"].timeout_millis) == (20_000, 4_000)
    assert kw["api_key"] == "sk-123"
    assert "tls" not in kw


def test_mtls_from_pem_text_and_files(make_app: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOONTIDE_TEST_KEY", "-----BEGIN KEY-----\nk\n-----END KEY-----\n")
    app_dir = client_app(make_app, """\
    auth:
      type: mtls
      cert_file: certs/client.pem
      key_pem: ${env:MOONTIDE_TEST_KEY}
    tls:
      enabled: true
      ca_file: certs/ca.pem
      server_name: temporal.example.com""", files={"certs/client.pem": "CERT", "certs/ca.pem": "CA"})
    app = load(app_dir)
    tls = connect_options(app.get("app:client"), app_dir)["tls"]
    assert (tls.client_cert, tls.server_root_ca_cert, tls.domain) == (b"CERT", b"CA", "temporal.example.com")
    assert tls.client_private_key == b"-----BEGIN KEY-----\nk\n-----END KEY-----\n"
    monkeypatch.delenv("MOONTIDE_TEST_KEY")
    with pytest.raises(errors.Invalid, match="app:client: auth.key_pem: environment variable MOONTIDE_TEST_KEY "
                                             "is not set"):
        connect_options(app.get("app:client"), app_dir)


def test_a_missing_credential_file_names_the_field(make_app: Callable[..., Path]) -> None:
    app_dir = client_app(make_app, "    auth: {type: api_key, api_key_file: nowhere.txt}")
    app = load(app_dir)
    with pytest.raises(errors.Invalid, match=r"app:client: auth.api_key_file: cannot read nowhere.txt"):
        connect_options(app.get("app:client"), app_dir)


async def test_health_check_warns_when_the_server_stops_answering(
        make_app: Callable[..., Path], caplog: pytest.LogCaptureFixture) -> None:
    server = contextlib.ExitStack()  # a server of its own, stopped while the app runs
    address = server.enter_context(dev_server())
    with server:
        # its port opens before its frontend is ready to answer
        await eventually(lambda: Client.connect(address), lambda c: True, what="the server answering",
                         tolerate=(RuntimeError,))
        app_dir = client_app(make_app, "    health_check: {enabled: true, interval: 200ms}", address)
        with caplog.at_level(logging.INFO, logger="moontide"):
            async with running(app_dir, address) as rt:
                (check,) = rt._health
                assert check.get_name() == "health check app:client"
                await asyncio.sleep(0.6)  # three checks of a healthy server: no warning
                assert not [r for r in caplog.records if "health check failed" in r.getMessage()]
                server.close()
                failed = await eventually(
                    lambda: [r for r in caplog.records if "health check failed" in r.getMessage()], bool,
                    what="a failed health check logged")
                assert failed[0].levelno == logging.WARNING
                assert failed[0].getMessage().startswith("app:client: Temporal health check failed: ")
                assert not check.done()  # a failed check is a warning, not the end of the app
