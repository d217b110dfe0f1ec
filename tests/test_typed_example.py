"""examples/typed (Wippy's typed Lua in every entry kind) against the session's Temporal dev server."""

from __future__ import annotations

import shutil
from pathlib import Path

from moontide.runtime import AppRuntime

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "typed"

ALICE = {"email": "Alice@Example.com", "name": "Alice", "age": 30, "plan": "pro", "tags": ["beta"]}
BOB = {"email": "bob@example.org", "name": "Bob", "age": 41, "plan": "team"}


async def test_signups_run_validate_and_are_tallied(tmp_path: Path, temporal_address: str) -> None:
    app = tmp_path / "typed"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns(".moontide"))
    async with AppRuntime(app, temporal=temporal_address, serve=True) as rt:
        one = await rt.result(await rt.spawn("app:signup", None, {"signup": ALICE, "cooling_off": "10ms"}))
        assert one == {"ok": True, "value": {"id": "acct-alice@example.com", "email": "alice@example.com",
                                             "plan": "pro", "seats": 1}}

        young = {**BOB, "age": 9}
        bad_mail = {**BOB, "email": "bob@localhost"}
        unknown_plan = {**BOB, "plan": "gold"}
        report = await rt.result(await rt.spawn("app:onboard", "app:processes", {
            "signups": [ALICE, BOB, young, bad_mail, unknown_plan], "cooling_off": "10ms"}))
    assert report["accounts"] == {"pro": 1, "team": 1}
    assert report["rejected"] == sorted([
        "Signup.age: must be >= 13, got 9",
        'Signup.email: must match /^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$/, got "bob@localhost"',
        'Signup.plan: expected "free" | "pro" | "team", got "gold"',
    ])
