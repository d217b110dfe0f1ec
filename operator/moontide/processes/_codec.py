"""Messages into a process's Lua state, fast: JSON text decoded by Lua itself.

A message crosses between processes as JSON text (``process.send`` encodes it
in the sender's sandbox), so two processes never share a table. Decoding it
with Python's ``json`` and rebuilding the tables through lupa costs about three
times what a small decoder written in Lua costs, and a message on a busy host
is decoded once per delivery, so each Lua runtime gets these helpers, compiled
once and called only from Python (user code never sees them).

The result is the same as ``Runtime.to_lua(json.loads(text))``: objects become
plain tables, arrays tables marked as arrays (``json.array()``), ``null`` nil (``json.null`` inside an array).
"""

from __future__ import annotations

import json
import weakref
from typing import Any

import lupa.lua54 as lupa

from ..lua import runtime as rt_mod

__all__ = ["Codec", "codec"]

_DECODER = r"""
local mark_array, step, null, mark_object = ...
local sbyte, ssub, sfind, concat = string.byte, string.sub, string.find, table.concat
local tonumber, error, utf8char = tonumber, error, utf8.char
local ESC = { ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n', r = '\r', t = '\t' }

local value

local function skip(s, i)
  local c = sbyte(s, i)
  if c ~= 32 and c ~= 10 and c ~= 13 and c ~= 9 then return i end
  local _, e = sfind(s, "^[ \n\r\t]*", i)
  return e + 1
end

local function str(s, i)
  local j, buf, n = i + 1, nil, 0
  while true do
    local a = sfind(s, '["\\]', j)
    if not a then error("unterminated string at " .. i) end
    if sbyte(s, a) == 34 then
      if buf == nil then return ssub(s, j, a - 1), a + 1 end
      n = n + 1; buf[n] = ssub(s, j, a - 1)
      return concat(buf), a + 1
    end
    buf = buf or {}
    n = n + 1; buf[n] = ssub(s, j, a - 1)
    local c = ssub(s, a + 1, a + 1)
    if c == "u" then
      local cp = tonumber(ssub(s, a + 2, a + 5), 16)
      if cp == nil then error("bad \\u escape at " .. a) end
      j = a + 6
      if cp >= 0xD800 and cp <= 0xDBFF and ssub(s, j, j + 1) == "\\u" then
        local lo = tonumber(ssub(s, j + 2, j + 5), 16)
        if lo and lo >= 0xDC00 and lo <= 0xDFFF then
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
          j = j + 6
        end
      end
      n = n + 1; buf[n] = utf8char(cp)
    else
      local e = ESC[c]
      if e == nil then error("bad escape at " .. a) end
      n = n + 1; buf[n] = e
      j = a + 2
    end
  end
end

function value(s, i)
  i = skip(s, i)
  local c = sbyte(s, i)
  if c == 123 then -- {
    local t = {}
    i = skip(s, i + 1)
    if sbyte(s, i) == 125 then return mark_object(t), i + 1 end
    while true do
      if sbyte(s, i) ~= 34 then error("expected a key at " .. i) end
      local k
      k, i = str(s, i)
      i = skip(s, i)
      if sbyte(s, i) ~= 58 then error("expected ':' at " .. i) end
      local v
      v, i = value(s, i + 1)
      t[k] = v
      i = skip(s, i)
      c = sbyte(s, i)
      if c == 125 then
        if next(t) == nil then mark_object(t) end   -- {"a": null}: empty, yet an object
        return t, i + 1
      end
      if c ~= 44 then error("expected ',' or '}' at " .. i) end
      i = skip(s, i + 1)
    end
  elseif c == 91 then -- [
    local t, n = mark_array({}), 0
    i = skip(s, i + 1)
    if sbyte(s, i) == 93 then return t, i + 1 end
    while true do
      local v
      v, i = value(s, i)
      n = n + 1
      if v == nil then v = null end -- a hole would make # lie: json.null, as everywhere else
      t[n] = v
      i = skip(s, i)
      c = sbyte(s, i)
      if c == 93 then return t, i + 1 end
      if c ~= 44 then error("expected ',' or ']' at " .. i) end
      i = i + 1
    end
  elseif c == 34 then
    return str(s, i)
  elseif c == 116 and ssub(s, i, i + 3) == "true" then return true, i + 4
  elseif c == 102 and ssub(s, i, i + 4) == "false" then return false, i + 5
  elseif c == 110 and ssub(s, i, i + 3) == "null" then return nil, i + 4
  end
  local a, b = sfind(s, "^-?%d+", i)
  if a == nil then error("unexpected character at " .. i) end
  c = sbyte(s, b + 1)
  if c == 46 or c == 101 or c == 69 then -- . e E: a float
    a, b = sfind(s, "^-?%d+%.?%d*[eE]?[-+]?%d*", i)
  end
  local num = tonumber(ssub(s, a, b))
  if num == nil then error("bad number at " .. i) end
  return num, b + 1
end

local function decode(s)
  if s == nil then return nil end
  local v, i = value(s, 1)
  i = skip(s, i)
  if i <= #s then error("trailing text at " .. i) end
  return v
end

local function message(topic, from, payload)
  return { topic = topic, from = from, payload = decode(payload) }
end

-- Resume a thread with a message it receives, built here: one call into Lua, not two.
local function step_message(thread, limit, selecting, topic, from, payload)
  local ok, msg = pcall(message, topic, from, payload)
  if not ok then return "codec" end
  if selecting then return step(thread, limit, true, "inbox", msg) end
  return step(thread, limit, true, msg)
end

return decode, message, step_message
"""


class Codec:
    """The helpers of one runtime: ``decode(text)`` and ``message(topic, sender, text)``."""

    __slots__ = ("runtime", "_decode", "_message", "step_message", "__weakref__")

    def __init__(self, rt: rt_mod.Runtime) -> None:
        self.runtime = rt
        with rt.lock:
            #: step_message(thread, limit, selecting, topic, sender, text): sandbox.step with the
            #: message as the resume value (after ``true``, and ``"inbox"`` in a select); "codec"
            #: if the text did not decode (then build it with ``message``, which falls back)
            self._decode, self._message, self.step_message = rt.lua.execute(
                _DECODER, rt.sandbox.mark_array, rt._step, rt.sandbox.null, rt.sandbox.mark_object)

    def decode(self, text: str | None) -> Any:
        """A JSON text as a Lua value (falls back to Python's json on anything odd)."""
        self.runtime.make_room(text)  # lupa pushes it unprotected (lua.runtime._LIFTED)
        try:
            return self._decode(text)
        except lupa.LuaError:
            return self.runtime.to_lua(json.loads(text)) if text is not None else None

    def message(self, topic: str, sender: str | None, text: str | None) -> Any:
        """The raw message table the Lua side wraps: ``{topic=, from=, payload=}``."""
        self.runtime.make_room(topic, sender, text)  # lupa pushes them unprotected (lua.runtime._LIFTED)
        try:
            return self._message(topic, sender, text)
        except lupa.LuaError:
            return self.runtime.to_lua({"topic": topic, "from": sender,
                                        "payload": json.loads(text) if text is not None else None})


_codecs: weakref.WeakKeyDictionary[rt_mod.Runtime, Codec] = weakref.WeakKeyDictionary()


def codec(rt: rt_mod.Runtime) -> Codec:
    """The codec of ``rt`` (made on first use, dropped with the runtime)."""
    c = _codecs.get(rt)
    if c is None:
        c = _codecs[rt] = Codec(rt)
    return c
