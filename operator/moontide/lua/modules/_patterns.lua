-- Lua 5.4's pattern matcher (lstrlib.c), ported line by line to Lua.
-- Loaded by the prelude (not requirable: the name is in no entry's module
-- list). The C matcher ignores the instruction hook and can backtrack for
-- minutes; this one runs as Lua, so the count hook charges every step.
-- Positions are 1-based byte indexes; `e` is one past the match.
local fail = ...   -- fail(message): raises a pattern error at the user's call site
local sbyte, ssub, sfind, sfmt, concat = string.byte, string.sub, string.find, string.format, table.concat
local tostring, type = tostring, type

local MAXCCALLS, MAXCAPTURES = 200, 32
local CAP_UNFINISHED, CAP_POSITION = -1, -2

-- C-locale character classes, indexed by the class letter's byte; an upper
-- case letter is the complement.
local CLASSES = {}
do
  local function range(set, a, b) for c = a, b do set[c] = true end end
  local defs = {
    a = function(s) range(s, 65, 90); range(s, 97, 122) end,
    c = function(s) range(s, 0, 31); s[127] = true end,
    d = function(s) range(s, 48, 57) end,
    g = function(s) range(s, 33, 126) end,
    l = function(s) range(s, 97, 122) end,
    p = function(s) range(s, 33, 47); range(s, 58, 64); range(s, 91, 96); range(s, 123, 126) end,
    s = function(s) range(s, 9, 13); s[32] = true end,
    u = function(s) range(s, 65, 90) end,
    w = function(s) range(s, 48, 57); range(s, 65, 90); range(s, 97, 122) end,
    x = function(s) range(s, 48, 57); range(s, 65, 70); range(s, 97, 102) end,
    z = function(s) s[0] = true end,   -- deprecated, still in 5.4's lstrlib
  }
  for letter, fill in pairs(defs) do
    local yes, no = {}, {}
    for c = 0, 255 do yes[c] = false end
    fill(yes)
    for c = 0, 255 do no[c] = not yes[c] end
    CLASSES[sbyte(letter)], CLASSES[sbyte(letter) - 32] = yes, no
  end
end

local function match_class(c, cl)
  local set = CLASSES[cl]
  if set then return set[c] end
  return cl == c
end

--- One past the single-character class at p, or nil and the error when malformed.
local function class_end_at(pat, plen, p)
  local c = sbyte(pat, p)
  p = p + 1
  if c == 37 then                        -- %
    if p > plen then return nil, "malformed pattern (ends with '%')" end
    return p + 1
  elseif c == 91 then                    -- [
    if sbyte(pat, p) == 94 then p = p + 1 end
    repeat
      if p > plen then return nil, "malformed pattern (missing ']')" end
      local cc = sbyte(pat, p)
      p = p + 1
      if cc == 37 and p <= plen then p = p + 1 end
    until sbyte(pat, p) == 93
    return p + 1
  end
  return p
end

local function class_end(ms, p)
  local e, err = class_end_at(ms.p, ms.plen, p)
  if e == nil then fail(err) end
  return e
end

-- p is the '[' and ec the ']' of a set
local function match_bracket(ms, c, p, ec)
  local pat, sig = ms.p, true
  if sbyte(pat, p + 1) == 94 then sig = false; p = p + 1 end
  while true do
    p = p + 1
    if p >= ec then return not sig end
    local pc = sbyte(pat, p)
    if pc == 37 then
      p = p + 1
      if match_class(c, sbyte(pat, p)) then return sig end
    elseif sbyte(pat, p + 1) == 45 and p + 2 < ec then
      p = p + 2
      if pc <= c and c <= sbyte(pat, p) then return sig end
    elseif pc == c then
      return sig
    end
  end
end

-- Answers for each pattern item, by byte: computed once per pattern.
local set_cache, set_count = {}, 0

local function single_match(ms, s, p, ep)
  if s > ms.slen then return false end
  local c = sbyte(ms.s, s)
  local set = ms.sets[p]
  if set == nil then
    set = {}
    ms.sets[p] = set
  else
    local m = set[c]
    if m ~= nil then return m end
  end
  local pc, m = sbyte(ms.p, p), nil
  if pc == 46 then m = true                                  -- .
  elseif pc == 37 then m = match_class(c, sbyte(ms.p, p + 1)) -- %x
  elseif pc == 91 then m = match_bracket(ms, c, p, ep - 1)    -- [set]
  else m = pc == c end
  set[c] = m
  return m
end

local match

local function match_balance(ms, s, p)
  if p >= ms.plen then fail("malformed pattern (missing arguments to '%b')") end
  local str, b = ms.s, sbyte(ms.p, p)
  if sbyte(str, s) ~= b then return nil end
  local e, cont = sbyte(ms.p, p + 1), 1
  for i = s + 1, ms.slen do
    local c = sbyte(str, i)
    if c == e then
      cont = cont - 1
      if cont == 0 then return i + 1 end
    elseif c == b then
      cont = cont + 1
    end
  end
  return nil
end

local function max_expand(ms, s, p, ep)
  local i = 0
  while single_match(ms, s + i, p, ep) do i = i + 1 end
  while i >= 0 do
    local res = match(ms, s + i, ep + 1)
    if res then return res end
    i = i - 1
  end
  return nil
end

local function min_expand(ms, s, p, ep)
  while true do
    local res = match(ms, s, ep + 1)
    if res then return res end
    if not single_match(ms, s, p, ep) then return nil end
    s = s + 1
  end
end

local function start_capture(ms, s, p, what)
  local level = ms.level + 1
  if level > MAXCAPTURES then fail("too many captures") end
  ms.init[level], ms.len[level], ms.level = s, what, level
  local res = match(ms, s, p)
  if res == nil then ms.level = ms.level - 1 end
  return res
end

local function end_capture(ms, s, p)
  local l = ms.level
  while l >= 1 and ms.len[l] ~= CAP_UNFINISHED do l = l - 1 end
  if l < 1 then fail("invalid pattern capture") end
  ms.len[l] = s - ms.init[l]
  local res = match(ms, s, p)
  if res == nil then ms.len[l] = CAP_UNFINISHED end
  return res
end

local function match_capture(ms, s, digit)
  local l = digit - 48
  if l < 1 or l > ms.level or ms.len[l] == CAP_UNFINISHED then fail(sfmt("invalid capture index %%%d", l)) end
  local len, str = ms.len[l], ms.s
  if len >= 0 and ms.slen - s + 1 >= len
      and ssub(str, ms.init[l], ms.init[l] + len - 1) == ssub(str, s, s + len - 1) then
    return s + len
  end
  return nil
end

function match(ms, s, p)
  if ms.depth == 0 then fail("pattern too complex") end
  ms.depth = ms.depth - 1
  local pat, plen = ms.p, ms.plen
  while p <= plen do
    local pc = sbyte(pat, p)
    local default = false
    if pc == 40 then                                     -- (
      if sbyte(pat, p + 1) == 41 then s = start_capture(ms, s, p + 2, CAP_POSITION)
      else s = start_capture(ms, s, p + 1, CAP_UNFINISHED) end
      break
    elseif pc == 41 then                                 -- )
      s = end_capture(ms, s, p + 1)
      break
    elseif pc == 36 and p == plen then                   -- $ at the end
      if s ~= ms.slen + 1 then s = nil end
      break
    elseif pc == 37 then                                 -- %
      local nc = sbyte(pat, p + 1)
      if nc == 98 then                                   -- %b
        s = match_balance(ms, s, p + 2)
        if s == nil then break end
        p = p + 4
      elseif nc == 102 then                              -- %f
        p = p + 2
        if sbyte(pat, p) ~= 91 then fail("missing '[' after '%f' in pattern") end
        local ep = class_end(ms, p)
        local prev = s == 1 and 0 or sbyte(ms.s, s - 1)
        if not match_bracket(ms, prev, p, ep - 1) and match_bracket(ms, sbyte(ms.s, s) or 0, p, ep - 1) then
          p = ep
        else
          s = nil
          break
        end
      elseif nc and nc >= 48 and nc <= 57 then           -- %0-%9
        s = match_capture(ms, s, nc)
        if s == nil then break end
        p = p + 2
      else
        default = true
      end
    else
      default = true
    end
    if default then
      local ep = class_end(ms, p)
      local epc = sbyte(pat, ep)
      if not single_match(ms, s, p, ep) then
        if epc == 42 or epc == 63 or epc == 45 then      -- * ? - accept empty
          p = ep + 1
        else
          s = nil
          break
        end
      elseif epc == 63 then                              -- ?
        local res = match(ms, s + 1, ep + 1)
        if res then s = res; break end
        p = ep + 1
      elseif epc == 43 then s = max_expand(ms, s + 1, p, ep); break   -- +
      elseif epc == 42 then s = max_expand(ms, s, p, ep); break       -- *
      elseif epc == 45 then s = min_expand(ms, s, p, ep); break       -- -
      else
        s, p = s + 1, ep
      end
    end
  end
  ms.depth = ms.depth + 1
  return s
end

local function state(s, p)
  local sets = set_cache[p]
  if sets == nil then
    if set_count >= 256 then set_cache, set_count = {}, 0 end
    sets, set_count = {}, set_count + 1
    set_cache[p] = sets
  end
  return { s = s, slen = #s, p = p, plen = #p, level = 0, depth = MAXCCALLS, init = {}, len = {}, sets = sets }
end

-- capture i (1-based) of the match s..e-1; the whole match when there are none
local function capture(ms, i, s, e)
  if i > ms.level then
    if i ~= 1 then fail(sfmt("invalid capture index %%%d", i)) end
    return ssub(ms.s, s, e - 1)
  end
  local l = ms.len[i]
  if l == CAP_UNFINISHED then fail("unfinished capture") end
  if l == CAP_POSITION then return ms.init[i] end
  return ssub(ms.s, ms.init[i], ms.init[i] + l - 1)
end

local function captures_from(ms, i, n, s, e)
  if i > n then return end
  return capture(ms, i, s, e), captures_from(ms, i + 1, n, s, e)
end

local function captures(ms, s, e)
  return captures_from(ms, 1, (ms.level == 0 and s) and 1 or ms.level, s, e)
end

local function posrelat(pos, len)
  if pos > 0 then return pos end
  if pos == 0 or pos < -len then return 1 end
  return len + pos + 1
end

local M = { class_end = class_end_at }

--- find/match with a pattern (the caller has done plain finds and argument checks)
function M.find_aux(find, s, p, init)
  local ls = #s
  init = posrelat(init or 1, ls)
  if init > ls + 1 then return nil end
  local ms = state(s, p)
  local anchor = sbyte(p, 1) == 94
  local p1 = anchor and 2 or 1
  local s1 = init
  repeat
    ms.level = 0
    local e = match(ms, s1, p1)
    if e then
      if find then return s1, e - 1, captures(ms, nil, 0) end
      return captures(ms, s1, e)
    end
    s1 = s1 + 1
  until s1 > ls + 1 or anchor
  return nil
end

function M.match(s, p, init)
  return M.find_aux(false, s, p, init)
end

function M.gmatch(s, p, init)
  local ls = #s
  init = posrelat(init or 1, ls)
  if init > ls + 1 then init = ls + 2 end
  local ms = state(s, p)
  local src, lastmatch = init, nil
  return function()
    for i = src, ls + 1 do
      ms.level = 0
      local e = match(ms, i, 1)
      if e and e ~= lastmatch then
        src, lastmatch = e, e
        return captures(ms, i, e)
      end
    end
  end
end

local function add_s(ms, buf, nb, s, e, news)
  local i = 1
  while true do
    local j = sfind(news, "%", i, true)
    if not j then break end
    nb = nb + 1; buf[nb] = ssub(news, i, j - 1)
    local c = sbyte(news, j + 1)
    if c == 37 then
      nb = nb + 1; buf[nb] = "%"
    elseif c == 48 then
      nb = nb + 1; buf[nb] = ssub(ms.s, s, e - 1)
    elseif c and c >= 49 and c <= 57 then
      nb = nb + 1; buf[nb] = tostring(capture(ms, c - 48, s, e))
    else
      fail("invalid use of '%' in replacement string")
    end
    i = j + 2
  end
  nb = nb + 1; buf[nb] = ssub(news, i)
  return nb
end

--- gsub with repl a string, number, table or function (checked by the caller)
function M.gsub(src, p, repl, max_s)
  local srcl = #src
  local tr = type(repl)
  if tr == "number" then repl = tostring(repl) end
  max_s = max_s or srcl + 1
  local anchor = sbyte(p, 1) == 94
  local p1 = anchor and 2 or 1
  local ms = state(src, p)
  local buf, nb = {}, 0
  local n, changed, lastmatch, pos, copied = 0, false, nil, 1, 1
  while n < max_s do
    ms.level = 0
    local e = match(ms, pos, p1)
    if e and e ~= lastmatch then
      n = n + 1
      nb = nb + 1; buf[nb] = ssub(src, copied, pos - 1)
      if tr == "string" or tr == "number" then
        nb = add_s(ms, buf, nb, pos, e, repl)
        changed = true
      else
        local v
        if tr == "function" then v = repl(captures(ms, pos, e)) else v = repl[capture(ms, 1, pos, e)] end
        if not v then
          nb = nb + 1; buf[nb] = ssub(src, pos, e - 1)
        elseif type(v) == "string" or type(v) == "number" then
          nb = nb + 1; buf[nb] = tostring(v)
          changed = true
        else
          fail(sfmt("invalid replacement value (a %s)", type(v)))
        end
      end
      pos, lastmatch, copied = e, e, e
    elseif pos <= srcl then
      pos = pos + 1
    else
      break
    end
    if anchor then break end
  end
  if not changed then return src, n end
  nb = nb + 1; buf[nb] = ssub(src, copied, srcl)
  return concat(buf, "", 1, nb), n
end

return M
