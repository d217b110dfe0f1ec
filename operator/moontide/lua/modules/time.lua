-- time: durations (Go-style strings or nanoseconds), now(), sleep(d).
-- Inside a workflow now() is workflow time and sleep() a durable timer.
local api = ...
local sys, must, new_error = api.sys, api.must, api.new_error

local time = {
  NANOSECOND = 1, MICROSECOND = 1000, MILLISECOND = 1000000, SECOND = 1000000000,
  MINUTE = 60 * 1000000000, HOUR = 3600 * 1000000000,
}

-- Durations (Wippy's Duration): nanoseconds with d:hours() ... d:nanoseconds();
-- they compare and add like numbers, with numbers of nanoseconds too.
local Duration = {}
Duration.__name = "time.Duration"
Duration.__metatable = false
local function new_duration(ns) return setmetatable({ ns = ns }, Duration) end
local function ns_of(v) if type(v) == "number" then return v end return v.ns end

function Duration:hours() return self.ns / 3600000000000 end
function Duration:minutes() return self.ns / 60000000000 end
function Duration:seconds() return self.ns / 1000000000 end
--- Whole milliseconds (and micro-, nanoseconds), truncated toward zero as Go's.
function Duration:milliseconds() local ns = self.ns return (ns < 0 and -(-ns // 1000000)) or ns // 1000000 end
function Duration:microseconds() local ns = self.ns return (ns < 0 and -(-ns // 1000)) or ns // 1000 end
function Duration:nanoseconds() return self.ns end

--- Go's text of a duration: "1h30m0s", "1.5s", "250ms", "0s".
local function duration_text(ns)
  if ns == 0 then return "0s" end
  local sign = ns < 0 and "-" or ""
  ns = ns < 0 and -ns or ns
  local function frac(v, unit, digits)   -- v / unit with trailing zeros trimmed
    local whole, rest = v // unit, v % unit
    if rest == 0 then return tostring(whole) end
    return (string.format("%d.%0" .. digits .. "d", whole, rest):gsub("0+$", ""))
  end
  if ns < 1000 then return sign .. ns .. "ns" end
  if ns < 1000000 then return sign .. frac(ns, 1000, 3) .. "µs" end
  if ns < 1000000000 then return sign .. frac(ns, 1000000, 6) .. "ms" end
  local h, m = ns // 3600000000000, ns // 60000000000 % 60
  local out = frac(ns % 60000000000, 1000000000, 9) .. "s"
  if h > 0 then return sign .. h .. "h" .. m .. "m" .. out end
  if m > 0 then return sign .. m .. "m" .. out end
  return sign .. out
end
function Duration:string() return duration_text(self.ns) end
Duration.__tostring = function(d) return duration_text(d.ns) end
Duration.__tojson = function(d) return d.ns end
Duration.__eq = function(a, b) return a.ns == b.ns end
Duration.__lt = function(a, b) return ns_of(a) < ns_of(b) end
Duration.__le = function(a, b) return ns_of(a) <= ns_of(b) end
Duration.__add = function(a, b) return new_duration(ns_of(a) + ns_of(b)) end
Duration.__sub = function(a, b) return new_duration(ns_of(a) - ns_of(b)) end
Duration.__mul = function(a, b) return new_duration(math.floor(ns_of(a) * ns_of(b))) end
Duration.__unm = function(a) return new_duration(-a.ns) end
-- dividing gives a plain number: how many of the divisor fit (d // time.MILLISECOND)
Duration.__div = function(a, b) return ns_of(a) / ns_of(b) end
Duration.__idiv = function(a, b) return ns_of(a) // ns_of(b) end
Duration.__mod = function(a, b) return new_duration(ns_of(a) % ns_of(b)) end
local function text_of(v) if api.getmetatable(v) == Duration then return duration_text(v.ns) end return v end
Duration.__concat = function(a, b) return text_of(a) .. text_of(b) end
Duration.__index = api.readonly(Duration, "time.Duration")

--- Nanoseconds of a duration: "1h30m", "500ms", a number of nanoseconds or a Duration.
local function duration(d, what)
  if api.getmetatable(d) == Duration then d = d.ns end
  if math.type(d) == "integer" then
    if d < 0 then return nil, new_error("Invalid", what .. ": negative duration", false) end
    return d
  end
  if type(d) == "number" then return duration(math.floor(d), what) end
  if type(d) ~= "string" then
    return nil, new_error("Invalid", what .. ": expected a duration like '1h30m' or nanoseconds, got " .. type(d), false)
  end
  local ns, err = api.host("duration", d)
  if ns == nil then return nil, new_error("Invalid", what .. ": " .. err:message(), false) end
  return ns
end
--- time.parse_duration(d): a Duration, or nil, err (Invalid).
time.parse_duration = function(d)
  local ns, err = duration(d, "time.parse_duration")
  if ns == nil then return nil, err end
  return new_duration(ns)
end
api.duration = duration

local Time = {}
Time.__index = api.readonly(Time, "time")   -- t.__index must not hand out the shared metatable
Time.__name = "time"
Time.__metatable = false
local function new_time(ns) return setmetatable({ ns = ns }, Time) end
api.new_time = new_time

function Time:unix() return self.ns // 1000000000 end
function Time:unix_milli() return self.ns // 1000000 end
function Time:unix_nano() return self.ns end
function Time:add(d)
  local ns, err = duration(d, "time:add")
  if not ns then error(err, 2) end
  return new_time(self.ns + ns)
end
--- t1:sub(t2): the Duration from t2 to t1.
function Time:sub(other) return new_duration(self.ns - other.ns) end
function Time:before(other) return self.ns < other.ns end
function Time:after(other) return self.ns > other.ns end
function Time:equal(other) return self.ns == other.ns end
--- RFC 3339 in UTC with nanoseconds trimmed, like Go's time.RFC3339Nano.
function Time:format_rfc3339()
  local s = api.date("%Y-%m-%dT%H:%M:%S", self.ns // 1000000000)
  local frac = self.ns % 1000000000
  if frac ~= 0 then s = s .. ("." .. string.format("%09d", frac)):gsub("0+$", "") end
  return s .. "Z"
end
--- t:format(fmt): strftime-style format in UTC ("%Y-%m-%d"); default RFC 3339.
function Time:format(fmt)
  if fmt == nil then return self:format_rfc3339() end
  return api.date(fmt, self.ns // 1000000000)
end
Time.__tostring = Time.format_rfc3339
Time.__tojson = Time.format_rfc3339
Time.__eq = function(a, b) return a.ns == b.ns end
Time.__lt = function(a, b) return a.ns < b.ns end
Time.__le = function(a, b) return a.ns <= b.ns end

function time.now() return new_time(must("now")) end
function time.unix(sec, nsec) return new_time(sec * 1000000000 + (nsec or 0)) end

--- time.sleep(d): a durable timer inside workflows; returns true, or nil, err.
function time.sleep(d)
  local ns, err = duration(d, "time.sleep")
  if not ns then return nil, err end
  return api.result(sys("sleep", ns))
end

api.require("channel")   -- host_channel
local function fired(t) return new_time(t) end

--- time.after(d): a channel that receives the time once d has passed (for channel.select); or nil, err.
function time.after(d)
  local ns, err = duration(d, "time.after")
  if not ns then return nil, err end
  return api.host_channel(must("timer.after", ns), fired)
end

local function positive(d, what)
  local ns, err = duration(d, what)
  if ns ~= nil and ns <= 0 then
    return nil, new_error("Invalid", what .. ": the duration must be more than 0", false)
  end
  return ns, err
end

-- Timers and tickers: t:response() (or t:channel()) receives the time they fire at.
local Timer = {}
Timer.__name = "time.Timer"
Timer.__metatable = false
function Timer:response() return rawget(self, "ch") end
Timer.channel = Timer.response
--- timer:stop(): true if it had not fired (then its channel never gets a value).
function Timer:stop() return must("timer.stop", rawget(self, "ch").id) end
--- timer:reset(d): start a timer that has not fired over with d; false (and nothing) once it fired or stopped.
function Timer:reset(d)
  local ns, err = positive(d, "timer:reset")
  if not ns then error(err, 2) end
  return must("timer.reset", rawget(self, "ch").id, ns)
end
Timer.__index = api.readonly(Timer, "time.Timer")

local Ticker = {}
Ticker.__name = "time.Ticker"
Ticker.__metatable = false
Ticker.response = Timer.response
Ticker.channel = Timer.response
--- ticker:stop(): no more ticks; true if it was ticking.
function Ticker:stop() return must("ticker.stop", rawget(self, "ch").id) end
Ticker.__index = api.readonly(Ticker, "time.Ticker")

--- time.timer(d): a one-shot timer (stop, reset), or nil, err.
function time.timer(d)
  local ns, err = positive(d, "time.timer")
  if not ns then return nil, err end
  return setmetatable({ ch = api.host_channel(must("timer.after", ns), fired) }, Timer)
end

--- time.ticker(d): a channel that receives the time every d until stopped (an unread tick is
--- replaced by the next, as Go's), or nil, err.
function time.ticker(d)
  local ns, err = positive(d, "time.ticker")
  if not ns then return nil, err end
  return setmetatable({ ch = api.host_channel(must("ticker.start", ns), fired) }, Ticker)
end

-- Wippy's type for the times this module makes (typed Lua: `local t: time.Time`).
time.Time = api.types.opaque("time.Time", "interface", function(v) return api.getmetatable(v) == Time end)
time.Duration = api.types.opaque("time.Duration", "interface", function(v) return api.getmetatable(v) == Duration end)
time.Timer = api.types.opaque("time.Timer", "interface", function(v) return api.getmetatable(v) == Timer end)
time.Ticker = api.types.opaque("time.Ticker", "interface", function(v) return api.getmetatable(v) == Ticker end)

return time
