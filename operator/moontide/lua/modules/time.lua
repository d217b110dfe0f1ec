-- time: durations (Go-style strings or nanoseconds), now(), sleep(d).
-- Inside a workflow now() is workflow time and sleep() a durable timer.
local api = ...
local sys, must, new_error = api.sys, api.must, api.new_error

local time = {
  NANOSECOND = 1, MICROSECOND = 1000, MILLISECOND = 1000000, SECOND = 1000000000,
  MINUTE = 60 * 1000000000, HOUR = 3600 * 1000000000,
}

--- Nanoseconds of a duration: "1h30m", "500ms" or a number of nanoseconds.
local function duration(d, what)
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
time.parse_duration = function(d) return duration(d, "time.parse_duration") end
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
--- t1:sub(t2): nanoseconds between two times.
function Time:sub(other) return self.ns - other.ns end
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

--- time.after(d): a channel that receives the time once d has passed (for channel.select).
function time.after(d)
  local ns, err = duration(d, "time.after")
  if not ns then error(err, 2) end
  local channel = api.require("channel")
  return api.host_channel(must("timer.after", ns), function(t) return new_time(t) end)
end

-- Wippy's type for the times this module makes (typed Lua: `local t: time.Time`).
time.Time = api.types.opaque("time.Time", "interface", function(v) return api.getmetatable(v) == Time end)

return time
