"""docs/entries.md, generated from the schemas (``python -m moontide.entries._docs > docs/entries.md``).

A test regenerates it and fails when the page and the schemas drift.
"""

from __future__ import annotations

import json
from typing import Any

from ._schemas import FILE_SCHEMA, OTHER_WIPPY_KINDS, REFUSED, SCHEMAS, Schema

__all__ = ["render"]

_HEAD = """# Entries

<!-- generated from operator/moontide/entries/_schemas.py by
     `python -m moontide.entries._docs > docs/entries.md`; do not edit -->

An app is a directory of YAML files (any `*.yaml` below it) in Wippy's format:
Wippy's entry files (`en/lua/entries.md`, `en/temporal/*.md`) load unchanged. Each file:

```yaml
version: "1.0"
namespace: app
entries:
  - name: worker
    kind: temporal.worker
    client: app:temporal_client
    task_queue: orders
  - name: order_processor
    kind: workflow.lua
    source: file://order_processor.lua    # relative to this YAML file, inside the app root
    method: main
    modules: [funcs, time]
    meta:
      temporal:
        workflow:
          worker: app:worker              # only this worker runs it (default: every worker)
  - name: charge_payment
    kind: function.lua
    source: file://payment.lua
    method: charge
    meta:
      temporal:
        activity:
          worker: app:worker              # funcs.call schedules it on this worker's task queue
          local: false                    # true: a Temporal local activity, in the workflow's worker
```

An entry's ID is `namespace:name`. A reference without a namespace takes the
referring entry's namespace. Every problem in an app is reported at once,
naming the file, line, entry and field (`moontide check APP_DIR`, and
`moontide run` before it serves): the schemas below, references, dependency
and import cycles, Lua that does not compile, and what loading each Lua entry
shows (a chunk that raises or runs past its instruction budget or memory cap,
a `method` the source does not define, a source that returns no function) and
literal entry IDs in `funcs.call("ns:name")`, `process.spawn("ns:name", "ns:host", ...)`
and the like that name no entry, or one of the wrong kind.

A field Moontide cannot honour is refused with the reason, never ignored
(see "Wippy fields Moontide refuses" at the end).
"""


def _type(s: Schema) -> str:
    t = s.get("type", "any")
    if t == "array":
        return f"list of {_type(s.get('items', {}))}"
    if "enum" in s:
        return " \\| ".join(f"`{v}`" for v in s["enum"])
    return str(t)


def _rows(props: dict[str, Schema], required: list[str], prefix: str = "") -> list[str]:
    rows = []
    for name, s in props.items():
        default = "required" if name in required else (
            f"`{json.dumps(s['default'])}`" if "default" in s and s["default"] not in ({}, []) else "")
        desc = s.get("description", "").replace("|", "\\|")
        if "pattern" in s:
            desc += " (pattern `" + s["pattern"].replace("|", "\\|") + "`)"
        for bound in ("minimum", "maximum"):
            if bound in s:
                desc += f" ({bound} {s[bound]})"
        rows.append(f"| `{prefix}{name}` | {_type(s)} | {default} | {desc} |")
        if s.get("type") == "object" and s.get("properties"):
            rows += _rows(s["properties"], s.get("required", []), f"{prefix}{name}.")
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    out = [_HEAD, "## File", "", "| field | type | default | meaning |", "|---|---|---|---|"]
    out += _rows(FILE_SCHEMA.get("properties", {}), FILE_SCHEMA.get("required", []))
    for kind, schema in SCHEMAS.items():
        out += ["", f"## `{kind}`", "", schema.get("description", ""), "",
                "| field | type | default | meaning |", "|---|---|---|---|"]
        out += _rows(schema["properties"], schema.get("required", []))
    out += ["", "## Wippy fields Moontide refuses", "",
            "Besides the values the tables above say must be 0 or false, these fields are refused with the "
            "reason below (Moontide's own old spellings are among them: Wippy's names won):", "",
            "| kind | field | why |", "|---|---|---|"]
    out += [f"| `{kind}` | `{field}` | {_cell(why)} |" for (kind, field), why in sorted(REFUSED.items())]
    out += ["", "Wippy's other kinds are refused as such: " + ", ".join(f"`{k}`" for k in sorted(OTHER_WIPPY_KINDS))
            + "."]
    return "\n".join(out) + "\n"


def main() -> Any:
    print(render(), end="")


if __name__ == "__main__":
    main()
