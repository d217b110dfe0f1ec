"""docs/entries.md is generated from the schemas and must not drift from them."""

from pathlib import Path

from moontide.entries._docs import render

DOC = Path(__file__).parents[2] / "docs" / "entries.md"


def test_entries_page_matches_the_schemas() -> None:
    assert DOC.read_text() == render(), "regenerate: python -m moontide.entries._docs > docs/entries.md"


def test_every_kind_and_nested_field_is_documented() -> None:
    text = render()
    for kind in ("function.lua", "workflow.lua", "temporal.worker", "process.service"):
        assert f"## `{kind}`" in text
    assert "| `lifecycle.restart.max_attempts` | integer | `0` |" in text
