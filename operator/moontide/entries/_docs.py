"""docs/entries.md, generated from the schemas (``python -m moontide.entries._docs > docs/entries.md``).

A test regenerates it and fails when the page and the schemas drift.
"""

from __future__ import annotations

import json
from typing import Any

from ._schemas import FILE_SCHEMA, SCHEMAS, Schema

__all__ = ["render"]

_HEAD = """# Entries

<!-- generated from operator/moontide/entries/_schemas.py by
     `python -m moontide.entries._docs > docs/entries.md`; do not edit -->

An app is a directory of YAML files (any `*.yaml` below it). Each file:

```yaml
version: "1.0"
namespace: app.workflows
entries:
  - name: order_processor
    kind: workflow.lua
    source: file://order_processor.lua    # relative to this YAML file, inside the app root
    method: main
    modules: [funcs, time]
```

An entry's ID is `namespace:name`. A reference without a namespace takes the
referring entry's namespace. Every problem in an app is reported at once,
naming the file, line, entry and field (`moontide check APP_DIR`).
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


def render() -> str:
    out = [_HEAD, "## File", "", "| field | type | default | meaning |", "|---|---|---|---|"]
    out += _rows(FILE_SCHEMA.get("properties", {}), FILE_SCHEMA.get("required", []))
    for kind, schema in SCHEMAS.items():
        out += ["", f"## `{kind}`", "", schema.get("description", ""), "",
                "| field | type | default | meaning |", "|---|---|---|---|"]
        out += _rows(schema["properties"], schema.get("required", []))
    return "\n".join(out) + "\n"


def main() -> Any:
    print(render(), end="")


if __name__ == "__main__":
    main()
