"""Typed Lua's front end on a 2,000-line source: translation, and compile time against plain Lua.

The source is one block of typed Lua (type aliases, annotated locals,
parameters and returns, casts, `!`, a validator) repeated with fresh names to
2,000 lines; the plain program is the same blocks written without types. It
measures, each as the median of ``--reps`` runs:

- translating the typed source (``typed.translate``, its cache emptied first),
  and a second translation of the same text (a cache hit);
- translating the plain source (every source goes through the translator,
  which hands plain Lua back unchanged);
- what ``Runtime.compile`` takes for each (translation included, cache emptied),
  and what Lua's own compile of the plain source takes without the translator.

    /work/venv/bin/python benchmarks/typed_frontend.py [--lines 2000] [--reps 20] [--readme]
"""

from __future__ import annotations

import os
import sys

if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.append(sys.path.pop(0))

import argparse
import statistics
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

TYPED_BLOCK = """\
type Item{n} = {{sku: string, qty: integer @min(1), price: number}}
type Order{n} = {{id: string, items: {{Item{n}}}, note?: string}}

local function total{n}(order: Order{n}): number
    local sum: number = 0
    for _, item in ipairs(order.items) do
        sum = sum + item.qty * (item.price :: number)
    end
    return sum
end

local function describe{n}(order: Order{n}?, prefix: string?): (string, error?)
    local o = order!
    local text: string = (prefix or "order") .. " " .. o.id
    return text .. ": " .. tostring(total{n}(o) as number), nil
end
"""

PLAIN_BLOCK = """\


local function total{n}(order)
    local sum = 0
    for _, item in ipairs(order.items) do
        sum = sum + item.qty * (item.price)
    end
    return sum
end

local function describe{n}(order, prefix)
    local o = order
    local text = (prefix or "order") .. " " .. o.id
    return text .. ": " .. tostring(total{n}(o)), nil
end
"""


def program(block: str, lines: int) -> str:
    out, n = [], 0
    while sum(part.count("\n") for part in out) < lines:
        n += 1
        out.append(block.format(n=n))
    # locals per function are limited to 200: each block is its own do ... end
    return "".join(f"do\n{part}end\n" for part in out) + "return function() return 1 end\n"


def median_ms(f, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, default=2000)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    args = p.parse_args()

    from moontide.lua import Runtime, typed

    typed_src, plain_src = program(TYPED_BLOCK, args.lines), program(PLAIN_BLOCK, args.lines)
    assert typed.translate(plain_src) == plain_src
    rt = Runtime()

    def cold(src: str):
        def run() -> None:
            typed._CACHE.clear()
            typed.translate(src)
        return run

    def compile_cold(src: str):
        def run() -> None:
            typed._CACHE.clear()
            rt.compile(src, "bench.lua")
        return run

    def lua_only() -> None:
        with rt.lock:
            out = rt._compile(plain_src, "bench.lua")
        assert not isinstance(out, tuple), out

    rows = [
        ["translate the typed source", f"{median_ms(cold(typed_src), args.reps):.1f}"],
        ["translate it again (cache hit)", f"{median_ms(lambda: typed.translate(typed_src), args.reps):.3f}"],
        ["translate the plain source (comes back unchanged)", f"{median_ms(cold(plain_src), args.reps):.1f}"],
        ["Runtime.compile, typed source (translation included)", f"{median_ms(compile_cold(typed_src), args.reps):.1f}"],
        ["Runtime.compile, plain source (translation included)", f"{median_ms(compile_cold(plain_src), args.reps):.1f}"],
        ["Lua's compile of the plain source alone", f"{median_ms(lua_only, args.reps):.1f}"],
    ]
    text = (c.table(["step", "ms (median)"], rows) +
            f"\n\nA {typed_src.count(chr(10)):,}-line typed source ({len(typed_src):,} bytes) and the same program "
            f"in plain Lua ({plain_src.count(chr(10)):,} lines); `--reps {args.reps}`; {c.stamp()}; {c.machine()}.")
    print(text)
    if args.readme:
        c.update_readme("typed_frontend", text, script="typed_frontend")


if __name__ == "__main__":
    main()
