-- channel: channels and select. Channels the host feeds (inbox, listen,
-- events, timers, futures) wait in the host; channel.new(n) channels live in
-- Lua and pass values between the coroutines of one execution with Go's
-- rules: a send on an unbuffered channel waits for a receiver, a send on a
-- full buffer for room, a receive for a value; a coroutine that waits is
-- parked (modules/_sched.lua) until another one completes its operation.
local api = ...
local sys, sched = api.sys, api.sched
local FIRED, DEADLOCK = sched.FIRED, sched.DEADLOCK

local Channel = {}
Channel.__index = Channel
Channel.__name = "channel"
Channel.__metatable = false

-- Every channel object, read-only views of shared ones included (select's check).
local channels = setmetatable({}, { __mode = "k" })

--- A channel the host feeds. `shared`: one object for every execution of the
--- runtime (process.inbox()), so a read-only view of it.
local function host_channel(id, wrap, shared)
  local ch = setmetatable({ id = id, wrap = wrap }, Channel)
  if shared then ch = api.readonly(ch, shared) end
  channels[ch] = true
  return ch
end
api.host_channel = host_channel

--- channel.new(n): a Lua channel holding up to n values (0, the default: unbuffered).
local function new(size)
  if size ~= nil and (math.type(size) ~= "integer" or size < 0) then
    error("channel.new(size): size must be a whole number >= 0", 2)
  end
  local ch = setmetatable({ buf = {}, head = 1, tail = 0, size = size or 0, closed = false,
                            recvq = {}, sendq = {} }, Channel)
  channels[ch] = true
  return ch
end

-- Waiters: { task=, sel=, case=, value= (a send) }, in arrival order. `sel`
-- is shared by the entries of one wait (a select has one per Lua case):
-- the first case to complete ends it and takes the others out.
local function drop_entries(sel)
  sel.done = true
  for _, e in ipairs(sel.entries) do
    local q = e.queue
    for i = 1, #q do
      if q[i] == e then table.remove(q, i) break end
    end
  end
end

local function fire(e, ...)
  drop_entries(e.sel)
  sched.wake(e.sel.task, FIRED, e.case, ...)
end

local function buffered(ch) return ch.tail - ch.head + 1 end

local function push(ch, v)
  ch.tail = ch.tail + 1
  ch.buf[ch.tail] = v
end

local function shift(ch)
  local h = ch.head
  local v = ch.buf[h]
  ch.buf[h], ch.head = nil, h + 1
  return v
end

--- Receive at once if a value is there (or the channel is closed): true, value, ok; else nil.
local function try_receive(ch)
  if buffered(ch) > 0 then
    local v = shift(ch)
    local s = ch.sendq[1]
    if s then   -- a sender waited for room: its value takes the slot
      push(ch, s.value)
      fire(s, true)
    end
    return true, v, true
  end
  local s = ch.sendq[1]
  if s then
    fire(s, true)
    return true, s.value, true
  end
  if ch.closed then return true, nil, false end
end

--- Send at once if a receiver waits or the buffer has room: true; else nil.
local function try_send(ch, v)
  local r = ch.recvq[1]
  if r then
    fire(r, v, true)
    return true
  end
  if buffered(ch) < ch.size then
    push(ch, v)
    return true
  end
end

local DEADLOCK_MESSAGE = "channel: every coroutine of this execution waits on a channel.new channel and nothing " ..
  "else can wake one (deadlock)"

--- Wait until one of the Lua cases completes (each {ch=, send=, value=}), or,
--- with `ids_json`, one of these host channels is ready. What the task was
--- woken with: FIRED, case, values... for a Lua case; else the host's answer.
local function wait(lua_cases, ids_json, ids)
  local t = sched.current()
  if t == nil then
    -- nothing else runs in this execution: no Lua case can complete
    if ids_json == nil then return DEADLOCK end
    return sys("channel.select", ids_json)
  end
  local sel = { task = t, entries = {} }
  for i, c in ipairs(lua_cases) do
    local q = c.send and c.ch.sendq or c.ch.recvq
    local e = { sel = sel, case = i, value = c.value, queue = q }
    q[#q + 1] = e
    sel.entries[i] = e
  end
  local function after(...)
    if (...) ~= FIRED then drop_entries(sel) end   -- the host answered first, or a deadlock
    return ...
  end
  if ids_json == nil then return after(sched.park()) end
  return after(sched.select(ids_json, ids))
end

--- ch:receive(): value, true; or nil, false once the channel is closed and drained.
function Channel:receive()
  if self.id ~= nil then
    local ok, value = sys("channel.receive", self.id)
    if not ok then
      if value == false then return nil, false end   -- closed and drained (events subscriptions)
      if self.errors_are_values and not (self.future and self.future.canceled) then return value, true end
      return nil, false, value
    end
    if self.wrap then value = self.wrap(value) end
    return value, true
  end
  local done, v, ok = try_receive(self)
  if done then return v, ok end
  local how, _, value, got = wait({ { ch = self } })
  if how == DEADLOCK then error(DEADLOCK_MESSAGE, 2) end
  return value, got
end

--- ch:send(v): true once a receiver has it or it is buffered; raises on a closed channel.
function Channel:send(value)
  if self.id ~= nil then error("channel:send(): this channel is fed by the host; use process.send", 2) end
  if self.closed then error("channel:send(): channel is closed", 2) end
  if try_send(self, value) then return true end
  local how, _, sent = wait({ { ch = self, send = true, value = value } })
  if how == DEADLOCK then error(DEADLOCK_MESSAGE, 2) end
  if not sent then error("channel:send(): channel is closed", 2) end
  return true
end

--- ch:close(): receivers get what is buffered, then nil, false; waiting senders an error.
function Channel:close()
  if self.id ~= nil then return api.host("channel.close", self.id) end
  if self.closed then return true end
  self.closed = true
  while self.recvq[1] do fire(self.recvq[1], nil, false) end
  while self.sendq[1] do fire(self.sendq[1], false) end
  return true
end

function Channel:case_receive() return { channel = self, receive = true } end
function Channel:case_send(value) return { channel = self, send = true, value = value } end

--- A host channel's answer in a select: {channel=, value=, ok=}.
local function host_result(ch, value, failed)
  if failed == false then return { channel = ch, ok = false } end   -- closed and drained
  if failed ~= nil then
    if ch.errors_are_values and not (ch.future and ch.future.canceled) then
      return { channel = ch, value = failed, ok = true }
    end
    return { channel = ch, ok = false, error = failed }
  end
  if ch.wrap then value = ch.wrap(value) end
  return { channel = ch, value = value, ok = true }
end

--- channel.select{cases..., default = true?}: {channel=, value=, ok=} of the first
--- ready case (in case order: Lua channels first), or {default = true, ok = true}.
local function select_(cases)
  if type(cases) ~= "table" or #cases == 0 then error("channel.select: expected a list of cases", 2) end
  local ids, index, lua_cases, lua_of = {}, {}, {}, {}
  for i, case in ipairs(cases) do
    local ch = type(case) == "table" and case.channel
    if not channels[ch] then error("channel.select: case " .. i .. " is not a channel case", 2) end
    if ch.id == nil then
      if case.send then
        if ch.closed then error("channel.select: case " .. i .. " sends on a closed channel", 2) end
        if try_send(ch, case.value) then return { channel = ch, value = case.value, ok = true } end
      else
        local done, v, ok = try_receive(ch)
        if done then return { channel = ch, value = v, ok = ok } end
      end
      lua_cases[#lua_cases + 1] = { ch = ch, send = case.send, value = case.value }
      lua_of[#lua_cases] = case
    elseif index[ch.id] == nil then
      ids[#ids + 1] = ch.id
      index[ch.id] = ch
    end
  end
  if cases.default then
    -- Go's select: default only when no case is ready, host channels included.
    if #ids == 0 then return { default = true, ok = true } end
    local got, err = api.host("channel.poll", api.to_json(ids, "cases"))
    if got == nil then
      if err then return { ok = false, error = err } end
      return { default = true, ok = true }
    end
    local ch = index[got.id]
    if not got.ok then return host_result(ch, nil, got.error) end
    return host_result(ch, got.value)
  end
  local r = table.pack(wait(lua_cases, #ids > 0 and api.to_json(ids, "cases") or nil, ids))
  if r[1] == DEADLOCK then error(DEADLOCK_MESSAGE, 2) end
  if r[1] == FIRED then
    local case = lua_of[r[2]]
    if case.send then
      if not r[3] then error("channel.select: the channel of case " .. r[2] .. " was closed while sending", 2) end
      return { channel = case.channel, value = case.value, ok = true }
    end
    return { channel = case.channel, value = r[3], ok = r[4] }
  end
  local ok, id, value, failed = r[1], r[2], r[3], r[4]
  if not ok then return { ok = false, error = id } end
  return host_result(index[id], value, failed)
end

-- Shared by every execution of this runtime: hand out a read-only view.
Channel.__index = api.readonly(Channel, "channel")
return { new = new, select = select_, Channel = Channel.__index }
