"""Answers to the synchronous calls Lua modules make, common to every context.

``BaseHost`` handles the pure helpers (json, base64, hash, uuid, crypto,
payload, ctx, durations, logs); the workflow host and the function host add
what depends on where the code runs (workflow time and recorded randomness,
or the real clock and network): ``op_now`` and ``random_bytes``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import os
import re
import time
import uuid
from typing import Any, Callable, Iterator

from .. import durations, errors
from . import _app_entries, _crypto, _events, _http_client
from . import runtime as rt_mod

__all__ = ["BaseHost", "FunctionHost", "http_arguments", "http_errors", "http_response", "uuid1", "uuid7"]

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


def _count(value: Any, what: str) -> int:
    """A positive integer from Lua (an integral float too), or Invalid."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise errors.Invalid(f"{what}: length must be a positive integer")
    return value


#: crypto.random's largest request, as in Wippy
MAX_RANDOM = 1 << 20
#: What work done in Python costs in instructions of the budget (~10 ns each), measured:
#: an iteration of PBKDF2 per output block, an FNV byte (a Python loop), JSON Schema per text byte
PBKDF2_CHARGE = {"sha256": 40, "sha512": 90}
FNV_CHARGE, SCHEMA_BYTES_PER_INSTRUCTION = 8, 1
#: per byte of YAML (libyaml and PyYAML building Python objects: ~0.7 us a byte) and of MessagePack
YAML_CHARGE, MSGPACK_CHARGE = 75, 2
#: The UUID text forms uuid.validate/parse accept (Go's uuid.Parse): standard, {braced}, urn:uuid:, 32 hex digits
_UUID_TEXT = re.compile(r"(?i)(?:urn:uuid:)?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})|"
                        r"\{([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\}|([0-9a-f]{32})")
_FNV = {32: (0x811C9DC5, 0x01000193), 64: (0xCBF29CE484222325, 0x100000001B3)}
_VARIANTS = {uuid.RFC_4122: "RFC4122", uuid.RESERVED_NCS: "NCS", uuid.RESERVED_MICROSOFT: "Microsoft",
             uuid.RESERVED_FUTURE: "Future"}
#: UUID v1 time: 100 ns intervals since 1582-10-15
_UUID_EPOCH = 0x01B21DD213814000


def uuid1(unix_ns: int, rand: int) -> str:
    """An RFC 9562 version 1 UUID from a time and 62 random bits (clock sequence, and a random node
    with the multicast bit set, as the RFC asks of a node that is not a MAC address)."""
    ts = unix_ns // 100 + _UUID_EPOCH
    node = (rand & ((1 << 48) - 1)) | (1 << 40)
    clock_seq = (rand >> 48) & 0x3FFF
    return str(uuid.UUID(fields=(ts & 0xFFFFFFFF, (ts >> 32) & 0xFFFF, ((ts >> 48) & 0x0FFF) | 0x1000,
                                 0x80 | (clock_seq >> 8), clock_seq & 0xFF, node)))


def _parse_uuid(text: str, what: str) -> uuid.UUID:
    m = _UUID_TEXT.fullmatch(text)
    if m is None:
        raise errors.Invalid(f"{what}: invalid UUID format")
    return uuid.UUID(next(g for g in m.groups() if g))


class BaseHost:
    """Pure helpers; subclasses add ops by defining ``op_<name>`` (dots as underscores)."""

    def __init__(self, runtime: rt_mod.Runtime, *, logger: logging.Logger | logging.LoggerAdapter[Any] = log) -> None:
        self.runtime = runtime
        self.logger = logger
        self._ops: dict[str, Callable[..., Any]] = {}
        #: the request context (ctx module): JSON values by key, set by whoever started this execution
        self.context: dict[str, Any] = {}

    def __call__(self, op: str, *args: Any) -> Any:
        fn = self._ops.get(op)
        if fn is None:
            fn = getattr(self, "op_" + op.replace(".", "_"), None)
            if fn is None:
                raise errors.Unavailable(f"{op} is not available here", retryable=False)
            self._ops[op] = fn
        return fn(*args)

    def random_bytes(self, n: int) -> bytes:
        """``n`` random bytes: the real ones, or the workflow's recorded ones."""
        raise errors.Unavailable("random values are not available here", retryable=False)

    def op_now(self) -> int:
        raise errors.Unavailable("the clock is not available here", retryable=False)

    def _charge(self, work: int, what: str) -> None:
        """Charge work done in Python to the step's instruction budget; past it, nothing is done."""
        rt = self.runtime
        rt.pending_charge += work
        if work > rt._budget_left():
            raise errors.BudgetExceeded(f"{what}: over the instruction budget")

    def op_events_scope(self) -> bool:
        raise _function_only("events")

    def op_registry_scope(self) -> bool:
        raise _function_only("registry")

    def op_duration(self, text: Any) -> int:
        return durations.parse(text)

    def op_json_decode(self, text: Any) -> Any:
        try:
            return self.runtime.json_to_lua(_text(text, "json.decode"))
        except errors.Invalid as e:  # not JSON: Wippy's kind is Internal; the message names what and where
            raise errors.Internal(e.message, retryable=False) from None

    def op_json_validate(self, schema_text: Any, data_text: Any) -> bool:
        """True, or Invalid naming where the data breaks the schema (or what is wrong with the schema)."""
        import jsonschema

        schema_text, data_text = _text(schema_text, "json.validate schema"), _text(data_text, "json.validate data")
        self._charge((len(schema_text) + len(data_text)) // SCHEMA_BYTES_PER_INSTRUCTION, "json.validate")
        validator = _validator(schema_text)
        try:
            data = json.loads(data_text)
        except ValueError as e:
            raise errors.Invalid(f"json.validate: data is not JSON: {e}") from None
        error = jsonschema.exceptions.best_match(validator.iter_errors(data))
        if error is not None:
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
            raise errors.Invalid(f"json.validate: validation failed: ${where}: {error.message}")
        return True

    def op_base64_encode(self, data: Any) -> str:
        return base64.b64encode(_bytes(data, "base64.encode")).decode()

    def op_base64_decode(self, text: Any) -> bytes:
        try:
            return base64.b64decode(_text(text, "base64.decode"), validate=True)  # bytes reach Lua as they are
        except binascii.Error as e:
            raise errors.Invalid(f"base64.decode: {e}") from None

    def op_hash(self, algo: str, data: Any, raw: bool = False) -> str | bytes:
        h = hashlib.new(algo, _bytes(data, f"hash.{algo}"))
        return h.digest() if raw else h.hexdigest()

    def op_hash_hmac(self, algo: str, key: Any, data: Any, raw: bool = False) -> str | bytes:
        h = hmac.new(_bytes(key, "hmac key"), _bytes(data, "hmac data"), algo)
        return h.digest() if raw else h.hexdigest()

    def op_hash_fnv(self, bits: int, data: Any) -> int:
        """FNV-1 (multiply, then xor), as Go's hash/fnv New32/New64."""
        raw = _bytes(data, f"hash.fnv{bits}")
        self._charge(len(raw) * FNV_CHARGE, f"hash.fnv{bits}")
        h, prime = _FNV[bits]
        mask = (1 << bits) - 1
        for b in raw:
            h = ((h * prime) & mask) ^ b
        return h

    # -- uuid ------------------------------------------------------------------------------
    def op_uuid_v1(self) -> str:
        return uuid1(self.op_now(), int.from_bytes(self.random_bytes(8), "big"))

    def op_uuid_named(self, version: int, namespace: Any, name: Any) -> str:
        ns = _parse_uuid(_text(namespace, f"uuid.v{version}"), f"uuid.v{version}: namespace")
        make = uuid.uuid3 if version == 3 else uuid.uuid5
        return str(make(ns, _bytes(name, f"uuid.v{version}").decode("latin-1")))

    def op_uuid_inspect(self, what: str, text: Any, arg: Any = None) -> Any:
        if what == "validate":
            return isinstance(text, str) and _UUID_TEXT.fullmatch(text) is not None
        u = _parse_uuid(_text(text, f"uuid.{what}"), f"uuid.{what}")
        if what == "version":
            return u.version or 0
        if what == "variant":
            return _VARIANTS[u.variant]
        if what == "format":
            style = arg if isinstance(arg, str) else "standard"
            forms = {"standard": str(u), "simple": u.hex, "urn": u.urn}
            if style not in forms:
                raise errors.Invalid(f"uuid.format: unsupported format {style!r} (standard, simple or urn)")
            return forms[style]
        info: dict[str, Any] = {"version": u.version or 0, "variant": _VARIANTS[u.variant]}
        if u.version == 1:
            info["timestamp"] = (u.time - _UUID_EPOCH) // 10_000_000
            info["node"] = f"{u.node:012x}"
        elif u.version == 7:
            info["timestamp"] = (u.int >> 80) // 1000
        return self.runtime.to_lua(info)

    # -- crypto ----------------------------------------------------------------------------
    def op_crypto_random_bytes(self, n: Any) -> bytes:
        return self.random_bytes(_random_length(n, "crypto.random.bytes"))

    def op_crypto_random_string(self, n: Any, charset: Any = None) -> bytes:
        n = _random_length(n, "crypto.random.string")
        chars = None if charset is None else _bytes(charset, "crypto.random.string charset")
        if chars == b"":
            raise errors.Invalid("crypto.random.string: charset cannot be empty")
        return _crypto.random_string(self.random_bytes(n), chars)

    def op_crypto_hmac(self, algo: str, key: Any, data: Any) -> str:
        return _crypto.hmac_hex(algo, _bytes(key, "crypto.hmac key"), _bytes(data, "crypto.hmac data"))

    def op_crypto_encrypt(self, cipher: str, data: Any, key: Any, aad: Any = None) -> bytes:
        return _crypto.encrypt(cipher, _bytes(data, "data"), _bytes(key, "key"),
                               None if aad is None else _bytes(aad, "aad"), self.random_bytes)

    def op_crypto_decrypt(self, cipher: str, data: Any, key: Any, aad: Any = None) -> bytes:
        return _crypto.decrypt(cipher, _bytes(data, "data"), _bytes(key, "key"),
                               None if aad is None else _bytes(aad, "aad"))

    def op_crypto_jwt_encode(self, claims_json: str, key: Any, alg: Any) -> str:
        claims = json.loads(claims_json)
        if not isinstance(claims, dict):
            raise errors.Invalid("crypto.jwt.encode: payload must be a table of claims (an object), not an array")
        return _crypto.jwt_encode(claims, _bytes(key, "key"), alg)

    def op_crypto_jwt_verify(self, token: Any, key: Any, alg: Any, require_exp: bool = True) -> Any:
        claims = _crypto.jwt_verify(_text(token, "token"), _bytes(key, "key"), alg, bool(require_exp),
                                    self.op_now() / 1e9)
        return self.runtime.to_lua(claims)

    def op_crypto_pbkdf2(self, password: Any, salt: Any, iterations: Any, length: Any, hash_name: Any) -> bytes:
        password, salt = _bytes(password, "password"), _bytes(salt, "salt")
        _crypto.check_pbkdf2(password, salt, iterations, length, hash_name)
        size = hashlib.new(hash_name).digest_size
        self._charge(iterations * -(-length // size) * PBKDF2_CHARGE[hash_name], "crypto.pbkdf2")
        return _crypto.pbkdf2(password, salt, iterations, length, hash_name)

    def op_crypto_compare(self, a: Any, b: Any) -> bool:
        return hmac.compare_digest(_bytes(a, "a"), _bytes(b, "b"))

    # -- ctx ---------------------------------------------------------------------------------
    def op_ctx_get(self, key: str) -> Any:
        if key not in self.context:
            raise errors.NotFound(f"ctx.get: key not found: {key}")
        return self.runtime.to_lua(self.context[key])

    def op_ctx_all(self) -> Any:
        return self.runtime.to_lua(dict(self.context))

    def outgoing_context(self, ctx_json: str | None) -> dict[str, Any]:
        """The context a call or spawn passes on: this execution's, with the caller's with_context values over it."""
        if not ctx_json:
            return self.context
        return {**self.context, **json.loads(ctx_json)}

    # -- payload -----------------------------------------------------------------------------
    def op_payload_encode(self, fmt: str, data_json: str) -> str | bytes:
        """A JSON value (as text) in YAML or MessagePack."""
        value = json.loads(data_json)
        if fmt == "yaml/plain":
            import yaml

            self._charge(len(data_json) * YAML_CHARGE, "payload:transcode")
            return yaml.dump(value, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=True,
                             allow_unicode=True, default_flow_style=False)
        import msgpack

        return msgpack.packb(value, use_bin_type=True)

    def op_payload_decode(self, fmt: str, raw: Any) -> Any:
        """The Lua value a YAML text or MessagePack bytes hold (JSON values only)."""
        if fmt == "yaml/plain":
            import yaml

            text = _text(raw, "yaml")
            self._charge(len(text) * YAML_CHARGE, "payload:data")
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            try:
                if "*" in text and any(isinstance(ev, yaml.AliasEvent) for ev in yaml.parse(text, Loader=loader)):
                    # an alias repeats what it names: a short text could stand for gigabytes
                    raise errors.Invalid("YAML aliases (*name) are not supported")
                value = yaml.load(text, Loader=loader)
            except yaml.YAMLError as e:
                raise errors.Invalid(f"not YAML: {e}") from None
        else:
            import msgpack

            data = _bytes(raw, "msgpack")
            self._charge(len(data) * MSGPACK_CHARGE, "payload:data")
            try:
                value = msgpack.unpackb(data, raw=False, strict_map_key=False)
            except (ValueError, msgpack.UnpackException) as e:
                raise errors.Invalid(f"not MessagePack: {e}") from None
        try:
            text = json.dumps(value, default=_plain, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise errors.Invalid(f"the decoded value has no Lua form: {e}") from None
        return self.runtime.json_to_lua(text)

    def op_log(self, level: str, message: str, fields: str | None = None) -> None:
        extra = json.loads(fields) if fields else {}
        getattr(self.logger, "warning" if level == "warn" else level)(
            message + (" " + json.dumps(extra, sort_keys=True) if extra else ""))


def _function_only(module: str) -> errors.MoontideError:
    return errors.Unavailable(
        f"the {module} module is for functions and processes (as in Wippy), not workflows: what it reads or "
        f"sends would not be in the workflow's history; call a function.lua that uses {module}", retryable=False)


def _plain(value: Any) -> str:
    """What YAML decodes that JSON has no word for: dates and times as ISO 8601 text."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} values (e.g. !!binary) have no Lua form")


def _random_length(n: Any, what: str) -> int:
    n = _count(n, what)
    if n > MAX_RANDOM:
        raise errors.Invalid(f"{what}: length exceeds maximum allowed size (1MB)")
    return n


@functools.lru_cache(maxsize=100)
def _validator(schema_text: str) -> Any:
    """A compiled JSON Schema validator, cached by its text (as Wippy caches by content)."""
    import jsonschema

    try:
        schema = json.loads(schema_text)
        if not isinstance(schema, (dict, bool)):
            raise errors.Invalid("json.validate: schema must be a JSON Schema object")
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except ValueError as e:
        raise errors.Invalid(f"json.validate: schema is not JSON: {e}") from None
    except jsonschema.exceptions.SchemaError as e:
        raise errors.Invalid(f"json.validate: compile schema: {e.message}") from None
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


class FunctionHost(BaseHost):
    """Outside workflows: the real clock, real randomness, the app's entries and event bus."""

    #: the events module's subscriptions of this execution, by channel id (``event:<n>``)
    subs: dict[str, _events.Subscription] | None = None

    def app(self) -> Any:
        """The ``entries.App`` this execution runs in (None: none known, as in unit tests)."""
        return None

    def event_bus(self) -> _events.EventBus:
        app = self.app()
        if app is None:
            raise errors.Internal("events: no app runtime here (missing execution context)",
                                       retryable=False)
        return _events.bus_for(app)

    def event_notify(self) -> None:
        """An event came for one of this execution's subscriptions (called from the sender's thread)."""

    def op_events_scope(self) -> bool:
        return True

    # -- registry (read-only: docs/lua-api.md, "registry") ------------------------------
    def op_registry_scope(self) -> bool:
        return True

    def _entries(self) -> Any:
        app = self.app()
        if app is None:
            raise errors.Internal("registry: no app here (registry not available)",
                                       retryable=False)
        return app

    def op_registry_get(self, entry_id: Any) -> Any:
        _app_entries.parse_id(entry_id)
        entry = self._entries().entries.get(entry_id)
        if entry is None:
            raise errors.NotFound(f"registry.get: no entry {entry_id!r}")
        return self.runtime.to_lua(_app_entries.entry_view(entry))

    def op_registry_find(self, filter_json: str | None = None) -> Any:
        return self.runtime.to_lua(_app_entries.find(self._entries(), filter_json))

    def op_events_subscribe(self, system: Any, kind: Any = None) -> str:
        system = _events.check_text(system, "system pattern")
        if kind is not None:
            kind = _events.check_text(kind, "kind", empty_ok=True)
        sub = self.event_bus().subscribe(system, kind, self.event_notify)
        if self.subs is None:
            self.subs = {}
        cid = f"event:{len(self.subs) + 1}"
        self.subs[cid] = sub
        return cid

    def op_events_send(self, system: Any, kind: Any, path: Any, data_json: str | None = None) -> bool:
        system = _events.check_text(system, "system")
        kind = _events.check_text(kind, "kind")
        path = _events.check_text(path, "path")
        self.event_bus().send(system, kind, path, data_json)
        return True

    def event_close(self, cid: str) -> bool:
        """Unsubscribe (``sub:close()``, ``ch:close()``): what is queued can still be read, then nil, false."""
        sub = (self.subs or {}).get(cid)
        if sub is None:
            return False
        self.event_bus().unsubscribe(sub)
        return True

    def event_take(self, cid: str) -> tuple[bool, Any]:
        """(True, the event as a Lua table), or (False, False) once closed and drained (nil, false in Lua)."""
        text = self.subs[cid].take()  # type: ignore[index]
        if text is None:
            return False, False
        return True, self.runtime.json_to_lua(text)

    def close_events(self) -> None:
        """The execution ended: its subscriptions go."""
        subs, self.subs = self.subs, None
        if subs:
            bus = self.event_bus()
            for sub in subs.values():
                bus.unsubscribe(sub)

    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def op_now(self) -> int:
        return time.time_ns()

    def op_clock(self) -> float:
        return time.process_time()

    def op_uuid_v4(self) -> str:
        return str(uuid.uuid4())

    def op_uuid_v7(self) -> str:
        return uuid7(time.time_ns() // 1_000_000, int.from_bytes(os.urandom(10), "big"))

    #: permissions granted without an entry to read them from (tests and tools)
    permissions: frozenset[str] = frozenset()

    def allows(self, permission: str) -> bool:
        """Whether this execution's entry lists ``permission`` (Wippy's name) in its ``permissions``."""
        if permission in self.permissions:
            return True
        app, code = self.app(), getattr(self, "code", None)
        entry = app.entries.get(code.id) if app is not None and code is not None else None
        return entry is not None and permission in (entry.data.get("permissions") or ())

    def http_request(self, method: Any, url: Any, opts_json: str | None = None) -> _http_client.Request:
        req = _http_client.prepare(method, url, opts_json)
        req.private_ip = self.allows(_http_client.PRIVATE_IP)
        return req

    def http_batch(self, requests_json: str) -> list[_http_client.Request]:
        reqs = _http_client.batch_requests(requests_json)
        private_ip = self.allows(_http_client.PRIVATE_IP)
        for req in reqs:
            req.private_ip = private_ip
        return reqs

    def op_http_client_request(self, method: Any, url: Any, opts_json: str | None = None) -> Any:
        return self.runtime.to_lua(_http_client.send(self.http_request(method, url, opts_json)))

    def op_http_client_batch(self, requests_json: str) -> Any:
        return self.runtime.to_lua(_http_client.batch(self.http_batch(requests_json)))

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
        raise errors.Unavailable(f"http {method} {url}: {e}") from None


def http_response(r: Any) -> dict[str, Any]:
    """The response table Lua gets: ``{status_code=, headers=, body=}``."""
    return {"status_code": r.status_code, "headers": dict(r.headers), "body": r.text}
