"""Answers to the synchronous calls Lua modules make, common to every context.

``BaseHost`` handles the pure helpers (json, base64, hash, durations, logs);
the workflow host and the function host add what depends on where the code
runs (workflow time and recorded randomness, or the real clock and network).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import os
import time
import uuid
from typing import Any, Callable, Iterator

from .. import durations, errors
from . import runtime as rt_mod

__all__ = ["BaseHost", "FunctionHost", "http_arguments", "http_errors", "http_response", "uuid7"]

log = logging.getLogger("moontide.lua")


def uuid7(unix_ms: int, rand: int) -> str:
    """An RFC 9562 version 7 UUID from a millisecond time and 74 random bits."""
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise errors.Invalid(f"{what}: expected a string, got {type(value).__name__}")
    return value


def _bytes(value: Any, what: str) -> bytes:
    # base64.lua/hash.lua send each byte as the code point of the same value
    # (lupa decodes Lua strings as UTF-8, which binary data is not)
    return _text(value, what).encode("latin-1")


class BaseHost:
    """Pure helpers; subclasses add ops by defining ``op_<name>`` (dots as underscores)."""

    def __init__(self, runtime: rt_mod.Runtime, *, logger: logging.Logger | logging.LoggerAdapter[Any] = log) -> None:
        self.runtime = runtime
        self.logger = logger
        self._ops: dict[str, Callable[..., Any]] = {}

    def __call__(self, op: str, *args: Any) -> Any:
        fn = self._ops.get(op)
        if fn is None:
            fn = getattr(self, "op_" + op.replace(".", "_"), None)
            if fn is None:
                raise errors.MoontideError(f"{op} is not available here", kind="Unavailable", retryable=False)
            self._ops[op] = fn
        return fn(*args)

    def op_duration(self, text: Any) -> int:
        return durations.parse(text)

    def op_json_decode(self, text: Any) -> Any:
        return self.runtime.json_to_lua(_text(text, "json.decode"))  # Invalid names what is wrong, and where

    def op_base64_encode(self, data: Any) -> str:
        return base64.b64encode(_bytes(data, "base64.encode")).decode()

    def op_base64_decode(self, text: Any) -> bytes:
        try:
            return base64.b64decode(_text(text, "base64.decode"), validate=True)  # bytes reach Lua as they are
        except binascii.Error as e:
            raise errors.Invalid(f"base64.decode: {e}") from None

    def op_hash(self, algo: str, data: Any) -> str:
        return hashlib.new(algo, _bytes(data, f"hash.{algo}")).hexdigest()

    def op_hash_hmac(self, algo: str, key: Any, data: Any) -> str:
        return hmac.new(_bytes(key, "hmac key"), _bytes(data, "hmac data"), algo).hexdigest()

    def op_log(self, level: str, message: str, fields: str | None = None) -> None:
        extra = json.loads(fields) if fields else {}
        getattr(self.logger, "warning" if level == "warn" else level)(
            message + (" " + json.dumps(extra, sort_keys=True) if extra else ""))


class FunctionHost(BaseHost):
    """Outside workflows: the real clock, real randomness."""

    def op_now(self) -> int:
        return time.time_ns()

    def op_clock(self) -> float:
        return time.process_time()

    def op_uuid_v4(self) -> str:
        return str(uuid.uuid4())

    def op_uuid_v7(self) -> str:
        return uuid7(time.time_ns() // 1_000_000, int.from_bytes(os.urandom(10), "big"))

    def op_http_request(self, method: str, url: str, options_json: str | None = None) -> Any:
        import httpx

        with http_errors(method, url):
            r = httpx.request(**http_arguments(method, url, options_json))
        return self.runtime.to_lua(http_response(r))


# The http module's request, shared by FunctionHost (synchronous, in a function's
# thread) and process hosts (asynchronous, on their loop: moontide.processes).
def http_arguments(method: str, url: str, options_json: str | None) -> dict[str, Any]:
    """``httpx`` request arguments from ``http.request(method, url, options)``; Invalid naming an unknown option."""
    opts = json.loads(options_json) if options_json else {}
    unknown = set(opts) - {"headers", "body", "json", "query", "timeout"}
    if unknown:
        raise errors.Invalid(f"http: unknown option {sorted(unknown)[0]!r} (known: headers, body, json, query, timeout)")
    timeout = durations.parse(opts["timeout"]) / 1e9 if "timeout" in opts else 30.0
    return {"method": method, "url": url, "headers": opts.get("headers"), "params": opts.get("query"),
            "content": opts.get("body"), "json": opts.get("json"), "timeout": timeout}


@contextlib.contextmanager
def http_errors(method: str, url: str) -> Iterator[None]:
    """httpx's errors as Moontide's: Timeout, or Unavailable naming the request."""
    import httpx

    try:
        yield
    except httpx.TimeoutException as e:
        raise errors.Timeout(f"http {method} {url}: {e}") from None
    except (httpx.HTTPError, ValueError) as e:
        raise errors.MoontideError(f"http {method} {url}: {e}", kind="Unavailable") from None


def http_response(r: Any) -> dict[str, Any]:
    """The response table Lua gets: ``{status_code=, headers=, body=}``."""
    return {"status_code": r.status_code, "headers": dict(r.headers), "body": r.text}
