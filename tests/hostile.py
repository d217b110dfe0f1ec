"""Hostile Lua for the isolation tests: a crawler that tampers with everything it can reach, and a victim.

Imported by tests/lua/test_hostile.py (one runtime, unit level) and by the
hostile tests of workflows, functions (tests/workflows/test_hostile_workflows.py)
and processes (tests/processes/test_hostile_processes.py), so every entry kind
meets the same attacks.

``CRAWL`` (Lua) walks everything an execution can reach without calling user
functions: its globals, the standard library and module tables, the objects
modules hand out, what ``pairs``/``next``/``ipairs``/``getmetatable`` and the
metamethod fields return. On every table it finds it tries every kind of write
(assignment, ``rawset``, ``setmetatable``), and replaces every function it finds
in a table by a wrapper that records its arguments (data theft). Writes to the
attacker's own tables succeed and are harmless; a write that reaches anything
shared would show in the victim.

``VICTIM`` (Lua) computes a fingerprint of ordinary behaviour (the standard
library, modules, errors, iteration, coroutines, metatables) before and after
a wait, and scans what it can reach for the attacker's mark (the paths where
it found it, space-separated; empty when clean).
"""

from __future__ import annotations

#: The mark the attacker writes everywhere; a victim that meets it was reached.
MARK = "PWNED"

#: Lua (a function body): ``crawl(roots)`` tampers with everything reachable;
#: ``stolen`` counts what wrappers saw. Everything it uses is a local first,
#: since it overwrites its own globals too.
CRAWL = r"""
local pairs, pcall, rawset, rawget, setmetatable, getmetatable, type, next, ipairs, select =
  pairs, pcall, rawset, rawget, setmetatable, getmetatable, type, next, ipairs, select
local MARK = "PWNED"
local stolen = {}
local seen, queue = {}, {}
local function push(v)
  if type(v) == "table" and not seen[v] then seen[v] = true queue[#queue + 1] = v end
end
local META = { "__index", "__newindex", "__pairs", "__metatable", "__call", "__tostring", "__tojson", "__name",
  "__len", "__eq", "__lt", "__le", "__concat", "__close", "__mode", "__gc", "__unm", "__add" }
local function spy(f)
  return function(...)
    local n = select("#", ...)
    stolen[#stolen + 1] = n
    return f(...)
  end
end
local function tamper(t)
  local ok, f, s, c = pcall(pairs, t)
  local keys = {}
  if ok then
    push(s)   -- the iteration state: the raw table behind a read-only view?
    pcall(function()
      for k, v in f, s, c do keys[#keys + 1] = k push(k) push(v) end
    end)
  end
  pcall(function() local _, v = next(t) push(v) end)
  pcall(function() local _, s2 = ipairs(t) push(s2) end)
  for _, k in ipairs(keys) do
    local okv, v = pcall(function() return t[k] end)
    if okv and type(v) == "function" then
      pcall(function() t[k] = spy(v) end)
      pcall(rawset, t, k, spy(v))
    elseif okv then
      pcall(function() t[k] = MARK end)
      pcall(rawset, t, k, MARK)
    end
  end
  pcall(function() push(getmetatable(t)) end)
  for _, key in ipairs(META) do pcall(function() push(t[key]) end) end
  pcall(function() t.__pwned = MARK end)
  pcall(rawset, t, "__pwned", MARK)
  pcall(setmetatable, t, { __index = function() return MARK end, __newindex = function() end })
end
local function crawl(roots)
  for _, r in ipairs(roots) do push(r) end
  local i = 1
  while queue[i] do
    tamper(queue[i])
    i = i + 1
  end
  return i - 1
end
"""

#: Lua (a function body): the roots of CRAWL/SCAN: globals by name (the base
#: environment is not enumerable from _G) and the objects modules hand out.
#: ``M`` names the modules the entry declared.
ROOTS = r"""
local function roots(M)
  local r = { _G, string, table, math, os, utf8, coroutine, getmetatable(""), getmetatable(_G) }
  for _, name in ipairs({ "assert", "error", "ipairs", "next", "pairs", "pcall", "xpcall", "rawequal", "rawget",
      "rawlen", "rawset", "select", "setmetatable", "getmetatable", "tonumber", "tostring", "type", "load", "require",
      "print", "_VERSION", "typeof", "integer", "number", "boolean", "Number", "Integer", "String", "Boolean", "Any",
      "Unknown", "Never", "__moontide_types" }) do
    local ok, v = pcall(function() return _G[name] end)
    if ok then r[#r + 1] = v end
  end
  local function add(f, ...)
    local ok, v = pcall(f, ...)
    if ok then r[#r + 1] = v end
  end
  if M.errors then add(function() return errors.new{ kind = "NotFound", message = "m", details = { a = 1 } } end)
    add(function() return errors.wrap(errors.new("x"), "ctx") end) end
  if M.json then add(function() return json.array() end) add(function() return json.null end)
    add(function() return json.decode('{"a": [1, {"b": 2}]}') end) end
  if M.time then add(function() return time.unix(0) end) add(function() return time.unix(0):add("1s") end) end
  if M.channel then add(function() return channel.new(1) end)
    add(function() return channel.new(1):case_receive() end) end
  add(function() return __moontide_types.def("Pt", function() return __moontide_types.record({}) end) end)
  if M.process then add(function() return process.inbox() end) add(function() return process.events() end)
    add(function() return process.Message end)
    add(function() return process.with_options({}) end) add(function() return process.event end)
    add(function() return process.registry end) end
  if M.funcs then add(function() return funcs.new() end) add(function() return funcs.new():with_options({}) end)
    add(function() return funcs.new():with_context({ a = 1 }) end) end
  if M.process then add(function() return process.with_context({ a = 1 }) end)
    add(function() return process.with_options({}):with_context({ a = 1 }) end) end
  if M.payload then add(function() return payload.new({ a = 1 }) end) add(function() return payload.format end)
    add(function() return payload.new({ a = { 1 } }):transcode(payload.format.YAML) end)
    add(function() return payload.new(errors.new("x")) end) end
  if M.logger then add(function() return logger:with({ a = 1 }) end) add(function() return logger:named("n") end) end
  if M.crypto then add(function() return crypto.random end) add(function() return crypto.jwt end) end
  if M.uuid then add(function() return uuid.parse("6ba7b811-9dad-11d1-80b4-00c04fd430c8") end) end
  if M.ctx then add(function() return ctx.all() end) end
  for name in pairs(M) do r[#r + 1] = _G[name] end
  local ok, e = pcall(error, { kind = "x" })
  r[#r + 1] = e
  add(function() local _, err = pcall(string.rep) return err end)
  return r
end
"""

#: Lua (a function body): ``canary()`` is a string of ordinary results; the
#: same code must give the same string in any execution on any runtime.
CANARY = r"""
local function canary(M)
  local out = {}
  math.randomseed(42)
  local function put(...)
    local parts = table.pack(...)
    for i = 1, parts.n do out[#out + 1] = tostring(parts[i]) end
  end
  put(string.upper("abc"), ("xyz"):upper(), string.rep("ab", 3, "-"), string.format("%5.2f|%s|%d", 3.14159, "s", 7))
  put(string.find("hello world", "o w"), string.match("key=val", "(%w+)=(%w+)"), string.gsub("aaa", "a", "b"))
  put(string.byte("A"), string.char(72, 105), string.sub("abcdef", 2, 4), string.len("four"), #"five!")
  put(table.concat({ 1, 2, 3 }, ","), table.unpack({ 4, 5 }), select("#", 1, 2, 3), select(2, "a", "b", "c"))
  local t = { 5, 3, 9, 1 }
  table.sort(t) table.insert(t, 7) table.insert(t, 1, 0) put(table.remove(t), table.remove(t, 1), table.concat(t, " "))
  put(table.concat(table.move({ 1, 2, 3 }, 1, 3, 2, { 9 }), ","))
  local keys = {}
  for k, v in pairs({ b = 2, a = 1, [3] = "c", [1] = "x" }) do keys[#keys + 1] = tostring(k) .. "=" .. tostring(v) end
  put(table.concat(keys, ";"))
  for i, v in ipairs({ "p", "q" }) do put(i, v) end
  put(next({}), type(next), type(pairs), type(print), type(require), type(load))
  put(math.floor(3.7), math.max(1, 9, 4), math.huge, math.pi, math.type(1), math.type(1.0), math.tointeger(3.0))
  put(math.random(1, 1000), math.random(1, 1000))
  put(os.time{ year = 2020, month = 1, day = 1, hour = 0 }, os.date("!%Y-%m-%d", 0), os.difftime(5, 2))
  put(utf8.char(228, 8364), utf8.len("äb"), utf8.codepoint("é"), #utf8.charpattern)
  put(tostring(nil), tostring(true), tostring(12), tonumber("0x10"), tonumber("z", 36), tostring(1.5))
  put(tostring({}), tostring(print):match("^function"), type(tostring({})))
  put(pcall(error, "plain"), select(2, pcall(error, { code = 1 })).code, pcall(error))
  put(xpcall(function() error("x", 0) end, function(m) return "handled " .. m end))
  local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b * 2 end)
  put(coroutine.resume(co, 1)) put(coroutine.resume(co, 5)) put(coroutine.status(co))
  local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
  put(gen(), gen(), gen(), coroutine.isyieldable(), coroutine.running() ~= nil)
  local mt = { __index = function(_, k) return k .. "!" end, __add = function(a, b) return 42 end }
  local obj = setmetatable({}, mt)
  put(obj.x, obj + obj, getmetatable(obj) == mt, rawget(obj, "x"), rawequal(obj, obj), rawlen({ 1, 2 }))
  put(getmetatable("") == false and "hidden" or "shown", getmetatable(_G) == false and "hidden" or "shown")
  local f = load("return 1 + ...") put(f(41))
  put(assert(true, "m"), _VERSION, type(_G), _G == _ENV, _G._G == _G)
  put(string.format("%q", "a\nb"), ("%d items"):format(3), ("a,b"):find(",", 1, true))
  if M.json then
    put(json.encode({ b = { 1, 2 }, a = "x" }), json.encode(json.array()), json.decode("[1,2]")[2],
      json.decode('{"k": null}').k, json.null == json.null, json.encode({ json.null, 1 }), tostring(json.null))
  end
  if M.errors then
    local e = errors.new{ kind = errors.NOT_FOUND, message = "gone", retryable = true }
    put(e.kind, e.message, e.retryable, tostring(e), errors.is(e, "NotFound"), errors.is(e, "Invalid"),
      errors.wrap(e, "ctx").message, errors.INVALID, errors.new("plain").kind)
  end
  if M.time then
    local t0 = time.unix(60)
    put(t0:unix(), tostring(t0), t0:add("1m"):unix(), t0:add("1s"):sub(t0), time.SECOND, time.parse_duration("1h30m"),
      t0:format("%Y"), t0 < t0:add(1), t0 == time.unix(60))
  end
  if M.channel then
    local ch = channel.new(2) ch:send("v1") ch:send("v2")
    put(ch:receive()) put(select(1, ch:receive()))
    local r = channel.select{ ch:case_send("v3") } put(r.ok, r.channel == ch)
    ch:close() put(ch:receive()) put(ch:receive())
  end
  if M.process then
    put(process.event.EXIT, process.event.CANCEL, process.event.LINK_DOWN, type(process.inbox()), type(process.send))
  end
  if M.funcs then put(type(funcs.call), type(funcs.new():with_options({ retry_policy = {} }).call)) end
  if M.base64 then put(base64.encode("hi\0\255"), base64.decode("aGk=")) end
  if M.hash then put(hash.sha256("x"), hash.md5(""), hash.fnv32("x"), hash.hmac_sha256("d", "k")) end
  if M.uuid then put(uuid.v5("6ba7b811-9dad-11d1-80b4-00c04fd430c8", "x"), uuid.validate("nope"), uuid.version(uuid.v4())) end
  if M.crypto then
    put(crypto.hmac.sha256("k", "d"), crypto.jwt.encode({ sub = "x" }, "s"), crypto.constant_time_compare("a", "a"),
      #crypto.pbkdf2("p", "s", 2, 16), #crypto.random.bytes(8))
    local key = string.rep("k", 32)
    put(crypto.decrypt.aes(crypto.encrypt.aes("plain", key), key), crypto.jwt.verify(crypto.jwt.encode({ sub = "y" }, "s"), "s", "HS256", false).sub)
  end
  if M.payload then
    local p = payload.new({ a = { 1, 2 } })
    put(p:get_format(), p:transcode(payload.format.JSON):data().a[2], tostring(p), payload.format.YAML,
      p:transcode(payload.format.YAML):unmarshal().a[1], payload.new(errors and errors.new("e") or 1):get_format())
  end
  if M.ctx then put(type(ctx.all()), next(ctx.all()), select(2, ctx.get("missing")) ~= nil) end
  if M.logger then put(type(logger:with({ a = 1 })), type(logger:named("n")), type(logger.info)) end
  if M.http_client then put(http_client.encode_uri("a b/c"), http_client.decode_uri("a+b%2Fc")) end
  return table.concat(out, "|")
end
"""

#: Lua (a function body): ``scan(roots)`` returns where it sees the attacker's
#: mark ("root3.__pwned ..."), or "" when nowhere.
SCAN = r"""
local function scan(roots)
  local seen, queue, paths, found = {}, {}, {}, {}
  local function push(v, path)
    if v == "PWNED" then found[#found + 1] = path end
    if type(v) == "table" and not seen[v] then seen[v] = true queue[#queue + 1] = v paths[v] = path end
  end
  for i, r in ipairs(roots) do push(r, "root" .. i) end
  local i = 1
  while queue[i] do
    local t = queue[i]
    local path = paths[t]
    pcall(function()
      local f, s, c = pairs(t)
      push(s, path .. "<pairs state>")
      for k, v in f, s, c do push(k, path .. "<key>") push(v, path .. "." .. tostring(k)) end
    end)
    pcall(function() push(getmetatable(t), path .. "<metatable>") end)
    pcall(function() if t.__pwned ~= nil then found[#found + 1] = path .. ".__pwned" end end)
    pcall(function() if t.nonexistent_key_xyz == "PWNED" then found[#found + 1] = path .. "<any key>" end end)
    for _, key in ipairs({ "__index", "__newindex", "__pairs", "__call", "__tostring", "__tojson" }) do
      pcall(function() push(t[key], path .. "." .. key) end)
    end
    i = i + 1
  end
  return table.concat(found, " ")
end
"""

#: Lua chunk of an attacker: ``main(M)`` tampers, then runs WAIT (replace it
#: by Lua that waits through the locals ``sleep`` or ``inbox``, e.g.
#: ``sleep(1)``: the victim runs meanwhile), then
#: returns {tables it tampered with, calls its spies saw}.
ATTACKER = "return function(M)\n" + CRAWL + ROOTS + """
  local sleep, inbox = time.sleep, process and process.inbox()   -- its own globals are gone after
  local n = crawl(roots(M))
  WAIT
  return { n, #stolen }
end
"""

#: Lua chunk of a victim: the canary, then DURING (Lua that waits and does
#: ordinary work while the attacker runs), the canary again, and a scan:
#: returns {before, after, where the attacker's mark was found}.
VICTIM = "return function(M)\n" + ROOTS + CANARY + SCAN + """
  local before = canary(M)
  DURING
  local after = canary(M)
  return { before, after, scan(roots(M)) }
end
"""
