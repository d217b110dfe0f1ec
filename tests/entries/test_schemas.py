"""The entry schemas: valid JSON schemas, Kubernetes-structural, described, and their defaults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from moontide import durations
from moontide.entries import (
    FILE_SCHEMA,
    KINDS,
    LIFECYCLE_KINDS,
    LUA_KINDS,
    MODULES,
    REFERENCES,
    SCHEMAS,
    apply_defaults,
)

FORBIDDEN = {"oneOf", "anyOf", "allOf", "not", "$ref", "$defs", "if", "then", "else", "uniqueItems"}


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any], bool]]:
    """Every schema node with its path and whether it is a field (property, item or map value)."""
    yield path, schema, bool(path)
    for name, sub in schema.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}.*")


def test_kinds() -> None:
    assert set(KINDS) == {
        "function.lua",
        "workflow.lua",
        "process.lua",
        "library.lua",
        "process.host",
        "process.service",
        "temporal.client",
        "temporal.worker",
    }
    assert LUA_KINDS == {"function.lua", "workflow.lua", "process.lua", "library.lua"}
    assert set(REFERENCES) == set(KINDS)


@pytest.mark.parametrize("kind", [*KINDS, "<file>"])
def test_schema_is_valid_draft_2020_12(kind: str) -> None:
    Draft202012Validator.check_schema(SCHEMAS.get(kind, FILE_SCHEMA))


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_structural_and_described(kind: str) -> None:
    for path, node, is_field in nodes(SCHEMAS[kind]):
        assert not FORBIDDEN & set(node), f"{kind} {path}: {FORBIDDEN & set(node)}"
        if node.get("x-kubernetes-preserve-unknown-fields") is not True:
            assert "type" in node, f"{kind} {path} has no type"
        if is_field:
            assert node.get("description"), f"{kind} {path} has no description"
        if node.get("type") == "object" and "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            assert node.get("additionalProperties") is False, f"{kind} {path} allows extra fields"
        if "default" in node:
            Draft202012Validator(node).validate(node["default"])


@pytest.mark.parametrize("kind", KINDS)
def test_name_and_kind_are_not_fields(kind: str) -> None:
    assert not {"name", "kind"} & set(SCHEMAS[kind]["properties"])


def test_modules_per_kind() -> None:
    # Wippy's: process and channel everywhere (also globals), ctx and crypto too; workflow only in workflows
    assert "http" not in MODULES["workflow.lua"]
    for kind in ("function.lua", "workflow.lua", "process.lua"):
        assert {"funcs", "time", "process", "channel", "ctx", "crypto", "uuid", "json", "errors"} <= set(MODULES[kind])
    assert set(MODULES["process.lua"]) == set(MODULES["function.lua"])
    assert set(MODULES["workflow.lua"]) - set(MODULES["function.lua"]) == {"workflow"}
    assert "env" not in MODULES["function.lua"]
    assert set(MODULES["library.lua"]) == set().union(*(MODULES[k] for k in LUA_KINDS - {"library.lua"}))
    for kind in LUA_KINDS:
        assert SCHEMAS[kind]["properties"]["modules"]["items"]["enum"] == list(MODULES[kind])
        assert SCHEMAS[kind]["required"] == ["source"]


def test_method_only_on_runnable_lua_kinds() -> None:
    assert "method" not in SCHEMAS["library.lua"]["properties"]
    for kind in ("function.lua", "workflow.lua", "process.lua"):
        assert SCHEMAS[kind]["properties"]["method"]["default"] == ""


def test_lifecycle_fields_only_where_they_belong() -> None:
    for kind in KINDS:
        assert ("lifecycle" in SCHEMAS[kind]["properties"]) == (kind in LIFECYCLE_KINDS or kind == "process.host")
    # a host's lifecycle is how it stops, nothing a service could depend on or restart (it always
    # starts with the app: Wippy's auto_start, accepted when true)
    assert set(SCHEMAS["process.host"]["properties"]["lifecycle"]["properties"]) == {"auto_start", "stop_timeout"}


def test_duration_defaults_parse() -> None:
    for kind in KINDS:
        for path, node, _ in nodes(SCHEMAS[kind]):
            if node.get("pattern") == durations.PATTERN and "default" in node:
                # 0 only where it means "none" or "the SDK's default", as in Wippy
                zero_ok = path.rsplit(".", 1)[-1] in {
                    "worker_stop_timeout", "deadlock_detection_timeout", "max_heartbeat_throttle_interval",
                    "default_heartbeat_throttle_interval"}
                assert durations.parse(node["default"]) > 0 or zero_ok, f"{kind} {path}"


def test_apply_defaults_fills_absent_nested_objects() -> None:
    data = apply_defaults(SCHEMAS["temporal.worker"], {"client": "c"})
    assert data["client"] == "c"
    assert "task_queue" not in data  # computed by the loader, not a schema default
    assert data["lifecycle"]["restart"] == {
        "initial_delay": "1s",
        "max_delay": "90s",
        "backoff_factor": 2.0,
        "jitter": 0.1,
        "max_attempts": 0,
    }
    assert data["worker_options"]["sticky_schedule_to_start_timeout"] == "1s"
    assert data["worker_options"]["instruction_budget"] == 20_000_000
    assert data["worker_options"]["memory_limit_mb"] == 64
    Draft202012Validator(SCHEMAS["temporal.worker"]).validate(data)


def test_apply_defaults_keeps_given_values_and_copies() -> None:
    given = {"lifecycle": {"restart": {"max_attempts": 3}}, "auth": {"type": "mtls"}}
    data = apply_defaults(SCHEMAS["temporal.client"], given)
    assert data["lifecycle"]["restart"]["max_attempts"] == 3
    assert data["lifecycle"]["restart"]["max_delay"] == "90s"
    assert data["auth"] == {"type": "mtls"}
    assert data["tls"] == {"enabled": False, "insecure_skip_verify": False}
    assert "embedded" not in data and "address" not in data
    assert given == {"lifecycle": {"restart": {"max_attempts": 3}}, "auth": {"type": "mtls"}}
    data["lifecycle"]["depends_on"].append("x")
    assert SCHEMAS["temporal.client"]["properties"]["lifecycle"]["properties"]["depends_on"]["default"] == []


def test_apply_defaults_without_a_default_on_the_parent() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "object", "properties": {"b": {"type": "integer", "default": 7}}},
            "c": {"type": "object", "properties": {"d": {"type": "string"}}},
            "items": {
                "type": "array",
                "items": {"type": "object", "properties": {"x": {"type": "boolean", "default": True}}},
            },
        },
    }
    assert apply_defaults(schema, {"items": [{}, {"x": False}]}) == {
        "a": {"b": 7},
        "items": [{"x": True}, {"x": False}],
    }
