-- channel: channels and select. Channels the host feeds (inbox, listen,
-- events, timers, futures) wait in the host; channel.new(n) channels are
-- plain Lua buffers for passing values between coroutines of one process.
local api = ...
local sys, must, new_error = api.sys, api.must, api.new_error

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

--- channel.new(n): a buffered Lua channel (n = 0: unbuffered, holds one value while waiting).
local function new(size)
  local ch = setmetatable({ buf = {}, size = size or 0, closed = false }, Channel)
  channels[ch] = true
  return ch
end

local function take(ch)
  if #ch.buf > 0 then return table.remove(ch.buf, 1), true end
  if ch.closed then return nil, false end
end

--- ch:receive(): value, ok (ok is false once a channel is closed and drained).
function Channel:receive()
  if self.id == nil then
    local v, ok = take(self)
    if ok ~= nil then return v, ok end
    error("channel:receive(): no value and nothing can send one (deadlock)", 2)
  end
  local ok, value = sys("channel.receive", self.id)
  if not ok then return nil, false, value end
  if self.wrap then value = self.wrap(value) end
  return value, true
end

--- ch:send(v): buffered Lua channels only; host channels are fed by the host.
function Channel:send(value)
  if self.id ~= nil then error("channel:send(): this channel is fed by the host; use process.send", 2) end
  if self.closed then error("channel:send(): channel is closed", 2) end
  self.buf[#self.buf + 1] = value
  return true
end

function Channel:close()
  if self.id ~= nil then return api.host("channel.close", self.id) end
  self.closed = true
  return true
end

function Channel:case_receive() return { channel = self, receive = true } end
function Channel:case_send(value) return { channel = self, send = true, value = value } end

--- channel.select{cases..., default = true?}: {channel=, value=, ok=}.
local function select_(cases)
  if type(cases) ~= "table" or #cases == 0 then error("channel.select: expected a list of cases", 2) end
  -- Lua channels first, in case order: they never wait on the host.
  local ids, index = {}, {}
  for i, case in ipairs(cases) do
    local ch = case.channel
    if not channels[ch] then error("channel.select: case " .. i .. " is not a channel case", 2) end
    if ch.id == nil then
      if case.send then
        if not ch.closed then ch.buf[#ch.buf + 1] = case.value return { channel = ch, ok = true } end
      else
        local v, ok = take(ch)
        if ok ~= nil then return { channel = ch, value = v, ok = ok } end
      end
    else
      ids[#ids + 1] = ch.id
      index[ch.id] = ch
    end
  end
  if cases.default then
    -- Go's select: default only when no case is ready, host channels included.
    if #ids == 0 then return { default = true } end
    local got, err = api.host("channel.poll", api.to_json(ids, "cases"))
    if got == nil then
      if err then return { ok = false, error = err } end
      return { default = true }
    end
    local ch = index[got.id]
    if not got.ok then return { channel = ch, ok = false, error = got.error } end
    local value = got.value
    if ch.wrap then value = ch.wrap(value) end
    return { channel = ch, value = value, ok = true }
  end
  if #ids == 0 then error("channel.select: no case can become ready (deadlock)", 2) end
  local ok, id, value, failed = sys("channel.select", api.to_json(ids, "cases"))
  if not ok then return { ok = false, error = id } end
  local ch = index[id]
  if failed ~= nil then return { channel = ch, ok = false, error = failed } end
  if ch.wrap then value = ch.wrap(value) end
  return { channel = ch, value = value, ok = true }
end

-- Shared by every execution of this runtime: hand out a read-only view.
Channel.__index = api.readonly(Channel, "channel")
return { new = new, select = select_, Channel = Channel.__index }
