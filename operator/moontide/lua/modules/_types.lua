-- _types: Wippy's types as runtime values (typed Lua, en/lua/types.md).
--
-- The prelude loads this once per Lua state, in an empty environment, and
-- hands it what it needs (`api`). It returns the constructors translated code
-- calls (`runtime`: `type` statements, checked locals, typeof; see typed.py),
-- the globals (`globals`: typeof, the casts integer/number/boolean, the type
-- names Number, Integer, String ...) and the cast behind `string(x)`.
--
-- A type is a read-only proxy: an empty table whose data lives in `D` below,
-- out of user code's reach. The built-in types are shared by every execution
-- of the state; a type a program declares belongs to that execution. Calling a
-- type validates (`T(x)` raises an Invalid error naming the path, `T:is(x)`
-- returns nil, err), comparing types compares structure (`==`) or subtyping
-- (`<=`, `<`), and the methods of the page reflect on it.
local api = ...
local type, next, ordered_next, rawget, rawequal = api.type, api.next, api.ordered_next, api.rawget, api.rawequal
local select, error, pcall, tostring = api.select, api.error, api.pcall, api.tostring
local setmetatable, getmetatable = api.setmetatable, api.getmetatable
local math_type, tointeger = api.math_type, api.tointeger
local sformat, sbyte, sfind, concat, sort = api.sformat, api.sbyte, api.sfind, api.concat, api.sort
local ulen, charge, unpack = api.ulen, api.charge, api.unpack
local new_error, is_error, protect = api.new_error, api.is_error, api.protect

local D = setmetatable({}, { __mode = "k" })   -- proxy -> its data
local TM = { __name = "type", __metatable = false }
local METHODS = {}
local T = {}                                    -- the runtime: constructors and the built-in types

local function make(d)
  local p = setmetatable({}, TM)
  D[p] = d
  protect(p, d.name or "type")
  return p
end

local function is_type(v) return type(v) == "table" and D[v] ~= nil end

---------------------------------------------------------------------------
-- Display: a type's name, or its structure written as in the source.
---------------------------------------------------------------------------
local show

local function list_show(items, sep)
  local parts = {}
  for i = 1, #items do parts[i] = show(items[i]) end
  return concat(parts, sep)
end

local function lit_show(v)
  if type(v) == "string" then return sformat("%q", v) end
  return tostring(v)
end

local SHOW = {
  lit = function(d) return lit_show(d.value) end,
  opt = function(d)
    local inner = D[d.inner]
    local s = show(d.inner)
    if inner.tag == "union" or inner.tag == "inter" or inner.tag == "func" then s = "(" .. s .. ")" end
    return s .. "?"
  end,
  union = function(d) return list_show(d.items, " | ") end,
  inter = function(d) return list_show(d.items, " & ") end,
  array = function(d) return "{" .. show(d.elem) .. "}" end,
  map = function(d) return "{[" .. show(d.key) .. "]: " .. show(d.val) .. "}" end,
  record = function(d)
    local parts = {}
    for i = 1, #d.fields do
      local f = d.fields[i]
      local ft = f[3] and D[f[2]].inner or f[2]
      parts[i] = f[1] .. (f[3] and "?: " or ": ") .. show(ft)
    end
    return "{" .. concat(parts, ", ") .. "}"
  end,
  func = function(d)
    local ps = list_show(d.params, ", ")
    if d.vararg then ps = ps .. (#d.params > 0 and ", ..." or "...") .. show(d.vararg) end
    local rs = #d.rets == 1 and show(d.rets[1]) or "(" .. list_show(d.rets, ", ") .. ")"
    return "(" .. ps .. ") -> " .. rs
  end,
  tuple = function(d) return "(" .. list_show(d.items, ", ") .. ")" end,
  alias = function(d) return d.target and show(d.target) or "type" end,
  ann = function(d)
    local parts = { show(d.inner) }
    for i = 1, #d.vals do
      local v = d.vals[i]
      parts[#parts + 1] = "@" .. v[1] .. "(" .. lit_show(v[2]) .. ")"
    end
    return concat(parts, " ")
  end,
  iface = function(d)
    local parts = {}
    for i = 1, #d.fields do parts[i] = d.fields[i][1] .. ": " .. show(d.fields[i][2]) end
    return "interface {" .. concat(parts, ", ") .. "}"
  end,
}

show = function(p)
  local d = D[p]
  if d.name then return d.name end
  local s = d.show
  if s == nil then
    local f = SHOW[d.tag]
    s = f and f(d) or d.tag
    d.show = s
  end
  return s
end

---------------------------------------------------------------------------
-- Resolving: aliases (`type X = ...`, built on first use), generic aliases
-- (used bare: their parameters are their constraints, or any) and annotated
-- types (validators) down to the data of a structural type.
---------------------------------------------------------------------------
local instantiate

local function target(p)
  local d = D[p]
  local t = d.target
  if t == nil then
    if d.busy then error("type " .. show(p) .. " is defined in terms of itself", 0) end
    d.busy = true
    local ok, v = pcall(d.thunk)
    d.busy = nil
    if not ok then error(v, 0) end
    if not is_type(v) then
      error("type " .. show(p) .. " is defined as a " .. type(v) .. " value, not a type", 0)
    end
    d.target, d.thunk = v, nil
    t = v
  end
  return t
end

--- The data of p's structural type (aliases and generics followed; annotations kept when `keep_ann`).
local function concrete(p, keep_ann)
  for _ = 1, 100 do
    local d = D[p]
    local tag = d.tag
    if tag == "alias" then
      p = target(p)
    elseif tag == "generic" then
      p = instantiate(p)
    elseif tag == "ann" and not keep_ann then
      p = d.inner
    else
      return d, p
    end
  end
  error("type " .. show(p) .. " refers to itself", 0)
end

---------------------------------------------------------------------------
-- Validation. validate(p, x) returns nothing when x is a p; otherwise a
-- message, the path below x where it failed (".age", "[2].name"), and for a
-- value of the wrong type what was expected and what it got.
---------------------------------------------------------------------------
local regex_match

local IDENT = "^[%a_][%w_]*$"
local function key_path(k)
  if type(k) == "string" then
    if #k > 40 then return "[" .. sformat("%q", k:sub(1, 37)) .. "...]" end
    if sfind(k, IDENT) then return "." .. k end
    return "[" .. sformat("%q", k) .. "]"
  end
  if math_type(k) == "integer" then return "[" .. k .. "]" end
  if type(k) == "number" or type(k) == "boolean" then return "[" .. tostring(k) .. "]" end
  return "[" .. type(k) .. " key]"
end

local function number_text(n)
  if math_type(n) == "integer" then return tostring(n) end
  return sformat("%.14g", n)
end

local function got(x)
  local t = type(x)
  if t == "number" and math_type(x) == "float" and x ~= x // 1 then return "number " .. number_text(x) end
  if t == "table" and is_error(x) then return "error" end
  if t == "table" and D[x] then return "type" end
  return t
end

local function got_value(x)
  local t = type(x)
  if t == "string" then
    if #x > 40 then return sformat("%q", x:sub(1, 37)) .. "..." end
    return sformat("%q", x)
  end
  if t == "number" then return number_text(x) end
  if t == "boolean" or t == "nil" then return tostring(x) end
  return got(x)
end

local function mismatch(p, x)
  local e, g = show(p), got(x)
  return "expected " .. e .. ", got " .. g, "", e, g
end

local function length_of(x)
  if type(x) == "string" then
    charge(#x // 16)
    return ulen(x) or #x
  end
  return #x
end

local function validators(vals, x)
  for i = 1, #vals do
    local v = vals[i]
    local name, arg = v[1], v[2]
    if name == "min" or name == "max" then
      if type(x) ~= "number" then return "@" .. name .. " needs a number, got " .. got(x) end
      if name == "min" and x < arg then return "must be >= " .. number_text(arg) .. ", got " .. number_text(x) end
      if name == "max" and x > arg then return "must be <= " .. number_text(arg) .. ", got " .. number_text(x) end
    elseif name == "min_len" or name == "max_len" then
      local t = type(x)
      if t ~= "string" and t ~= "table" then return "@" .. name .. " needs a string or an array, got " .. got(x) end
      local n = length_of(x)
      if name == "min_len" and n < arg then return "length must be >= " .. arg .. ", got " .. n end
      if name == "max_len" and n > arg then return "length must be <= " .. arg .. ", got " .. n end
    elseif name == "pattern" then
      if type(x) ~= "string" then return "@pattern needs a string, got " .. got(x) end
      if not regex_match(v[3], x) then
        return "must match /" .. arg .. "/, got " .. got_value(x)
      end
    end
  end
end

local validate

local function validate_map(d, x, seen)
  local kt, vt = d.key, d.val
  local k = next(x)
  local failed = false
  while k ~= nil do
    if validate(kt, k, seen) ~= nil or validate(vt, x[k], seen) ~= nil then failed = true break end
    k = next(x, k)
  end
  if not failed then return end
  -- which entry is reported must not depend on hash order: look again in key order
  local ok_order = true
  for key in next, x do
    local t = type(key)
    if t ~= "string" and t ~= "number" and t ~= "boolean" then ok_order = false break end
  end
  local step = ok_order and ordered_next or next
  k = step(x)
  while k ~= nil do
    local m, tail, e, g = validate(kt, k, seen)
    if m ~= nil then return "key " .. got_value(k) .. ": " .. m, tail, e, g end
    m, tail, e, g = validate(vt, x[k], seen)
    if m ~= nil then return m, key_path(k) .. tail, e, g end
    k = step(x, k)
  end
end

local CHECK = {}

function CHECK.prim(d, x, p)
  if d.check(x) then return end
  return mismatch(p, x)
end

function CHECK.lit(d, x, p)
  if x == d.value and type(x) == type(d.value) then return end
  local e = show(p)
  local g = (type(x) == type(d.value)) and got_value(x) or got(x)
  return "expected " .. e .. ", got " .. g, "", e, g
end

function CHECK.alias(d, x, p, seen)
  local t = target(p)
  if type(x) ~= "table" then return validate(t, x, seen) end
  -- a recursive type over a table that contains itself: a pair met again holds
  seen = seen or {}
  local s = seen[x]
  if s == nil then s = {} seen[x] = s end
  if s[p] then return end
  s[p] = true
  local m, tail, e, g = validate(t, x, seen)
  s[p] = nil
  return m, tail, e, g
end

function CHECK.generic(_, x, p, seen) return validate(instantiate(p), x, seen) end

function CHECK.opt(d, x, p, seen)
  if x == nil then return end
  local m, tail, e, g = validate(d.inner, x, seen)
  if m ~= nil and tail == "" and e ~= nil then return mismatch(p, x) end
  return m, tail, e, g
end

function CHECK.union(d, x, p, seen)
  local best, bm, be, bg
  local items = d.items
  local failures = {}
  for i = 1, #items do
    local m, tail, e, g = validate(items[i], x, seen)
    if m == nil then return end
    failures[i] = { m, tail, e, g }
    if best == nil or #tail > #best then best, bm, be, bg = tail, m, e, g end
  end
  if best == "" then
    -- a member whose type the value has, failing a validator: that member's message
    for i = 1, #failures do
      if failures[i][3] == nil then return failures[i][1], "" end
    end
    -- wrong at the top: what the union expects, and the value itself if every member showed it
    local g = failures[1][4]
    for i = 2, #failures do if failures[i][4] ~= g then g = nil break end end
    local e = show(p)
    g = g or got(x)
    return "expected " .. e .. ", got " .. g, "", e, g
  end
  -- members that failed at the same place with a wrong value: one message naming each expectation
  local expected, n, same = {}, 0, true
  for i = 1, #failures do
    local f = failures[i]
    if f[2] == best then
      if f[3] == nil or f[4] ~= bg then same = false break end
      n = n + 1
      expected[n] = f[3]
    end
  end
  if same and n > 1 then
    local e = concat(expected, " | ")
    return "expected " .. e .. ", got " .. bg, best, e, bg
  end
  return bm, best, be, bg
end

function CHECK.inter(d, x, _, seen)
  for i = 1, #d.items do
    local m, tail, e, g = validate(d.items[i], x, seen)
    if m ~= nil then return m, tail, e, g end
  end
end

function CHECK.array(d, x, p, seen)
  if type(x) ~= "table" or D[x] then return mismatch(p, x) end
  local elem = d.elem
  for i = 1, #x do
    local m, tail, e, g = validate(elem, x[i], seen)
    if m ~= nil then return m, "[" .. i .. "]" .. tail, e, g end
  end
end

function CHECK.map(d, x, p, seen)
  if type(x) ~= "table" or D[x] then return mismatch(p, x) end
  return validate_map(d, x, seen)
end

function CHECK.record(d, x, p, seen)
  local t = type(x)
  if (t ~= "table" and t ~= "userdata") or D[x] then return mismatch(p, x) end
  local fields = d.fields
  for i = 1, #fields do
    local f = fields[i]
    local m, tail, e, g = validate(f[2], x[f[1]], seen)
    if m ~= nil then return m, key_path(f[1]) .. tail, e, g end
  end
end

local function callable(x)
  if type(x) == "function" then return true end
  local mt = getmetatable(x)
  return mt ~= nil and rawget(mt, "__call") ~= nil
end

function CHECK.func(_, x, p)
  if callable(x) then return end
  return mismatch(p, x)
end

function CHECK.tuple(d, x, p, seen)
  if type(x) ~= "table" or D[x] then return mismatch(p, x) end
  for i = 1, #d.items do
    local m, tail, e, g = validate(d.items[i], x[i], seen)
    if m ~= nil then return m, "[" .. i .. "]" .. tail, e, g end
  end
end

function CHECK.iface(d, x, p)
  local t = type(x)
  if (t ~= "table" and t ~= "userdata") or D[x] then return mismatch(p, x) end
  for i = 1, #d.fields do
    local f = d.fields[i]
    local v = x[f[1]]
    local ft = concrete(f[2])
    if ft.tag == "func" and not callable(v) then
      return "expected a method " .. f[1] .. "(), got " .. got(v), key_path(f[1]), "function", got(v)
    end
  end
end

function CHECK.ann(d, x, _, seen)
  local m, tail, e, g = validate(d.inner, x, seen)
  if m ~= nil then return m, tail, e, g end
  m = validators(d.vals, x)
  if m ~= nil then return m, "" end
end

function CHECK.opaque(d, x, p)
  if d.check(x) then return end
  return mismatch(p, x)
end

validate = function(p, x, seen)
  local d = D[p]
  return CHECK[d.tag](d, x, p, seen)
end

local function invalid(root, m, tail, e, g)
  local path = root .. tail
  local details = { path = path }
  if e ~= nil then details.expected, details.got = e, g end
  return new_error("Invalid", path .. ": " .. m, false, details)
end

--- The name a failed cast's path starts with: the type's, or "value".
local function root_of(p)
  local d = D[p]
  if (d.tag == "alias" and d.owner == nil) or d.tag == "generic" or d.tag == "opaque" then return d.name or "value" end
  return "value"
end

local function cast(p, x)
  local m, tail, e, g = validate(p, x)
  if m ~= nil then error(invalid(root_of(p), m, tail, e, g), 3) end
  if math_type(x) == "float" then
    local d = concrete(p)
    if d.tag == "prim" and d.name == "integer" then return tointeger(x) end
  end
  return x
end

---------------------------------------------------------------------------
-- Subtyping (`<=`) and structural equality (`==`).
---------------------------------------------------------------------------
local sub, same

local function guard(seen, a, b)
  local s = seen[a]
  if s == nil then s = {} seen[a] = s end
  if s[b] then return true end
  s[b] = true
  return false
end

local function field_of(d, name)
  local fields = d.fields
  for i = 1, #fields do
    if fields[i][1] == name then return fields[i] end
  end
end

local LIT_BASE = { string = "string", boolean = "boolean" }

sub = function(a, b, seen)
  if rawequal(a, b) then return true end
  local da, db = D[a], D[b]
  if da.tag == "alias" or da.tag == "generic" or db.tag == "alias" or db.tag == "generic" then
    seen = seen or {}
    if guard(seen, a, b) then return true end
  end
  local ca, pa = concrete(a)
  local cb, pb = concrete(b)
  if rawequal(pa, pb) then return true end
  local ta, tb = ca.tag, cb.tag
  if tb == "prim" and (cb.name == "any" or cb.name == "unknown") then return true end
  if ta == "prim" and ca.name == "never" then return true end
  if ta == "union" then
    for i = 1, #ca.items do if not sub(ca.items[i], pb, seen) then return false end end
    return true
  end
  if ta == "opt" then return sub(T.nil_, pb, seen) and sub(ca.inner, pb, seen) end
  if tb == "union" then
    for i = 1, #cb.items do if sub(pa, cb.items[i], seen) then return true end end
    return false
  end
  if tb == "opt" then return sub(pa, T.nil_, seen) or sub(pa, cb.inner, seen) end
  if tb == "inter" then
    for i = 1, #cb.items do if not sub(pa, cb.items[i], seen) then return false end end
    return true
  end
  if ta == "inter" then
    for i = 1, #ca.items do if sub(ca.items[i], pb, seen) then return true end end
    return false
  end
  if ta == "lit" then
    if tb == "lit" then return ca.value == cb.value and type(ca.value) == type(cb.value) end
    if tb ~= "prim" then return false end
    local v = ca.value
    if type(v) == "number" then
      return cb.name == "number" or (cb.name == "integer" and math_type(v) == "integer")
    end
    return LIT_BASE[type(v)] == cb.name
  end
  if ta == "prim" and tb == "prim" then
    return ca.name == cb.name or (ca.name == "integer" and cb.name == "number")
  end
  if ta ~= tb then return false end
  if ta == "array" then return sub(ca.elem, cb.elem, seen) end
  if ta == "map" then return sub(ca.key, cb.key, seen) and sub(ca.val, cb.val, seen) end
  if ta == "record" or ta == "iface" then
    for i = 1, #cb.fields do
      local fb = cb.fields[i]
      local fa = field_of(ca, fb[1])
      if fa == nil then
        if not fb[3] then return false end
      elseif not sub(fa[2], fb[2], seen) then
        return false
      end
    end
    return true
  end
  if ta == "func" then
    if #ca.params ~= #cb.params or #ca.rets ~= #cb.rets then return false end
    for i = 1, #ca.params do if not sub(cb.params[i], ca.params[i], seen) then return false end end
    for i = 1, #ca.rets do if not sub(ca.rets[i], cb.rets[i], seen) then return false end end
    return true
  end
  if ta == "tuple" then
    if #ca.items ~= #cb.items then return false end
    for i = 1, #ca.items do if not sub(ca.items[i], cb.items[i], seen) then return false end end
    return true
  end
  return false  -- opaque types are equal only to themselves
end

local function same_list(xs, ys, seen)
  if #xs ~= #ys then return false end
  for i = 1, #xs do if not same(xs[i], ys[i], seen) then return false end end
  return true
end

local function same_set(xs, ys, seen)
  for i = 1, #xs do
    local found = false
    for j = 1, #ys do if same(xs[i], ys[j], seen) then found = true break end end
    if not found then return false end
  end
  return true
end

same = function(a, b, seen)
  if rawequal(a, b) then return true end
  local da, db = D[a], D[b]
  if da.tag == "alias" or da.tag == "generic" or db.tag == "alias" or db.tag == "generic" then
    seen = seen or {}
    if guard(seen, a, b) then return true end
  end
  local ca, pa = concrete(a, true)
  local cb, pb = concrete(b, true)
  if rawequal(pa, pb) then return true end
  local t = ca.tag
  if t ~= cb.tag then return false end
  if t == "prim" or t == "opaque" then return false end   -- one value each
  if t == "lit" then return ca.value == cb.value and type(ca.value) == type(cb.value) end
  if t == "opt" then return same(ca.inner, cb.inner, seen) end
  if t == "union" or t == "inter" then
    return same_set(ca.items, cb.items, seen) and same_set(cb.items, ca.items, seen)
  end
  if t == "array" then return same(ca.elem, cb.elem, seen) end
  if t == "map" then return same(ca.key, cb.key, seen) and same(ca.val, cb.val, seen) end
  if t == "tuple" then return same_list(ca.items, cb.items, seen) end
  if t == "func" then
    if (ca.vararg == nil) ~= (cb.vararg == nil) then return false end
    if ca.vararg and not same(ca.vararg, cb.vararg, seen) then return false end
    return same_list(ca.params, cb.params, seen) and same_list(ca.rets, cb.rets, seen)
  end
  if t == "record" or t == "iface" then
    if #ca.fields ~= #cb.fields then return false end
    for i = 1, #ca.fields do
      local fa = ca.fields[i]
      local fb = field_of(cb, fa[1])
      if fb == nil or (fa[3] or false) ~= (fb[3] or false) or not same(fa[2], fb[2], seen) then return false end
    end
    return true
  end
  if t == "ann" then
    if #ca.vals ~= #cb.vals or not same(ca.inner, cb.inner, seen) then return false end
    for i = 1, #ca.vals do
      local x, y = ca.vals[i], cb.vals[i]
      if x[1] ~= y[1] or x[2] ~= y[2] then return false end
    end
    return true
  end
  return false
end

---------------------------------------------------------------------------
-- The metatable of every type.
---------------------------------------------------------------------------
local hybrid

TM.__index = function(p, k)
  local m = METHODS[k]
  local d = concrete(p)
  if (d.tag == "record" or d.tag == "iface") and type(k) == "string" then
    local f = field_of(d, k)
    if f ~= nil then
      if m ~= nil then return hybrid(f[2], p, k) end
      return f[2]
    end
  end
  return m
end

TM.__newindex = function(p, k)
  error("attempt to change " .. show(p) .. "." .. tostring(k) .. " (types are read-only)", 2)
end

TM.__call = function(p, x, ...)
  local d = D[p]
  if d.owner ~= nil and rawequal(x, d.owner) then return METHODS[d.method](x, ...) end
  return cast(p, x)
end

TM.__tostring = function(p) return show(p) end
TM.__eq = function(a, b) return is_type(a) and is_type(b) and same(a, b) end
TM.__le = function(a, b)
  if not (is_type(a) and is_type(b)) then error("attempt to compare a type with a " .. type(is_type(a) and b or a) .. " value", 2) end
  return sub(a, b)
end
TM.__lt = function(a, b)
  if not (is_type(a) and is_type(b)) then error("attempt to compare a type with a " .. type(is_type(a) and b or a) .. " value", 2) end
  return sub(a, b) and not same(a, b)
end

--- `User.name` when `name` is also a method: the field's type, which called
--- as a method (`User:name()`) is the method.
hybrid = function(field_type, owner, method)
  return make({ tag = "alias", target = field_type, owner = owner, method = method, show = show(field_type),
                name = D[field_type].name })
end

---------------------------------------------------------------------------
-- Reflection (the page's methods).
---------------------------------------------------------------------------
local function wrong(what, p, wants)
  local d = concrete(p)
  error(what .. "(): " .. show(p) .. " is a " .. (d.kind or d.tag) .. " type, not " .. wants, 3)
end

local function iterate(items)
  local i = 0
  return function()
    i = i + 1
    return items[i]
  end
end

function METHODS.kind(p)
  local d = concrete(p)
  return d.kind
end

function METHODS.name(p)
  local d = D[p]
  if d.tag == "ann" then return METHODS.name(d.inner) end
  return d.name
end

local function record_fields(p, out, names, depth)
  local d = concrete(p)
  if d.tag == "record" or d.tag == "iface" then
    for i = 1, #d.fields do
      local f = d.fields[i]
      if not names[f[1]] then
        names[f[1]] = true
        out[#out + 1] = f
      end
    end
    return true
  end
  if d.tag == "inter" and depth < 32 then
    for i = 1, #d.items do
      if not record_fields(d.items[i], out, names, depth + 1) then return false end
    end
    return true
  end
  return false
end

function METHODS.fields(p)
  local out = {}
  if not record_fields(p, out, {}, 0) then wrong("fields", p, "a record") end
  local i = 0
  return function()
    i = i + 1
    local f = out[i]
    if f then return f[1], f[2] end
  end
end

function METHODS.elem(p)
  local d = concrete(p)
  if d.tag ~= "array" then wrong("elem", p, "an array") end
  return d.elem
end

function METHODS.key(p)
  local d = concrete(p)
  if d.key == nil then wrong("key", p, "a map") end
  return d.key
end

function METHODS.val(p)
  local d = concrete(p)
  if d.val == nil then wrong("val", p, "a map") end
  return d.val
end

function METHODS.inner(p)
  local d = concrete(p)
  if d.tag ~= "opt" then wrong("inner", p, "an optional") end
  return d.inner
end

function METHODS.variants(p)
  local d = concrete(p)
  if d.tag == "opt" then return iterate({ d.inner, T.nil_ }) end
  if d.tag ~= "union" then wrong("variants", p, "a union") end
  return iterate(d.items)
end

function METHODS.params(p)
  local d = concrete(p)
  if d.tag ~= "func" then wrong("params", p, "a function") end
  return iterate(d.params)
end

function METHODS.ret(p)
  local d = concrete(p)
  if d.tag ~= "func" then wrong("ret", p, "a function") end
  if #d.rets == 1 then return d.rets[1] end
  if #d.rets == 0 then return T.nil_ end
  return T.tuple(d.rets)
end

function METHODS.is(p, x)
  if not is_type(p) then error("is(): call it as T:is(value)", 2) end
  local m, tail, e, g = validate(p, x)
  if m == nil then return x, nil end
  return nil, invalid(root_of(p), m, tail, e, g)
end

---------------------------------------------------------------------------
-- Constructors: what translated code calls (see typed.py) and modules use.
---------------------------------------------------------------------------
local function need_type(v, what)
  if not is_type(v) then error(what .. " must be a type, got " .. type(v), 3) end
  return v
end

local function need_types(list, what)
  for i = 1, #list do need_type(list[i], what) end
  return list
end

local function prim(name, kind, check, extra)
  local d = { tag = "prim", name = name, kind = kind, check = check }
  for k, v in next, extra or {} do d[k] = v end
  return make(d)
end

local function always() return true end
T.any = prim("any", "any", always)
T.unknown = prim("unknown", "unknown", always)
T.never = prim("never", "never", function() return false end)
T.nil_ = prim("nil", "nil", function(x) return x == nil end)
T.boolean = prim("boolean", "boolean", function(x) return type(x) == "boolean" end)
T.number = prim("number", "number", function(x) return type(x) == "number" end)
T.integer = prim("integer", "integer", function(x)
  return math_type(x) == "integer" or (math_type(x) == "float" and tointeger(x) ~= nil)
end)
T.string = prim("string", "string", function(x) return type(x) == "string" end)
T.table = prim("table", "map", function(x) return type(x) == "table" and D[x] == nil end, { key = T.any, val = T.any })
T.fn = prim("function", "function", callable)
T.thread = prim("thread", "thread", function(x) return type(x) == "thread" end)
T.error = prim("error", "interface", is_error)
T.type = prim("type", "meta", is_type)

function T.lit(v)
  return make({ tag = "lit", kind = "literal", value = v })
end

function T.opt(t)
  return make({ tag = "opt", kind = "optional", inner = need_type(t, "an optional's type") })
end

function T.union(items)
  return make({ tag = "union", kind = "union", items = need_types(items, "a union member") })
end

function T.inter(items)
  return make({ tag = "inter", kind = "intersection", items = need_types(items, "an intersection member") })
end

function T.array(t)
  return make({ tag = "array", kind = "array", elem = need_type(t, "an array's element") })
end

function T.map(k, v)
  return make({ tag = "map", kind = "map", key = need_type(k, "a map's key"), val = need_type(v, "a map's value") })
end

--- fields: { {name, type, optional}, ... } in declaration order (an optional field's type is T?)
function T.record(fields)
  for i = 1, #fields do need_type(fields[i][2], "field " .. tostring(fields[i][1])) end
  return make({ tag = "record", kind = "record", fields = fields })
end

function T.func(params, rets, vararg)
  need_types(params, "a parameter")
  need_types(rets, "a return value")
  if vararg ~= nil then need_type(vararg, "the variadic parameter") end
  return make({ tag = "func", kind = "function", params = params, rets = rets, vararg = vararg })
end

function T.tuple(items)
  return make({ tag = "tuple", kind = "tuple", items = need_types(items, "a tuple member") })
end

--- vals: { {"min", 0}, {"pattern", "src", <regex>} ... }
function T.ann(t, vals)
  return make({ tag = "ann", inner = need_type(t, "an annotated type"), vals = vals })
end

function T.iface(methods, bases)
  local fields, names = {}, {}
  for i = 1, #bases do
    local d = concrete(need_type(bases[i], "an interface's base"))
    if d.fields == nil then error("an interface extends interfaces, not " .. show(bases[i]), 2) end
    for j = 1, #d.fields do
      local f = d.fields[j]
      if not names[f[1]] then names[f[1]] = true fields[#fields + 1] = f end
    end
  end
  for i = 1, #methods do
    local m = methods[i]
    need_type(m[2], "method " .. m[1])
    if not names[m[1]] then names[m[1]] = true fields[#fields + 1] = m end
  end
  return make({ tag = "iface", kind = "interface", fields = fields })
end

--- `type Name = ...`: the type, built from `thunk` when first used.
function T.def(name, thunk)
  return make({ tag = "alias", name = name, thunk = thunk })
end

--- A name for a type built now (modules' types: shared, so never built lazily).
function T.named(name, t)
  return make({ tag = "alias", name = name, target = need_type(t, name) })
end

--- `type Name<P, Q> = ...`: fn(P, Q) builds an instance; used bare, each
--- parameter is its constraint (or any).
function T.generic(name, params, fn, constraints)
  return make({ tag = "generic", kind = "generic", name = name, params = params, fn = fn,
                constraints = constraints or {} })
end

function T.apply(g, args)
  local d = D[need_type(g, "a generic type")]
  if d.tag ~= "generic" then error(show(g) .. " takes no type arguments", 2) end
  if #args ~= #d.params then
    error(sformat("%s takes %d type argument(s), got %d", d.name, #d.params, #args), 2)
  end
  need_types(args, "a type argument")
  local fn = d.fn
  return make({ tag = "alias", name = d.name .. "<" .. list_show(args, ", ") .. ">",
                thunk = function() return fn(unpack(args, 1, #args)) end })
end

instantiate = function(p)
  local d = D[p]
  local inst = d.default
  if inst == nil then
    local args = {}
    for i = 1, #d.params do args[i] = d.constraints[i] or T.any end
    local v = d.fn(unpack(args, 1, #d.params))
    if not is_type(v) then error("type " .. d.name .. " is defined as a " .. type(v) .. " value, not a type", 0) end
    inst = v
    d.default = inst
  end
  return inst
end

--- A name used as a type: it must hold one.
function T.ref(v, name)
  if is_type(v) then return v end
  if v == nil then error("unknown type '" .. name .. "'", 2) end
  error("'" .. name .. "' is not a type (it is a " .. type(v) .. " value)", 2)
end

--- A type computed on first use, shown as `text`.
local function lazy(text, thunk)
  return make({ tag = "alias", show = text, thunk = thunk })
end

function T.keyof(t)
  need_type(t, "keyof's argument")
  return lazy("keyof(" .. show(t) .. ")", function()
    local out = {}
    if not record_fields(t, out, {}, 0) then error("keyof(" .. show(t) .. "): not a record", 0) end
    local items = {}
    for i = 1, #out do items[i] = T.lit(out[i][1]) end
    if #items == 1 then return items[1] end
    if #items == 0 then return T.never end
    return T.union(items)
  end)
end

function T.index(t, k)
  need_type(t, "an indexed type")
  need_type(k, "an index")
  return lazy(show(t) .. "[" .. show(k) .. "]", function()
    local kd = concrete(k)
    local d = concrete(t)
    if kd.tag == "lit" and (d.tag == "record" or d.tag == "iface") then
      local f = field_of(d, kd.value)
      if f then return f[2] end
      error(show(t) .. " has no field " .. lit_show(kd.value), 0)
    end
    if d.tag == "array" then return d.elem end
    if d.tag == "map" then return d.val end
    if d.tag == "tuple" and kd.tag == "lit" then return d.items[kd.value] or T.nil_ end
    error("cannot index " .. show(t) .. " with " .. show(k), 0)
  end)
end

function T.cond(t, u, a, b)
  need_type(t, "a conditional's type")
  return lazy(show(t) .. " extends " .. show(u) .. " ? " .. show(a) .. " : " .. show(b), function()
    if sub(t, u) then return a end
    return b
  end)
end

--- A module's type for values it makes (process.Message ...): `check(v)` says whether v is one.
function T.opaque(name, kind, check)
  return make({ tag = "opaque", kind = kind, name = name, check = check })
end

local BY_LUA_TYPE = { ["nil"] = T.nil_, boolean = T.boolean, number = T.number, string = T.string,
                      ["function"] = T.fn, thread = T.thread, userdata = T.any }

function T.typeof(v)
  if type(v) == "table" then
    if D[v] then return T.type end
    if is_error(v) then return T.error end
    return T.table
  end
  return BY_LUA_TYPE[type(v)]
end

--- A local or parameter whose annotation has validators, where it is assigned.
function T.check(t, v, name)
  local m, tail, e, g = validate(t, v)
  if m ~= nil then error(invalid(name, m, tail, e, g), 2) end
  return v
end

function T.check_each(t, name, ...)
  for i = 1, select("#", ...) do
    local m, tail, e, g = validate(t, (select(i, ...)))
    if m ~= nil then error(invalid(name .. "[" .. i .. "]", m, tail, e, g), 2) end
  end
end

function T.put(sites, i, t)
  sites[i] = t
  return t
end

---------------------------------------------------------------------------
-- @pattern: a backtracking matcher over the regex tree _regex.py builds.
-- It runs in Lua, so the instruction budget bounds a pattern that backtracks.
---------------------------------------------------------------------------
local function dec(s, i)
  local c = sbyte(s, i)
  if c == nil then return nil end
  if c < 0x80 then return c, i + 1 end
  local n = c >= 0xF0 and 3 or c >= 0xE0 and 2 or c >= 0xC0 and 1 or 0
  if n == 0 then return c, i + 1 end
  local cp = c & (0x3F >> n)
  for k = 1, n do
    local b = sbyte(s, i + k)
    if b == nil or b & 0xC0 ~= 0x80 then return c, i + 1 end
    cp = (cp << 6) | (b & 0x3F)
  end
  return cp, i + n + 1
end

local function in_set(node, cp)
  local r = node[3]
  for k = 1, #r, 2 do
    if cp >= r[k] and cp <= r[k + 1] then return not node[2] end
  end
  return node[2]
end

local function word(c)
  return c ~= nil and (c >= 48 and c <= 57 or c >= 65 and c <= 90 or c >= 97 and c <= 122 or c == 95)
end

local SINGLE = { c = true, any = true, set = true }

local function single(n, s, i)
  local cp, j = dec(s, i)
  if cp == nil then return nil end
  local t = n[1]
  if t == "c" then return cp == n[2] and j or nil end
  if t == "any" then return (cp ~= 10 or n[2]) and j or nil end
  return in_set(n, cp) and j or nil
end

local match

local function seq(n, k, s, i, cont)
  if k > #n then return cont(i) end
  return match(n[k], s, i, function(j) return seq(n, k + 1, s, j, cont) end)
end

local function repeat_any(node, lo, hi, greedy, s, i, cont, count)
  local function more(j)
    if j == i and count >= lo then return false end  -- no progress: stop
    return repeat_any(node, lo, hi, greedy, s, j, cont, count + 1)
  end
  if count < lo then return match(node, s, i, more) end
  if greedy then
    if (hi < 0 or count < hi) and match(node, s, i, more) then return true end
    return cont(i)
  end
  if cont(i) then return true end
  return (hi < 0 or count < hi) and match(node, s, i, more)
end

local function repeat_single(node, lo, hi, greedy, s, i, cont)
  local pos, c, j = { i }, 0, i
  while hi < 0 or c < hi do
    local nj = single(node, s, j)
    if nj == nil then break end
    c, j = c + 1, nj
    pos[c + 1] = j
  end
  if c < lo then return false end
  if greedy then
    for x = c, lo, -1 do if cont(pos[x + 1]) then return true end end
  else
    for x = lo, c do if cont(pos[x + 1]) then return true end end
  end
  return false
end

match = function(n, s, i, cont)
  local t = n[1]
  if SINGLE[t] then
    local j = single(n, s, i)
    return j ~= nil and cont(j)
  end
  if t == "seq" then return seq(n, 2, s, i, cont) end
  if t == "alt" then
    for k = 2, #n do if match(n[k], s, i, cont) then return true end end
    return false
  end
  if t == "rep" then
    if SINGLE[n[2][1]] then return repeat_single(n[2], n[3], n[4], n[5], s, i, cont) end
    return repeat_any(n[2], n[3], n[4], n[5], s, i, cont, 0)
  end
  if t == "bol" then
    if i == 1 or (n[2] and sbyte(s, i - 1) == 10) then return cont(i) end
    return false
  end
  if t == "eol" then
    if i == #s + 1 or (n[2] and sbyte(s, i) == 10) then return cont(i) end
    return false
  end
  local at = (word(sbyte(s, i - 1)) and i > 1) ~= word(sbyte(s, i))
  if (t == "wb") == at then return cont(i) end
  return false
end

local function accept() return true end

regex_match = function(re, s)
  local first = re[1] == "seq" and re[2] or re
  if first[1] == "bol" and not first[2] then return match(re, s, 1, accept) end
  local i, n = 1, #s
  while true do
    if match(re, s, i, accept) then return true end
    if i > n then return false end
    local _, j = dec(s, i)
    i = j
  end
end

---------------------------------------------------------------------------
-- What the prelude installs.
---------------------------------------------------------------------------
local globals = {
  typeof = T.typeof,
  integer = T.integer, number = T.number, boolean = T.boolean,
  Number = T.number, Integer = T.integer, String = T.string, Boolean = T.boolean,
  Any = T.any, Unknown = T.unknown, Never = T.never,
}

return {
  runtime = T,
  globals = globals,
  --- string(x): `string` is the string library and the string type's cast
  string_call = function(_, x) return cast(T.string, x) end,
}
