-- The sandbox, run once per Lua runtime with the raw standard library in reach.
-- It keeps private references to what user code must never touch (debug, the
-- host callable, the real coroutine functions) as upvalues, then hands Python a
-- small API. User code only ever sees the tables built by new_env().
local host, budget_message, clock, max_depth, too_deep = ...

local sethook, traceback, getmetatable_raw = debug.sethook, debug.traceback, debug.getmetatable
local co_create, co_resume, co_yield, co_status = coroutine.create, coroutine.resume, coroutine.yield, coroutine.status
local co_running, co_isyieldable, co_close = coroutine.running, coroutine.isyieldable, coroutine.close
local type, next, pairs, rawget, rawset, rawequal, rawlen = type, next, pairs, rawget, rawset, rawequal, rawlen
local setmetatable, getmetatable, tostring, tonumber = setmetatable, getmetatable, tostring, tonumber
local error, pcall, xpcall, select, assert, ipairs = error, pcall, xpcall, select, assert, ipairs
local load, string, table, math, utf8, os = load, string, table, math, utf8, os
local sort, concat, pack, unpack = table.sort, table.concat, table.pack, table.unpack
local sfmt, srep, sfind, sbyte = string.format, string.rep, string.find, string.byte
local huge, ssub = math.huge, string.sub
local real_date = os.date

local SYS = {}            -- marks a yield that asks the host, never shown to user code
local sandbox = {}        -- what Python gets

---------------------------------------------------------------------------
-- Deterministic iteration: pairs()/next() visit keys in a fixed order
-- (numbers, then strings, then booleans), so the same code does the same
-- thing in every process. Raw next() order depends on string hashes and
-- addresses, which differ per process.
---------------------------------------------------------------------------
local RANK = { number = 1, string = 2, boolean = 3 }
local function keyless(a, b)
  local ra, rb = RANK[type(a)], RANK[type(b)]
  if ra ~= rb then return ra < rb end
  if ra == 3 then return (not a) and b end
  return a < b
end

local order_cache = setmetatable({}, { __mode = "k" })

local function sorted_keys(t)
  local keys, n = {}, 0
  for k in next, t do
    if not RANK[type(k)] then
      error("pairs(): a table with " .. type(k) .. " keys has no deterministic order; use string or number keys", 3)
    end
    n = n + 1
    keys[n] = k
  end
  sort(keys, keyless)
  local pos = {}
  for i = 1, n do pos[keys[i]] = i end
  local entry = { keys = keys, pos = pos, n = n }
  order_cache[t] = entry
  return entry
end

local function ordered_next(t, k)
  local c, i
  if k == nil then
    c, i = sorted_keys(t), 0
  else
    c = order_cache[t]
    i = c and c.pos[k]
    if not i then
      c = sorted_keys(t)
      i = c.pos[k]
      if not i then
        -- k was removed during the traversal (allowed in Lua) and another
        -- traversal rebuilt the order since: go on after where k would be.
        if not RANK[type(k)] then error("invalid key to 'next'", 2) end
        local keys, lo, hi = c.keys, 1, c.n
        while lo <= hi do
          local mid = (lo + hi) // 2
          if keyless(keys[mid], k) then lo = mid + 1 else hi = mid - 1 end
        end
        i = lo - 1
      end
    end
  end
  local keys = c.keys
  for j = i + 1, c.n do
    local key = keys[j]
    local v = rawget(t, key)
    if v ~= nil then return key, v end
  end
  return nil
end

local function ordered_pairs(t)
  local mt = getmetatable_raw(t)
  local mp = mt and rawget(mt, "__pairs")
  if mp then
    local f, s, c = mp(t)
    return f, s, c
  end
  if type(t) ~= "table" then error("bad argument #1 to 'pairs' (table expected, got " .. type(t) .. ")", 2) end
  return ordered_next, t, nil
end
sandbox.ordered_next = ordered_next

---------------------------------------------------------------------------
-- Instruction budget. The count hook must be set on every coroutine that runs
-- user code. Once over budget it fires on every instruction, so a pcall in
-- user code cannot swallow it.
---------------------------------------------------------------------------
local budget, used = 0, 0
local STEP = 1000
-- A net under the budget: work that no instruction shows (the `..` operator
-- copies whole strings in one instruction) is bounded by the thread's CPU
-- time, read from the host's clock at every hook.
local cpu_limit, deadline = 0, huge

-- Coroutines the hook stopped: Lua runs a hook with hooks off, and a
-- coroutine that dies from an error raised there keeps them off for good.
local stopped = setmetatable({}, { __mode = "k" })

local function over_budget()
  stopped[co_running()] = true
  error(budget_message, 0)
end

local function exceed()
  stopped[co_running()] = true
  sethook(co_running(), over_budget, "", 1)
  -- and on the step's main coroutine: a pcall there must not swallow the
  -- error coming out of a user coroutine
  local main = sandbox.main
  if main and main ~= co_running() then sethook(main, over_budget, "", 1) end
  error(budget_message, 0)
end

local function count_hook()
  used = used + STEP
  if used > budget or clock() >= deadline then exceed() end  -- >=: a stopped clock reads inf
end

--- Charge work done in C (which the count hook cannot see) to the budget.
local function charge(n)
  if n <= 0 then return end   -- never a credit
  used = used + n
  if used > budget and budget > 0 then exceed() end
end

local function arm(co)
  if budget > 0 then sethook(co, count_hook, "", STEP) end
  return co
end

--- Text of an error value without running user code unbudgeted: a __tostring
--- metamethod runs in its own hooked coroutine, and a table without one is
--- described by its type (its address would differ from run to run).
local function describe(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" or t == "boolean" or t == "nil" then return tostring(v) end
  local mt = getmetatable_raw(v)
  if mt ~= nil and rawget(mt, "__tostring") ~= nil then
    local co = arm(co_create(tostring))
    local ok, s = co_resume(co, v)
    if ok and type(s) == "string" and co_status(co) == "dead" then return s end
    if not ok and s == budget_message then return budget_message end
  end
  return "(error object is a " .. t .. " value)"
end

--- f(...) in its own coroutine under a fresh budget: for Python calls made
--- outside a step that may run user metamethods (__tojson, __tostring).
local function bounded(limit, f, ...)
  local saved_budget, saved_used, saved_main, saved_deadline = budget, used, sandbox.main, deadline
  budget, used, sandbox.main = limit, 0, nil
  deadline = cpu_limit > 0 and clock() + cpu_limit or huge
  local co = arm(co_create(f))
  local r = pack(co_resume(co, ...))
  budget, used, sandbox.main, deadline = saved_budget, saved_used, saved_main, saved_deadline
  if r[1] and co_status(co) ~= "dead" then return false, "attempt to yield here" end
  return unpack(r, 1, r.n)
end

---------------------------------------------------------------------------
-- A memory error cannot be caught. Executions share a runtime and its memory
-- cap, so whether an allocation fails depends on what the others hold: code
-- that caught it would do different things on replay. pcall, xpcall,
-- coroutine.resume/close and load hand it on, and the step fails.
---------------------------------------------------------------------------
local MEMORY = "not enough memory"

local function rethrow(ok, ...)
  if not ok and (...) == MEMORY then error(MEMORY, 0) end
  return ok, ...
end

local function safe_pcall(f, ...)
  return rethrow(pcall(f, ...))
end

-- A message handler runs where the error was raised. The budget's error is
-- raised by the count hook, and Lua runs hooks with hooks off: a handler run
-- there could loop for good. It never sees that error, nor the memory error.
local function safe_xpcall(f, handler, ...)
  if type(handler) ~= "function" then return xpcall(f, handler, ...) end  -- C reports it
  return rethrow(xpcall(f, function(e)
    if e == MEMORY or e == budget_message then return e end
    return handler(e)
  end, ...))
end

---------------------------------------------------------------------------
-- Coroutines for user code: system yields pass straight through a user
-- coroutine to the host, user yields stay between user code.
---------------------------------------------------------------------------
local function passthrough(co, r)
  while r[1] and r[2] == SYS and co_status(co) == "suspended" do
    r = pack(co_resume(co, co_yield(unpack(r, 2, r.n))))
  end
  return r
end

-- Past the budget nothing more runs in this step: no coroutine is resumed or
-- closed. A coroutine the hook stopped is never closed, in this step or a
-- later one: its to-be-closed variables would run with hooks off.
local function spent()
  if budget > 0 and used > budget then error(budget_message, 0) end
end

local user_coroutine = {
  create = function(f) return arm(co_create(f)) end,
  resume = function(co, ...)
    spent()
    local r = passthrough(co, pack(co_resume(co, ...)))
    if not r[1] and r[2] == MEMORY then error(MEMORY, 0) end
    return unpack(r, 1, r.n)
  end,
  yield = function(...)
    if co_running() == sandbox.main then error("attempt to yield from outside a coroutine", 2) end
    return co_yield(...)
  end,
  wrap = function(f)
    local co = arm(co_create(f))
    return function(...)
      spent()
      local r = passthrough(co, pack(co_resume(co, ...)))
      if not r[1] then error(r[2], 0) end
      return unpack(r, 2, r.n)
    end
  end,
  status = co_status, running = co_running, isyieldable = co_isyieldable,
  close = function(co)
    spent()
    if stopped[co] then return false, budget_message end
    return rethrow(co_close(co))
  end,
}

--- Ask the host for something that may block (activity, timer, receive ...).
local function sys(...)
  return co_yield(SYS, ...)
end

---------------------------------------------------------------------------
-- C functions ignore the hook. What they do is charged to the budget: bytes
-- they produce or scan, and for pattern matching its worst case. A pattern
-- call whose worst case is large (the C matcher can backtrack for minutes)
-- runs in a Lua port of the matcher instead, where the hook counts each step.
---------------------------------------------------------------------------
local MAX_REP = 64 * 1024 * 1024
local BYTES_PER_INSTRUCTION = 16   -- copying 16 bytes in C costs about one hooked Lua instruction
-- A C matcher step takes about a sixteenth of a hooked Lua instruction's time,
-- so a C match is charged its worst case / 16. Past 50,000 worst-case steps the
-- Lua matcher is cheaper in budget (it is charged what it really does), if
-- slower in time.
local C_MATCH_LIMIT = 50000
local C_MATCH_CHARGE = 16
local SPECIALS = "[%^%$%*%+%?%.%(%[%%%-]"
local c_find, c_match, c_gmatch, c_gsub = string.find, string.match, string.gmatch, string.gsub
local tointeger, getinfo = math.tointeger, debug.getinfo

-- A pattern error from the Lua matcher names the line that called it, as the C one does.
local function pattern_fail(msg)
  for level = 3, 1000 do
    local info = getinfo(level, "Sl")
    if info == nil then break end
    if info.source ~= "=_patterns" then
      if info.currentline > 0 then msg = info.short_src .. ":" .. info.currentline .. ": " .. msg end
      break
    end
  end
  error(msg, 0)
end

local lua_patterns
do
  local ok, src = host("module.source", "_patterns")
  assert(ok, src)
  lua_patterns = assert(load(src, "=_patterns", "t", _G))(pattern_fail)
end
sandbox.lua_patterns = lua_patterns  -- for tests: the port against the C functions

-- How far the C matcher can backtrack: repetitions (and %b, back references)
-- that are not the pattern's last item each multiply the work by the subject
-- length, `?` items by 2. false: malformed (the Lua matcher reports it).
local class_end_at = lua_patterns.class_end

local function analyse(p)
  local n = #p
  local reps, opts, pending = 0, 0, nil
  local i = sbyte(p, 1) == 94 and 2 or 1
  while i <= n do
    local c, nc = sbyte(p, i), sbyte(p, i + 1)
    local rep, transparent = nil, false
    if c == 40 then                                        -- ( or ()
      i = nc == 41 and i + 2 or i + 1
      transparent = true
    elseif c == 41 then                                    -- )
      i = i + 1
      transparent = true
    elseif c == 37 and nc == 98 then                       -- %bxy scans to the end
      if i + 3 > n then return false end
      i, reps = i + 4, reps + 1
    elseif c == 37 and nc == 102 then                      -- %f[set]
      if sbyte(p, i + 2) ~= 91 then return false end
      i = class_end_at(p, n, i + 2)
      if not i then return false end
    elseif c == 37 and nc and nc >= 48 and nc <= 57 then   -- %1 compares a capture
      i, reps = i + 2, reps + 1
    else
      local ep = class_end_at(p, n, i)
      if not ep then return false end
      local e = sbyte(p, ep)
      if e == 42 or e == 43 or e == 45 then rep, i = "r", ep + 1
      elseif e == 63 then rep, i = "o", ep + 1
      else i = ep end
    end
    if not transparent then
      if pending == "r" then reps = reps + 1 elseif pending == "o" then opts = opts + 1 end
      pending = rep
    end
  end
  return { reps = reps, opts = opts, anchored = sbyte(p, 1) == 94 }
end

local pattern_info, pattern_count = {}, 0

--- Worst-case C matcher steps, and whether they grow faster than the subject.
local function worst_case(name, s, p)
  local info = pattern_info[p]
  if info == nil then
    if pattern_count >= 1000 then pattern_info, pattern_count = {}, 0 end
    info = analyse(p)
    pattern_info[p], pattern_count = info, pattern_count + 1
  end
  if not info then return huge, true end
  local n = #s + 1
  local cost = ((info.anchored and name ~= "gmatch") and 1 or n) * (#p + 1) * 2 ^ info.opts
  -- where each repetition ends never goes back before the previous one:
  -- at most C(n + reps, reps) ways to place them
  for j = 1, info.reps do
    cost = cost * (n + j) / j
    if cost > C_MATCH_LIMIT then break end
  end
  return cost, info.reps + info.opts > 0
end

-- The string a C string function would see, or nil (then C reports the bad argument).
local function str_arg(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  return nil
end

-- nil, an integer, or false when C must report the bad argument
local function int_arg(v)
  if v == nil then return nil end
  local t = type(v)
  return (t == "number" or t == "string") and tointeger(v) or false
end

-- A linear match runs in C, charged before it starts (so a huge one fails
-- without running); a backtracking one too while its worst case is small.
local function cheap_match(name, s, p)
  local cost, backtracks = worst_case(name, s, p)
  if backtracks and cost > C_MATCH_LIMIT then return false end
  charge(cost // C_MATCH_CHARGE)
  return true
end

-- A wrapper calls C under pcall and raises C's error again from here, so the
-- message names the user's line and the function's public name, as a direct
-- call of the C function would. (Under pcall, C's own errors carry no
-- position; one that does was raised by a metamethod C called: as it is.)
local function c_failed(name, e)
  if type(e) ~= "string" or e == MEMORY or e == budget_message then error(e, 0) end
  local _, here = c_find(e, '^%[string "<python>"%]:%d+: ')   -- raised by Lua in this wrapper
  if here then
    e = ssub(e, here + 1)
  elseif c_find(e, "^[^\n]-:%d+: ") then
    error(e, 0)
  end
  error(c_gsub(e, "^(bad argument #%d+ to )'[^']*'", "%1'" .. name .. "'", 1), 3)
  -- level 3: c_failed < the wrapper (or pass, tail-called from it) < the user
end
local function pass(name, ok, ...)
  if ok then return ... end
  c_failed(name, (...))
end

local safe_string = {}
for k, v in pairs(string) do safe_string[k] = v end
safe_string.dump = nil

function safe_string.find(s, p, init, plain)
  local s2, p2, i2 = str_arg(s), str_arg(p), int_arg(init)
  if not s2 or not p2 or i2 == false then return pass("find", pcall(c_find, s, p, init, plain)) end
  if plain or not c_find(p2, SPECIALS) then
    charge((#s2 + #p2) // BYTES_PER_INSTRUCTION)
    return c_find(s2, p2, i2, plain)
  end
  if cheap_match("find", s2, p2) then return pass("find", pcall(c_find, s2, p2, i2)) end
  return lua_patterns.find_aux(true, s2, p2, i2)
end

-- match and gmatch: C while cheap, else the Lua matcher
local function matcher(name, c_fn, lua_fn)
  safe_string[name] = function(s, p, init)
    local s2, p2, i2 = str_arg(s), str_arg(p), int_arg(init)
    if not s2 or not p2 or i2 == false then return pass(name, pcall(c_fn, s, p, init)) end
    if cheap_match(name, s2, p2) then return pass(name, pcall(c_fn, s2, p2, i2)) end
    return lua_fn(s2, p2, i2)
  end
end
matcher("match", c_match, lua_patterns.match)
matcher("gmatch", c_gmatch, lua_patterns.gmatch)

local REPL = { string = true, number = true, table = true, ["function"] = true }
function safe_string.gsub(s, p, repl, max_n)
  local s2, p2, n2 = str_arg(s), str_arg(p), int_arg(max_n)
  if not s2 or not p2 or n2 == false or not REPL[type(repl)] then
    return pass("gsub", pcall(c_gsub, s, p, repl, max_n))
  end
  charge(#s2 // BYTES_PER_INSTRUCTION)
  if not cheap_match("gsub", s2, p2) then return lua_patterns.gsub(s2, p2, repl, n2) end
  local ok, r, n = pcall(c_gsub, s2, p2, repl, n2)
  if not ok then c_failed("gsub", r) end
  charge(#r // BYTES_PER_INSTRUCTION)   -- a long replacement makes the result longer than s
  return r, n
end

-- string.rep is charged by its bytes and its repetitions: an empty string
-- repeated math.maxinteger times copies nothing, for ever.
function safe_string.rep(s, n, sep)
  local n2 = int_arg(n)
  if n2 and type(s) == "string" and (sep == nil or type(sep) == "string") and n2 > 0 then
    local size = (#s + #(sep or "")) * n2
    if size > MAX_REP or size < 0 then
      error(sfmt("string.rep: result of %.0f bytes is over the %d byte limit", (#s + #(sep or "")) * n2 + 0.0,
        MAX_REP), 2)
    end
    charge((size > n2 and size or n2) // BYTES_PER_INSTRUCTION)
  end
  return pass("rep", pcall(srep, s, n, sep))
end

-- Functions whose C work is proportional to the string they return.
local function charged_by_result(name, f)
  return function(...)
    local ok, r = pcall(f, ...)
    if not ok then c_failed(name, r) end
    if type(r) == "string" then charge(#r // BYTES_PER_INSTRUCTION) end
    return r
  end
end
for _, name in ipairs({ "sub", "upper", "lower", "reverse", "pack" }) do
  safe_string[name] = charged_by_result(name, string[name])
end

-- string.byte returns (and utf8.codepoint decodes) up to a million values:
-- charged by how many.
local function span(s, i, j, default_i, default_j)
  if type(s) ~= "string" then return 0 end
  local n = #s
  i = int_arg(i) or default_i
  j = int_arg(j) or (default_j == "i" and i or n)
  if i < 0 then i = n + i + 1 end
  if j < 0 then j = n + j + 1 end
  if i < 1 then i = 1 end
  if j > n then j = n end
  return j >= i and j - i + 1 or 0
end
local sbyte_c, sunpack_c = string.byte, string.unpack
function safe_string.byte(s, i, j)
  charge(span(s, i, j, 1, "i"))
  return pass("byte", pcall(sbyte_c, s, i, j))
end
function safe_string.unpack(fmt, s, pos)
  if type(s) == "string" and type(fmt) == "string" then charge((#s + #fmt) // BYTES_PER_INSTRUCTION) end
  return pass("unpack", pcall(sunpack_c, fmt, s, pos))
end

---------------------------------------------------------------------------
-- tostring, print and string.format show no addresses: they differ from
-- process to process, and text reaching the history must be the same on
-- replay. A table, function or coroutine is numbered in the order the running
-- thread (one execution) first shows it: "table: 0x0001".
---------------------------------------------------------------------------
local raw_tostring = tostring
local REF = { table = true, ["function"] = true, thread = true, userdata = true }
local current_thread   -- the thread being stepped: its numbering lives in it

local function ref_id(v)
  local ids = current_thread and current_thread.ids
  if ids == nil then
    ids = { n = 0, of = setmetatable({}, { __mode = "k" }) }
    if current_thread then current_thread.ids = ids end
  end
  local id = ids.of[v]
  if id == nil then
    ids.n = ids.n + 1
    id = sfmt("0x%04x", ids.n)
    ids.of[v] = id
  end
  return id
end

local function safe_tostring(v)
  local t = type(v)
  if not REF[t] then return raw_tostring(v) end
  local mt = getmetatable_raw(v)
  if mt ~= nil and rawget(mt, "__tostring") ~= nil then return raw_tostring(v) end
  local name = mt ~= nil and rawget(mt, "__name")
  return (type(name) == "string" and name or t) .. ": " .. ref_id(v)
end

-- %s of a table/function/coroutine and %p take their text from safe_tostring;
-- %p of anything else (strings included: they have no identity) is "(null)".
local function format_refs(fmt, args)
  local i, a = 1, 0
  while true do
    local j = c_find(fmt, "%", i, true)
    if not j then break end
    if sbyte(fmt, j + 1) == 37 then
      i = j + 2
    else
      local _, e, conv = c_find(fmt, "^[-+ #0]*%d*%.?%d*(%a)", j + 1)
      if not e then break end     -- malformed: C reports it
      a = a + 1
      local v = args[a]
      if conv == "p" then
        fmt = ssub(fmt, 1, e - 1) .. "s" .. ssub(fmt, e + 1)
        args[a] = REF[type(v)] and ref_id(v) or "(null)"
      elseif conv == "s" and REF[type(v)] then
        args[a] = safe_tostring(v)
      end
      i = e + 1
    end
  end
  return sfmt(fmt, unpack(args, 1, args.n))
end

function safe_string.format(fmt, ...)
  local ok, r
  if type(fmt) == "string" and (c_find(fmt, "p", 1, true) or c_find(fmt, "%s", 1, true)) then
    ok, r = pcall(format_refs, fmt, pack(...))
  else
    ok, r = pcall(sfmt, fmt, ...)
  end
  if not ok then c_failed("format", r) end
  charge(#r // BYTES_PER_INSTRUCTION)
  return r
end

-- Strings index the sandbox's string table; getmetatable("") gives nothing away.
local string_mt = getmetatable_raw("")
string_mt.__index = safe_string
string_mt.__metatable = false

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- One runtime serves many executions: what they share is read-only.
local readonly_names = setmetatable({}, { __mode = "k" })
local function readonly(t, name, call)
  local proxy = setmetatable({}, {
    __index = t,
    __newindex = function(_, k) error("attempt to change " .. name .. "." .. tostring(k) .. " (read-only)", 2) end,
    -- the iteration state is the view itself: the table behind it never leaves
    __pairs = function(view) return function(_, k) return ordered_next(t, k) end, view, nil end,
    __len = function() return #t end,
    __call = call,   -- string(x): the string library is also the string type's cast (typed Lua)
    __metatable = false,
  })
  readonly_names[proxy] = name
  return proxy
end
sandbox.readonly = readonly

-- rawset would write into a shared proxy (string, os, a module ...) and so
-- change it for every execution in the runtime.
local function safe_rawset(t, k, v)
  local name = readonly_names[t]
  if name then error("attempt to change " .. name .. "." .. tostring(k) .. " (read-only)", 2) end
  return rawset(t, k, v)
end
---------------------------------------------------------------------------
-- The table library loops in C as many times as its arguments say. Each loop
-- is charged before it starts, so a huge count fails at once. A plain table
-- (no metatable) runs in C; a table with a metatable runs here in Lua, where
-- its metamethods (__len above all, which C would ask again) are counted.
---------------------------------------------------------------------------
local safe_table, safe_utf8 = copy(table), copy(utf8)
local tinsert, tremove, tmove, tsort = table.insert, table.remove, table.move, table.sort
local mtype, maxinteger, ult = math.type, math.maxinteger, math.ult

local function plain(t) return type(t) == "table" and getmetatable_raw(t) == nil end

local function length(t, name)
  local n = #t
  if mtype(n) ~= "integer" then error("object length is not an integer", 3) end
  return n
end

local function int_param(v, i, name)
  local n = int_arg(v)
  if not n then
    error(sfmt("bad argument #%d to '%s' (number%s)", i, name,
      type(v) == "number" and " has no integer representation" or " expected, got " .. type(v)), 3)
  end
  return n
end

function safe_table.insert(t, ...)
  local n = select("#", ...)
  if n == 1 and plain(t) then return tinsert(t, ...) end
  if plain(t) or type(t) ~= "table" then
    if n == 2 then
      local pos = int_arg((...))
      if pos then charge(rawlen(t) - pos + 1) end
    end
    return pass("insert", pcall(tinsert, t, ...))
  end
  local e = length(t, "insert") + 1
  if n == 1 then t[e] = ... return end
  if n ~= 2 then error("wrong number of arguments to 'insert'", 2) end
  local pos, v = ...
  pos = int_param(pos, 2, "insert")
  if not ult(pos - 1, e) then error("bad argument #2 to 'insert' (position out of bounds)", 2) end
  for i = e, pos + 1, -1 do t[i] = t[i - 1] end
  t[pos] = v
end

function safe_table.remove(t, pos)
  if plain(t) or type(t) ~= "table" then
    local p = int_arg(pos)
    if p and plain(t) then charge(rawlen(t) - p) end
    return pass("remove", pcall(tremove, t, pos))
  end
  local size = length(t, "remove")
  if pos == nil then pos = size else pos = int_param(pos, 2, "remove") end
  if pos ~= size and ult(size, pos - 1) then   -- C's unsigned pos - 1 <= size
    error("bad argument #2 to 'remove' (position out of bounds)", 2)
  end
  local v = t[pos]
  while pos < size do
    t[pos] = t[pos + 1]
    pos = pos + 1
  end
  t[pos] = nil
  return v
end

function safe_table.move(a1, f, e, t, a2)
  local f2, e2, t2 = int_arg(f), int_arg(e), int_arg(t)
  if f2 and e2 and t2 and e2 >= f2 and (f2 > 0 or e2 < maxinteger + f2) then
    local n = e2 - f2 + 1
    if t2 <= maxinteger - n + 1 then
      charge(n)
      local dest = a2 == nil and a1 or a2
      if not (plain(a1) and plain(dest)) and type(a1) == "table" and type(dest) == "table" then
        if t2 > e2 or t2 > f2 or (a2 ~= nil and a1 ~= a2) then
          for i = 0, n - 1 do dest[t2 + i] = a1[f2 + i] end
        else
          for i = n - 1, 0, -1 do dest[t2 + i] = a1[f2 + i] end
        end
        return dest
      end
    end
  end
  return pass("move", pcall(tmove, a1, f, e, t, a2))
end

-- concat and unpack take explicit bounds, so C never asks __len itself.
function safe_table.concat(t, sep, i, j)
  if type(t) == "table" then
    i = i == nil and 1 or i
    if j == nil then j = plain(t) and rawlen(t) or length(t, "concat") end
    local i2, j2 = int_arg(i), int_arg(j)
    if i2 and j2 and j2 >= i2 then charge(j2 - i2 + 1) end
  end
  local ok, r = pcall(concat, t, sep, i, j)
  if not ok then c_failed("concat", r) end
  charge(#r // BYTES_PER_INSTRUCTION)
  return r
end

function safe_table.unpack(t, i, j)
  if type(t) == "table" then
    i = i == nil and 1 or i
    if j == nil then j = plain(t) and rawlen(t) or length(t, "unpack") end
    local i2, j2 = int_arg(i), int_arg(j)
    if i2 and j2 and j2 >= i2 then charge(j2 - i2 + 1) end
  end
  return pass("unpack", pcall(unpack, t, i, j))
end

-- n log n comparisons, charged before unless a Lua function makes them (it
-- is counted as it runs); a table with a metatable is sorted as a plain copy,
-- and written back.
function safe_table.sort(t, comp)
  if type(t) ~= "table" then return pass("sort", pcall(tsort, t, comp)) end
  local n = plain(t) and rawlen(t) or length(t, "sort")
  if n > 1 and (type(comp) ~= "function" or getinfo(comp, "S").what == "C") then
    local log = 1
    while (1 << log) < n and log < 62 do log = log + 1 end
    charge(n * log)
  end
  if plain(t) then return pass("sort", pcall(tsort, t, comp)) end
  local copy_ = {}
  for i = 1, n do copy_[i] = t[i] end
  local ok, err = pcall(tsort, copy_, comp)
  if not ok then c_failed("sort", err) end
  for i = 1, n do t[i] = copy_[i] end
end

-- utf8: charged by the bytes they scan or the values they return.
local ulen_c, uoffset_c, ucodepoint_c = utf8.len, utf8.offset, utf8.codepoint
function safe_utf8.len(s, i, j, lax)
  if type(s) == "string" then charge(#s // BYTES_PER_INSTRUCTION) end
  return pass("len", pcall(ulen_c, s, i, j, lax))
end
function safe_utf8.offset(s, n, i)
  if type(s) == "string" then charge(#s // BYTES_PER_INSTRUCTION) end
  return pass("offset", pcall(uoffset_c, s, n, i))
end
function safe_utf8.codepoint(s, i, j, lax)
  charge(span(s, i, j, 1, "i"))
  return pass("codepoint", pcall(ucodepoint_c, s, i, j, lax))
end

---------------------------------------------------------------------------
-- Errors (Wippy's error objects): err:kind(), err:message(), err:retryable(),
-- err:details(), err:stack(); tostring(err) is the message. What an error
-- holds lives in a private table keyed by the error, so an error cannot be
-- changed once made (it may cross from one execution's code to a module's).
---------------------------------------------------------------------------
local Error = {}
local error_parts_of = setmetatable({}, { __mode = "k" })   -- err -> { kind, message, retryable, details, stack }
local Error_methods = {}
Error.__index = readonly(Error_methods, "error")
Error.__name = "error"
Error.__metatable = false
Error.__newindex = function(_, k) error("attempt to change error." .. tostring(k) .. " (read-only)", 2) end
Error.__tostring = function(e) return error_parts_of[e][2] end
Error.__tojson = function(e)
  local p = error_parts_of[e]
  return { kind = p[1], message = p[2], retryable = p[3], details = p[4] }
end
function Error_methods:kind() return error_parts_of[self][1] end
function Error_methods:message() return error_parts_of[self][2] end
function Error_methods:retryable() return error_parts_of[self][3] end
function Error_methods:details() return error_parts_of[self][4] end
function Error_methods:stack() return error_parts_of[self][5] or "" end
sandbox.Error = Error

--- An error object. `stack`: the traceback where it was made, if known.
local function new_error(kind, message, retryable, details, stack)
  local e = setmetatable({}, Error)
  error_parts_of[e] = { kind, message, retryable == true, details, stack }
  readonly_names[e] = "error"
  return e
end
sandbox.new_error = new_error
--- The user's frames of a traceback from `level` up (for err:stack()).
local function stack_here(level)
  local out, n = { "stack traceback:" }, 1
  for line in c_gmatch(traceback("", level + 1), "[^\n]+") do
    -- C frames, the sandbox and its modules (chunk names without a path) are plumbing
    if not c_find(line, "[C]", 1, true) and not c_find(line, "<python>", 1, true)
        and not c_find(line, "^%s*[%w_]+:%d+:") and not c_find(line, "^%s*%(%.%.%.tail calls%.%.%.%)")
        and not c_find(line, "^stack traceback:") then
      n = n + 1
      out[n] = line
    end
  end
  return concat(out, "\n", 1, n)
end

--- kind, message, retryable, details, stack of an error object (nil for anything else).
local function error_fields(e)
  local p = getmetatable_raw(e) == Error and error_parts_of[e]
  if p then return p[1], p[2], p[3], p[4], p[5] end
end

---------------------------------------------------------------------------
-- Values cross to Python as JSON text, encoded here so that a bad value is
-- reported at the Lua call site with its path. Keys are sorted. An empty
-- table is an object `{}` unless it is marked as an array (json.array(), or
-- it came from a JSON array); a non-empty table is an array exactly when its
-- keys are 1..n.
---------------------------------------------------------------------------
local ARRAY = { __name = "array" }
sandbox.ARRAY = ARRAY
-- An empty table decoded from a JSON object: json.encode writes it as {}, not [].
local OBJECT = { __name = "object" }

-- json.null: JSON null where nil cannot stand (inside arrays, where nil would
-- be a hole and `#` would lie). Shared by every execution, so read-only.
local NULL = setmetatable({}, {
  __name = "json.null",
  __tostring = function() return "null" end,
  __tojson = function() return nil end,
  __newindex = function() error("attempt to change json.null (read-only)", 2) end,
  __metatable = false,
})
readonly_names[NULL] = "json.null"
sandbox.null = NULL
-- A table with only integer keys 1..max (some missing: encoded as null) is an
-- array unless it is this sparse: a stray huge index must not write megabytes of nulls.
local function too_sparse(max, count) return max > 2 * count + 16 end
local sgsub, mtype = string.gsub, math.type
local ESC = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
local function esc(c) return ESC[c] or sfmt("\\u%04x", sbyte(c)) end

local function invalid(path, msg)
  return new_error("Invalid", path .. ": " .. msg, false)
end

-- The encoder keeps the path as a stack of keys (ps[0] is the root's name)
-- and builds its text only for an error: most values never need it. A long
-- path keeps its first 8 and last 4 keys (as moontide.values does).
local function path_of(ps, d)
  local parts, n = { ps[0] }, 1
  for i = 1, d do
    if d <= 12 or i <= 8 or i > d - 4 then
      local k = ps[i]
      n = n + 1
      parts[n] = mtype(k) == "integer" and "[" .. k .. "]" or "." .. k
    elseif i == 9 then
      n = n + 1
      parts[n] = "...(" .. (d - 12) .. " more)..."
    end
  end
  return concat(parts)
end

local ESCAPED = '[%c"\\\128-\255]'   -- ASCII text without these crosses as it is
local ulen = utf8.len

local function quoted(s, ps, d)
  if ulen(s) == nil then error(invalid(path_of(ps, d), "string is not valid UTF-8"), 0) end
  return (sgsub(s, '[%c"\\]', esc))
end

local function float_text(v, ps, d)
  if v ~= v or v == huge or v == -huge then
    if ps.wippy then return "null" end
    error(invalid(path_of(ps, d), "number " .. tostring(v) .. " has no JSON form"), 0)
  end
  local s = sfmt("%.14g", v)
  if tonumber(s) ~= v then s = sfmt("%.17g", v) end
  -- a float stays a float: 1.0 as "1" would come back as the integer 1
  if not sfind(s, "[.eE]") then s = s .. ".0" end
  return s
end

--- How a table with `count` keys and border `len` encodes: "array", "holes"
--- (an array whose gaps are null) or "object"; raises for what cannot cross.
local function table_shape(v, mt, count, len, ps, d)
  if count == len and (len > 0 or mt == ARRAY) then return "array" end
  if count == 0 then return "object" end
  local max = 0
  for key in next, v do
    if mtype(key) ~= "integer" or key < 1 then max = nil break end
    if key > max then max = key end
  end
  if max == nil then
    if mt == ARRAY then error(invalid(path_of(ps, d), "array has named fields"), 0) end
    return "object"
  end
  if too_sparse(max, count) then
    error(invalid(path_of(ps, d), sfmt("array with %d values has index %d; fill the gaps with json.null " ..
      "or use string keys", count, max)), 0)
  end
  return "holes", max
end

local function bad_key(key, ps, d)
  local shown = (type(key) == "number" or type(key) == "boolean") and tostring(key) or ("of type " .. type(key))
  error(invalid(path_of(ps, d), "table mixes field names with the key " .. shown ..
    " (JSON objects have string keys; arrays have keys 1..n)"), 0)
end

-- Field names repeat from message to message: remember which need no escaping.
local plain_keys, plain_count = {}, 0
local function key_text(key, ps, d)
  if sfind(key, ESCAPED) then return quoted(key, ps, d) end
  if plain_count >= 4096 then plain_keys, plain_count = {}, 0 end
  plain_keys[key], plain_count = key, plain_count + 1
  return key
end

-- encode(v, ps, d, stack, buf, n) appends v's text to buf[n + 1 ...] and
-- returns the new n. stack[1..d] are the tables being encoded around v.
local encode

local function encode_table(v, mt, ps, d, stack, buf, n)
  -- moontide.values.MAX_DEPTH: what Python can decode again (and it bounds the loop below)
  if d >= max_depth then error(invalid(path_of(ps, d), too_deep), 0) end
  for i = 1, d do
    if stack[i] == v then error(invalid(path_of(ps, d), "table contains itself"), 0) end
  end
  local d1 = d + 1
  stack[d1] = v
  local count, len = 0, rawlen(v)
  for _ in next, v do count = count + 1 end
  local shape, max = table_shape(v, mt, count, len, ps, d)
  if shape ~= "object" then
    if max then len = max end
    n = n + 1
    buf[n] = "["
    for i = 1, len do
      if i > 1 then n = n + 1; buf[n] = "," end
      local item = rawget(v, i)
      if mtype(item) == "integer" then
        n = n + 1
        buf[n] = item
      else
        -- #v found a border while other keys lie beyond it
        if item == nil and shape == "array" then error(invalid(path_of(ps, d), "array has named fields"), 0) end
        ps[d1] = i
        n = encode(item, ps, d1, stack, buf, n)
      end
    end
    n = n + 1
    buf[n] = "]"
  elseif count == 0 then
    n = n + 1
    buf[n] = (ps.wippy and mt ~= OBJECT) and "[]" or "{}"
  elseif count == 1 then
    local key = next(v)
    if type(key) ~= "string" then bad_key(key, ps, d) end
    buf[n + 1] = '{"'
    buf[n + 2] = plain_keys[key] or key_text(key, ps, d)
    buf[n + 3] = '":'
    ps[d1] = key
    n = encode(rawget(v, key), ps, d1, stack, buf, n + 3)
    n = n + 1
    buf[n] = "}"
  else
    local keys, k = {}, 0
    for key in next, v do
      if type(key) ~= "string" then bad_key(key, ps, d) end
      k = k + 1
      keys[k] = key
    end
    if k > 1 then sort(keys) end
    for i = 1, k do
      local key = keys[i]
      buf[n + 1] = i == 1 and '{"' or ',"'
      buf[n + 2] = plain_keys[key] or key_text(key, ps, d)
      buf[n + 3] = '":'
      ps[d1] = key
      n = encode(rawget(v, key), ps, d1, stack, buf, n + 3)
    end
    n = n + 1
    buf[n] = "}"
  end
  stack[d1] = nil
  return n
end

function encode(v, ps, d, stack, buf, n)
  local t = type(v)
  if t == "string" then
    buf[n + 1] = '"'
    buf[n + 2] = sfind(v, ESCAPED) and quoted(v, ps, d) or v
    buf[n + 3] = '"'
    return n + 3
  elseif t == "number" then
    -- table.concat writes an integer as "%d" itself
    buf[n + 1] = mtype(v) == "integer" and v or float_text(v, ps, d)
    return n + 1
  elseif t == "boolean" then
    buf[n + 1] = v and "true" or "false"
    return n + 1
  elseif t == "nil" then
    buf[n + 1] = "null"
    return n + 1
  elseif t == "table" then
    local mt = getmetatable_raw(v)
    if mt ~= nil then
      local tojson = rawget(mt, "__tojson")
      if tojson then return encode(tojson(v), ps, d, stack, buf, n) end
    end
    return encode_table(v, mt, ps, d, stack, buf, n)
  end
  error(invalid(path_of(ps, d), t .. " values cannot cross to JSON"), 0)
end

local function encode_failed(err)
  if err == MEMORY then error(MEMORY, 0) end
  if getmetatable_raw(err) ~= Error then err = new_error("Invalid", describe(err), false) end
  return nil, err
end

-- One set of scratch tables per runtime, reused while no encode is under
-- way (a __tojson metamethod may encode, or even yield, in the middle of one).
local scratch_buf, scratch_ps, scratch_stack, scratch_busy = {}, {}, {}, false

--- JSON text of a value, or nil and an Invalid error naming the path.
--- `wippy`: json.encode's rules where Wippy's differ (an empty table is [],
--- NaN and infinities are null); kept in the path stack, which is per call.
local function to_json(v, path, wippy)
  if scratch_busy then
    local buf = {}
    local ok, n = pcall(encode, v, { [0] = path or "value", wippy = wippy }, 0, {}, buf, 0)
    if not ok then return encode_failed(n) end
    return concat(buf, "", 1, n)
  end
  scratch_busy = true
  local buf = scratch_buf
  scratch_ps[0], scratch_ps.wippy = path or "value", wippy
  local ok, n = pcall(encode, v, scratch_ps, 0, scratch_stack, buf, 0)
  local text
  if ok then
    text = concat(buf, "", 1, n)
    -- let go of the strings the buffer holds: they are the user's
    if n <= 64 then for i = 1, n do buf[i] = nil end else scratch_buf = {} end
  else
    scratch_buf, scratch_ps, scratch_stack = {}, {}, {}
  end
  scratch_busy = false
  if not ok then return encode_failed(n) end
  return text
end
sandbox.to_json = to_json

--- to_json for Python (rt.from_lua), called outside a step: a __tojson
--- metamethod is user code, so it runs under the instruction budget.
function sandbox.to_json_bounded(v, path, limit)
  local ok, out, err = bounded(limit, to_json, v, path)
  if ok then
    if out == nil then return nil, err end
    return out
  end
  if out == budget_message then
    return nil, new_error("Invalid", path .. ": converting the value to JSON ran past the instruction budget " ..
      "(a __tojson metamethod that does not end?)", false)
  end
  return nil, new_error("Invalid", path .. ": " .. describe(out), false)
end

--- kind, message, retryable, details of an error value, read without
--- metamethods (Python's err["kind"] would run a user __index unbudgeted).
function sandbox.error_parts(e, limit)
  if type(e) ~= "table" then
    local ok, text = bounded(limit, describe, e)
    return nil, ok and text or "(error object is a " .. type(e) .. " value)"
  end
  local kind, message, retryable, details = error_fields(e)
  if kind == nil then   -- a plain table shaped like one is taken as an error too
    kind, message, retryable, details = rawget(e, "kind"), rawget(e, "message"), rawget(e, "retryable"), rawget(e, "details")
  end
  if type(kind) ~= "string" or type(message) ~= "string" then
    local ok, text = bounded(limit, describe, e)
    return nil, ok and text or "(error object is a table value)"
  end
  return kind, message, retryable == true, details
end

--- JSON text of the arguments array (nil, err on a bad one), for the host.
local function args_json(count, ...)
  local buf, n, ps, stack = { "[" }, 1, {}, {}
  for i = 1, count do
    if i > 1 then n = n + 1; buf[n] = "," end
    ps[0] = "argument " .. i
    local ok, n2 = pcall(encode, (select(i, ...)), ps, 0, stack, buf, n)
    if not ok then return encode_failed(n2) end
    n = n2
  end
  n = n + 1
  buf[n] = "]"
  return concat(buf, "", 1, n)
end
sandbox.args_json = args_json

function sandbox.mark_array(t) return setmetatable(t, ARRAY) end
function sandbox.mark_object(t) return setmetatable(t, OBJECT) end

--- Call the host synchronously; host errors become `nil, err`. An answer may
--- carry a charge for work done in Python (json.decode); "not enough memory"
--- means what the host made for Lua does not fit: the memory error, uncatchable.
local function call_host(...)
  local ok, value, kind, retryable, cost = host(...)
  if cost then charge(cost) end
  if ok then return value end
  if value == MEMORY and kind == nil then error(MEMORY, 0) end
  return nil, new_error(kind, value, retryable, nil, stack_here(2))
end
sandbox.call_host = call_host

--- Call the host and raise its error (for functions that cannot return nil, err).
local function must(...)
  local ok, value, kind, retryable, cost = host(...)
  if cost then charge(cost) end
  if ok then return value end
  if value == MEMORY and kind == nil then error(MEMORY, 0) end
  error(new_error(kind, value, retryable, nil, stack_here(2)), 3)
end

---------------------------------------------------------------------------
-- Module loading: each module is a Lua chunk from lua/modules/, compiled on
-- first require in this runtime and shared by the runtime's programs.
---------------------------------------------------------------------------
local module_cache = {}

--- s with each byte as the code point of the same value: valid UTF-8 whatever
--- s holds, so binary data reaches the host intact (read there as Latin-1).
local uchar = utf8.char
local function as_latin1(s)
  if type(s) ~= "string" or not c_find(s, "[\128-\255]") then return s end
  local parts, n = {}, 0
  for i = 1, #s, 4096 do
    n = n + 1
    parts[n] = uchar(sbyte(s, i, i + 4095))
  end
  charge(#s // BYTES_PER_INSTRUCTION)
  return concat(parts)
end

local module_api = {
  as_latin1 = as_latin1,
  sys = sys, host = call_host, must = must, new_error = new_error, Error = Error,
  to_json = to_json, args_json = args_json, ARRAY = ARRAY, null = NULL,
  result = function(ok, v) if ok then return v end return nil, v end,
  getmetatable = getmetatable_raw, readonly = readonly,
  is_error = function(e) return getmetatable_raw(e) == Error end,
  error_fields = error_fields, stack_here = stack_here,
  date = function(fmt, t) return real_date("!" .. fmt, t) end,
}

local function load_module(name)
  local m = module_cache[name]
  if m == nil then
    local src = must("module.source", name)
    local chunk = assert(load(src, "=" .. name, "t", sandbox.base_env))
    m = readonly(chunk(module_api, name), name)
    module_cache[name] = m
  end
  return m
end
module_api.require = load_module

---------------------------------------------------------------------------
-- Environments: one per program (an entry and its imports).
---------------------------------------------------------------------------
-- The array marker is shared by every execution: getmetatable must not hand it out.
local function safe_getmetatable(v)
  local mt = getmetatable(v)
  if mt == ARRAY or mt == OBJECT then return false end
  return mt
end

local function safe_setmetatable(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable: __gc metamethods are not allowed (garbage collection timing is not deterministic)", 2)
  end
  return setmetatable(t, mt)
end

-- os and math are per runtime because their meaning depends on the host
-- (workflow time and seeded random inside workflows).
local safe_math = copy(math)
safe_math.random, safe_math.randomseed = nil, nil

--- A splitmix64 generator: math.random for one execution, seeded by the host
--- (the workflow's recorded random inside workflows).
local function new_random(seed)
  local s = seed
  local function next64()
    s = s + 0x9E3779B97F4A7C15
    local z = s
    z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    return z ~ (z >> 31)
  end
  local function random(m, n)
    if m == nil then return (next64() >> 11) * (1.0 / 9007199254740992.0) end
    if n == nil and m == 0 then return next64() end  -- Lua 5.4: random(0) is an integer with all bits random
    if n == nil then m, n = 1, m end
    m, n = math.tointeger(m), math.tointeger(n)
    if m == nil or n == nil then error("bad argument to 'random' (number has no integer representation)", 2) end
    if m > n then error("bad argument to 'random' (interval is empty)", 2) end
    return m + (next64() >> 1) % (n - m + 1)
  end
  local function randomseed(x) s = math.tointeger(x) or math.floor(x) end
  return setmetatable({ random = random, randomseed = randomseed },
    { __index = safe_math, __newindex = function() error("attempt to change math (read-only)", 2) end, __metatable = false })
end


local function utc_time(t)
  -- os.time{...} in UTC, independent of the worker's time zone.
  local y, m = t.year, t.month
  if y == nil or m == nil or t.day == nil then error("os.time: field 'day', 'month' and 'year' are required", 3) end
  y = y + (m - 1) // 12
  m = (m - 1) % 12 + 1
  if m <= 2 then y = y - 1 end
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + t.day - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + (t.hour or 12) * 3600 + (t.min or 0) * 60 + (t.sec or 0)
end

local safe_os = {
  time = function(t)
    if t == nil then return must("now") // 1000000000 end
    return utc_time(t)
  end,
  date = function(fmt, t)
    fmt = fmt or "%c"
    if type(fmt) ~= "string" then error("bad argument #1 to 'date' (string expected, got " .. type(fmt) .. ")", 2) end
    if c_find(fmt, "^!") == nil then fmt = "!" .. fmt end
    local ok, r = pcall(real_date, fmt, t or must("now") // 1000000000)
    if not ok then c_failed("date", r) end
    if type(r) == "string" then charge((#fmt + #r) // BYTES_PER_INSTRUCTION) end
    return r
  end,
  clock = function() return must("clock") end,
  difftime = function(a, b) return a - (b or 0) end,
}

-- tonumber scans its whole string.
local function safe_tonumber(...)
  local v, base = ...
  if type(v) == "string" then charge(#v // BYTES_PER_INSTRUCTION) end
  if base == nil and select("#", ...) == 1 then return tonumber(v) end
  return pass("tonumber", pcall(tonumber, ...))
end

-- What compiling costs, in source bytes per instruction of the budget.
local LOAD_BYTES_PER_INSTRUCTION = 4

---------------------------------------------------------------------------
-- Typed Lua (Wippy's gradual types): types as runtime values. typed.py
-- erases annotations before Lua compiles; `type` statements, checked locals
-- and typeof become calls to __moontide_types. _types.lua builds the values:
-- read-only proxies, the built-in ones shared by every execution.
---------------------------------------------------------------------------
local types_rt
do
  local ok, src = host("module.source", "_types")
  assert(ok, src)
  types_rt = assert(load(src, "=_types", "t", {}))({
    type = type, next = next, ordered_next = ordered_next, rawget = rawget, rawequal = rawequal,
    select = select, error = error, pcall = pcall, tostring = tostring, unpack = unpack,
    setmetatable = setmetatable, getmetatable = getmetatable_raw,
    math_type = math.type, tointeger = math.tointeger,
    sformat = sfmt, sbyte = sbyte, sfind = c_find, concat = concat, sort = sort, ulen = utf8.len,
    charge = charge, new_error = new_error, is_error = module_api.is_error,
    protect = function(proxy, name) readonly_names[proxy] = name end,
  })
end
module_api.types = types_rt.runtime

---------------------------------------------------------------------------
-- coroutine.spawn: what it spawns runs as tasks of the execution, scheduled
-- inside the step by modules/_sched.lua, which the channel module parks and
-- wakes tasks through.
---------------------------------------------------------------------------
local sched
do
  local ok, src = host("module.source", "_sched")
  assert(ok, src)
  sched = assert(load(src, "=_sched", "t", {}))({
    co_create = co_create, co_resume = co_resume, co_yield = co_yield, co_status = co_status,
    arm = arm, SYS = SYS, pack = pack, unpack = unpack, error = error, type = type, ipairs = ipairs,
    tostring = safe_tostring, spent = spent, call_host = call_host, to_json = to_json, mark_array = sandbox.mark_array,
    thread = function() return current_thread end,
    set_main = function(co) sandbox.main = co end,
  })
end
user_coroutine.spawn = sched.spawn
module_api.sched = sched.api

local function base_env()
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = ordered_next, pairs = ordered_pairs,
    pcall = safe_pcall, xpcall = safe_xpcall, rawequal = rawequal, rawget = rawget, rawlen = rawlen, rawset = safe_rawset,
    select = select, setmetatable = safe_setmetatable, getmetatable = safe_getmetatable,
    tonumber = safe_tonumber, tostring = safe_tostring, type = type,
    string = readonly(safe_string, "string", types_rt.string_call), table = readonly(safe_table, "table"),
    utf8 = readonly(safe_utf8, "utf8"), coroutine = readonly(user_coroutine, "coroutine"),
    math = readonly(safe_math, "math"), os = readonly(safe_os, "os"),
    _VERSION = _VERSION,
  }
  for name, value in next, types_rt.globals do env[name] = value end   -- typeof, integer(x), Number ...
  env.__moontide_types = readonly(types_rt.runtime, "__moontide_types")
  -- No _G here: with the execution's own _G set to nil, `_G` would be looked
  -- up in this table, shared by every execution of the runtime.
  return env
end
sandbox.base_env = base_env()

-- Wippy's ambient globals: these modules need no `modules` entry, as globals
-- or through require. The old global subscribe/unsubscribe point to the events module.
local AMBIENT = {}
for _, name in ipairs({ "channel", "errors", "payload", "process" }) do
  if host("module.source", name) then
    AMBIENT[name] = true
    sandbox.base_env[name] = load_module(name)
  end
end
local function no_event_bus()
  error(new_error("Unavailable", "the global subscribe/unsubscribe are not available in Moontide: use the " ..
    "events module (events.subscribe, events.send), process.send, process.listen or channels", false), 2)
end
sandbox.base_env.subscribe, sandbox.base_env.unsubscribe = no_event_bus, no_event_bus

function sandbox.new_env(program_name, modules, imports, seed)
  -- The shared base is reached only through this metatable, which no one can
  -- read (__metatable) and no key of the base leads back to.
  local env = setmetatable({ math = new_random(seed) }, { __index = sandbox.base_env, __metatable = false })
  env._G = env
  local allowed = {}
  for _, name in ipairs(modules) do allowed[name] = true end
  env.require = function(name)
    if allowed[name] or AMBIENT[name] then return load_module(name) end
    local lib = imports[name]
    if lib ~= nil then return lib end
    error(sfmt("require(%q): module not declared in the 'modules' of %s", tostring(name), program_name), 2)
  end
  -- declared modules are globals too, as in `funcs.call(...)` without require
  for _, name in ipairs(modules) do
    env[name] = load_module(name)
  end
  env.load = function(chunk, name, mode, chunk_env)
    if type(chunk) ~= "string" then error("load: only text chunks are allowed", 2) end
    if mode ~= nil and mode ~= "t" then error("load: only text chunks are allowed (mode 't')", 2) end
    charge(#chunk // LOAD_BYTES_PER_INSTRUCTION)
    local f, err = load(chunk, name, "t", chunk_env or env)
    if f == nil and err == MEMORY then error(MEMORY, 0) end
    return f, err
  end
  env.print = function(...)
    local parts = pack(...)
    for i = 1, parts.n do parts[i] = safe_tostring(parts[i]) end
    local line = concat(parts, "\t", 1, parts.n)
    charge(#line // BYTES_PER_INSTRUCTION)
    host("log", "info", line)
  end
  return env
end

--- Compile a chunk once into a factory: factory(env) runs it with that env.
--- The chunk body becomes a function of _ENV, so every execution gets its
--- own globals and closures while the compiled code is shared. The prefix
--- stays on line 1, so line numbers are the source's.
function sandbox.compile(source, chunkname)
  -- Parse the source alone first: a source like "end, <expr>, function(_ENV)"
  -- would otherwise close the wrapper and run <expr> here, unbudgeted, and a
  -- syntax error would be reported on the wrapper's last line.
  local ok, perr = load(source, "@" .. chunkname, "t", {})
  if not ok then return nil, perr end
  local chunk, err = load("return function(_ENV, ...) " .. source .. "\nend", "@" .. chunkname, "t", {})
  if not chunk then return nil, err end
  return chunk()
end



---------------------------------------------------------------------------
-- Running user code: Python starts a thread and steps it. Each step runs
-- until the code finishes, fails or asks the host for something blocking.
---------------------------------------------------------------------------
local function finish(co, ok, ...)
  if not ok then
    local err = ...
    local tb = traceback(co, nil, 0)
    local kind, message, retryable = error_fields(err)
    if kind ~= nil then
      return "error", message, tb, kind, retryable
    end
    return "error", describe(err), tb
  end
  if co_status(co) == "dead" then return "done", ... end
  local tag = ...
  if tag ~= SYS then
    return "error", "coroutine.yield outside a coroutine", traceback(co, nil, 0)
  end
  return "yield", select(2, ...)
end

local function finish_step(co, ...)
  -- A dead coroutine keeps its stack: holding it here would keep what filled
  -- the memory alive after a memory error.
  sandbox.main, current_thread = nil, nil
  return finish(co, ...)
end

-- Threads go to Python inside a table: lupa would wrap a bare coroutine.
function sandbox.start(fn)
  return { co = co_create(fn) }
end

-- Once the execution has spawned, the scheduler's coroutine runs it: it yields
-- what the tasks ask the host, and ends as the main task ends or a task fails.
local function finish_sched(sco, ok, ...)
  sandbox.main, current_thread = nil, nil
  if not ok then return finish(sco, false, ...) end   -- the budget or the memory, in the scheduler itself
  if co_status(sco) ~= "dead" then return "yield", select(2, ...) end
  local what, co, err = ...
  if what == "done" then return "done", select(2, ...) end
  return finish(co, false, err)   -- a task failed: its error, its traceback
end

local function after_main(thread, co, ...)
  if thread.sched == nil then return finish_step(co, ...) end
  return finish_sched(sched.enter(thread, ...))   -- it spawned: the scheduler takes over
end

function sandbox.step(thread, limit, ...)
  local co = thread.co
  budget, used = limit, 0
  deadline = cpu_limit > 0 and clock() + cpu_limit or huge
  sandbox.main, current_thread = co, thread
  if thread.sched then return finish_sched(sched.step(thread, ...)) end
  arm(co)
  return after_main(thread, co, co_resume(co, ...))
end

--- Instructions charged so far in this step (for tests and benchmarks).
--- "file:line" of the user code a thread is at: the innermost frame of a user
--- chunk (chunk names "@file") in its running task, else the task that ran last.
--- Which Lua line made a Temporal command (replay reports name it).
function sandbox.where(thread)
  local S = thread.sched
  local task = S and (S.running or S.last)
  local co = task and task.co or thread.co
  for level = 0, 250 do
    local info = getinfo(co, level, "Sl")
    if info == nil then return nil end
    if c_find(info.source, "^@") and info.currentline > 0 then
      return info.short_src .. ":" .. info.currentline
    end
  end
end

function sandbox.instructions_used()
  return used
end

function sandbox.set_budget(limit)
  budget = limit
end

--- Seconds of thread CPU one step may take (0: no limit); see count_hook.
function sandbox.set_cpu_limit(seconds)
  cpu_limit = seconds
end

sandbox.unpack = unpack
sandbox.pack = pack

-- What user code may never see.
_G.debug, _G.io, _G.package, _G.python, _G.require, _G.dofile, _G.loadfile = nil
return sandbox
