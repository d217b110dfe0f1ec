"""Search attributes: the names and types a ``temporal.client`` declares, and values typed by them.

Temporal needs each value typed by the attribute's registered type; JSON from
Lua or Python does not say which (a keyword and a text are both strings), so
the ``temporal.client`` entry's ``search_attributes`` field is the one source
of truth. Typing is pure, so it is safe inside workflow code.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

from temporalio.common import SearchAttributeKey, SearchAttributePair, SearchAttributeUpdate, TypedSearchAttributes

from .. import errors

__all__ = ["declared", "to_plain", "typed", "updates"]

_KEYS: dict[str, Callable[[str], Any]] = {
    "keyword": SearchAttributeKey.for_keyword, "text": SearchAttributeKey.for_text,
    "int": SearchAttributeKey.for_int, "double": SearchAttributeKey.for_float,
    "bool": SearchAttributeKey.for_bool, "datetime": SearchAttributeKey.for_datetime,
    "keyword_list": SearchAttributeKey.for_keyword_list,
}


def declared(app: Any, client_id: str) -> dict[str, str]:
    """name -> type of the search attributes ``client_id`` declares."""
    return dict(app.get(client_id).data.get("search_attributes") or {})


def _bad(where: str, name: str, kind: str, value: Any) -> errors.Invalid:
    return errors.Invalid(f"{where} {name!r} ({kind}): expected {_EXPECTED[kind]}, got {json.dumps(value, default=str)}")


_EXPECTED = {"keyword": "a string", "text": "a string", "int": "an integer", "double": "a number",
             "bool": "a boolean", "datetime": "an RFC 3339 time string like \"2026-01-02T03:04:05Z\"",
             "keyword_list": "a list of strings"}


def _value(where: str, name: str, kind: str, value: Any) -> Any:
    if kind in ("keyword", "text") and isinstance(value, str):
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "int" and isinstance(value, (int, float)) and not isinstance(value, bool) and value == int(value):
        return int(value)
    if kind == "double" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "keyword_list" and value == {}:  # an empty Lua table crosses as {}
        return []
    if kind == "keyword_list" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    if kind == "datetime" and isinstance(value, str):
        try:
            at = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise _bad(where, name, kind, value) from None
        return at if at.tzinfo else at.replace(tzinfo=datetime.timezone.utc)
    raise _bad(where, name, kind, value)


def _pairs(values: Any, known: dict[str, str], where: str, client_id: str) -> list[tuple[Any, Any]]:
    if not isinstance(values, dict):
        raise errors.Invalid(f"{where}: expected a table of name = value")
    out = []
    for name, value in sorted(values.items()):
        kind = known.get(name)
        if kind is None:
            raise errors.Invalid(
                f"{where}: {name!r} is not a search attribute of temporal.client {client_id} (declared: "
                f"{', '.join(sorted(known)) or 'none; add them to its search_attributes field'})")
        out.append((_KEYS[kind](name), _value(where, name, kind, value)))
    return out


def typed(values: Any, known: dict[str, str], *, where: str, client_id: str) -> TypedSearchAttributes:
    """Values for a workflow start; errors.Invalid names the attribute and the declared ones."""
    return TypedSearchAttributes([SearchAttributePair(k, v) for k, v in _pairs(values, known, where, client_id)])


def updates(values: Any, known: dict[str, str], *, where: str, client_id: str) -> list[SearchAttributeUpdate]:
    """Values for ``workflow.upsert_search_attributes``."""
    return [k.value_set(v) for k, v in _pairs(values, known, where, client_id)]


def to_plain(attrs: TypedSearchAttributes, known: dict[str, str]) -> dict[str, Any]:
    """The declared attributes an execution carries, as JSON values (times as RFC 3339)."""
    out: dict[str, Any] = {}
    for pair in attrs:
        if pair.key.name in known:
            value = pair.value
            if isinstance(value, datetime.datetime):
                value = value.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
            out[pair.key.name] = list(value) if isinstance(value, (list, tuple)) else value
    return out
