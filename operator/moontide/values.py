"""JSON values entering Moontide from outside: one depth limit, and decoding that fails as Invalid.

Every value that crosses into Lua or onto Temporal from outside Lua goes through
``decode`` (text or bytes: workflow input, messages, activity and child results,
function input, process messages, CLI arguments, ``json.decode``) or ``encode``
(a value made in Python: ``AppRuntime.spawn``/``send`` arguments, process spawn
arguments). What is not JSON, not valid UTF-8 text (raw bytes, or a lone
surrogate such as ``"\\ud800"``, which Lua cannot hold as text), or nested deeper
than ``MAX_DEPTH`` arrays/objects is an ``errors.Invalid`` naming the problem and
its path (``argument 1.items[3]: ...``, array indexes counted from 1 as in Lua),
never a RecursionError or UnicodeError deep inside a worker. The Lua encoder
(``lua/prelude.lua``) refuses the same depth on the way out, so what Lua sends
always comes back.

Each check depends on the value alone, never on the Python stack, so a workflow
that replays its history decides the same way.
"""

from __future__ import annotations

import json
import re
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue

from . import errors
from .protocol import FROM_METADATA

__all__ = ["MAX_DEPTH", "decode", "encode", "from_payload", "json_payload", "startup_messages"]

#: Arrays/objects nested deeper than this do not cross between Lua, Python, Temporal and the CLI.
#: Python decodes and rebuilds JSON recursively (two frames a level) under a
#: recursion limit of 1,000 shared with the frames around it, so a value at the
#: limit must need well under half of that.
MAX_DEPTH = 256

TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels of arrays/objects, the limit for values crossing between Lua and the host"

_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]', re.S)
_CONTAINERS = frozenset({dict, list, tuple})
#: a lone surrogate as a JSON escape: a high one not followed by a low one, or a low one alone.
#: Pairs pass (Python's json.dumps writes an emoji as one); text that merely looks like an escape
#: (an escaped backslash, then "ud800") matches, and the walk then finds nothing.
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
                                r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_RAW_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_ENCODING = b"json/plain"


def _invalid(where: str, message: str) -> errors.Invalid:
    return errors.Invalid(f"{where}: {message}" if where else message)


class _Constant(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _Constant(name)


def decode(data: str | bytes, path: str, where: str = "") -> Any:
    """The JSON value in ``data`` (UTF-8 bytes or text); Invalid naming the problem and its path
    (``path`` is the root's name; ``where``, if given, goes first: what the value was for)."""
    bad_utf8: UnicodeDecodeError | None = None
    if isinstance(data, str):
        text = data
        surrogates = _has_raw_surrogate(text)
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise _invalid(where, f"{path}: expected JSON text, got a {type(data).__name__}")
    else:
        raw = bytes(data)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            # each bad byte becomes a lone surrogate (U+DC80..U+DCFF), found below with its path
            bad_utf8 = e
            text = raw.decode("utf-8", "surrogateescape")
        surrogates = bad_utf8 is not None
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        deep = _deep_path(text, path)
        if deep is None:  # within the limit: this stack is too deep, a fault of the host, not of the value
            raise
        raise _invalid(where, f"{deep}: {TOO_DEEP}") from None
    except _Constant as e:
        raise _invalid(where, f"{path}: {e} is not a JSON number") from None
    except json.JSONDecodeError as e:
        if bad_utf8 is not None:
            raise _invalid(where, f"{path}: not valid UTF-8 text ({bad_utf8.reason} at byte {bad_utf8.start})") from None
        raise _invalid(where, f"{path}: not JSON: {e}") from None
    _check(text, value, path, surrogates, where)
    return value


def encode(value: Any, path: str, where: str = "") -> str:
    """``value`` (made in Python) as compact JSON text; Invalid naming what cannot cross, and its path."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (RecursionError, TypeError, ValueError) as e:
        raise _invalid(where, _problem(value, path) or f"{path}: {e}") from None
    _check(text, value, path, _has_raw_surrogate(text), where)
    return text


def from_payload(payload: Payload, path: str, where: str = "") -> Any:
    """The JSON value a Temporal payload carries (json/plain, or binary/null for None)."""
    encoding = payload.metadata.get("encoding", b"")
    if encoding == _JSON_ENCODING:
        return decode(payload.data, path, where)
    if encoding == b"binary/null":
        return None
    shown = encoding.decode("utf-8", "replace") or "none"
    raise _invalid(where, f"{path}: a payload with encoding {shown!r}; Moontide values are JSON (json/plain)")


def json_payload(text: str, metadata: dict[str, bytes] | None = None) -> Payload:
    """A json/plain payload holding ``text`` (from ``encode`` or the Lua encoder: already checked)."""
    return Payload(metadata={"encoding": _JSON_ENCODING, **(metadata or {})}, data=text.encode())


def message_payload(payload_json: str, sender: str | None) -> RawValue:
    """A message as one JSON payload; the sender (a pid) rides in the payload's metadata."""
    return RawValue(json_payload(payload_json, {FROM_METADATA: sender.encode()} if sender else None))


def startup_messages(messages_json: str | None) -> list[tuple[str, str]]:
    """A spawner's ``:with_message(topic, ...)`` list (JSON from Lua) as (topic, payload as JSON text)."""
    return [(str(m["topic"]), json.dumps(m.get("payload"))) for m in json.loads(messages_json or "[]")]


def _check(text: str, value: Any, path: str, surrogates: bool, where: str) -> None:
    """Depth and text of ``value``, parsed from or printed as ``text``: the cheap looks first."""
    # fewer brackets than the limit cannot nest past it: most values stop here
    if text.count("[") + text.count("{") > MAX_DEPTH and _past_limit(value):
        raise _invalid(where, f"{_deep_path(text, path) or path}: {TOO_DEEP}")
    if surrogates or ("\\u" in text and _ESCAPED_SURROGATE.search(text)):
        problem = _problem(value, path)
        if problem is not None:
            raise _invalid(where, problem)


def _has_raw_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


# -- depth ----------------------------------------------------------------------------------
def _past_limit(value: Any) -> bool:
    """Whether arrays/objects nest deeper than MAX_DEPTH in ``value`` (level by level: no recursion)."""
    level = [value] if type(value) in _CONTAINERS else []
    for _ in range(MAX_DEPTH):
        if not level:
            return False
        level = [x for c in level for x in (c.values() if type(c) is dict else c) if type(x) in _CONTAINERS]
    return bool(level)


def _deep_path(text: str, root: str) -> str | None:
    """The path of the first array/object in JSON ``text`` nested past the limit (None: none is)."""
    kinds: list[str] = []
    keys: list[Any] = []  # per open container: the index (from 1) or key being read
    last = ""
    for m in _TOKEN.finditer(text):
        t = m.group()
        c = t[0]
        if c in "[{":
            if len(kinds) == MAX_DEPTH:
                return _path_text(root, keys)
            kinds.append(c)
            keys.append(1 if c == "[" else "?")
        elif c in "]}":
            if kinds:
                kinds.pop()
                keys.pop()
        elif c == ",":
            if kinds and kinds[-1] == "[":
                keys[-1] += 1
        elif c == ":":
            if kinds:
                try:
                    keys[-1] = json.loads(last)
                except ValueError:
                    keys[-1] = last
        else:
            last = t
    return None


def _path_text(root: str, keys: list[Any]) -> str:
    """``root`` then ``[i]`` for array indexes and ``.key`` for fields; a long path keeps its ends."""
    parts = [f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys]
    if len(parts) > 12:
        parts = [*parts[:8], f"...({len(parts) - 12} more)...", *parts[-4:]]
    return root + "".join(parts)


# -- finding what cannot cross ------------------------------------------------------------
def _bad_text(s: str) -> str | None:
    """What is wrong with a Python string as text, or None."""
    m = _RAW_SURROGATE.search(s)
    if m is None:
        return None
    cp = ord(m.group())
    if 0xDC80 <= cp <= 0xDCFF:  # surrogateescape: a byte that is not UTF-8
        return f"is not valid UTF-8 (byte 0x{cp - 0xDC00:02x})"
    return f"holds a lone surrogate \\u{cp:04x}, which is not text (UTF-8 cannot encode it)"


def _problem(value: Any, root: str) -> str | None:
    """The first thing in ``value`` that cannot cross as JSON, with its path (iterative: any depth)."""
    stack: list[tuple[Any, list[Any], frozenset[int]]] = [(value, [], frozenset())]
    while stack:
        v, keys, around = stack.pop()
        if isinstance(v, str):
            bad = _bad_text(v)
            if bad:
                return f"{_path_text(root, keys)}: string {bad}"
        elif isinstance(v, (bool, int)) or v is None:
            continue
        elif isinstance(v, float):
            if v != v or v in (float("inf"), float("-inf")):
                return f"{_path_text(root, keys)}: number {v} has no JSON form"
        elif isinstance(v, (dict, list, tuple)):
            if len(keys) == MAX_DEPTH:
                return f"{_path_text(root, keys)}: {TOO_DEEP}"
            if id(v) in around:
                return f"{_path_text(root, keys)}: the value contains itself"
            inner = around | {id(v)}
            if isinstance(v, dict):
                items: list[tuple[Any, Any]] = []
                for k, item in v.items():
                    if not isinstance(k, (str, int, float, bool)) and k is not None:
                        return f"{_path_text(root, keys)}: a field name of type {type(k).__name__}"
                    bad = _bad_text(k) if isinstance(k, str) else None
                    if bad:
                        return f"{_path_text(root, keys)}: field name {bad}"
                    items.append((k, item))
            else:
                items = list(enumerate(v, 1))
            stack.extend((item, [*keys, k], inner) for k, item in reversed(items))
        else:
            return f"{_path_text(root, keys)}: a Python {type(v).__name__} is not a JSON value"
    return None
