-- events: Wippy's event bus, for functions and processes (docs/lua-api.md, "events").
-- Best-effort publish/subscribe among the functions and processes of one app
-- runtime; a workflow gets an error naming the module (its history would not
-- hold what it sent or read).
local api = ...
local new_error = api.new_error
api.require("channel")   -- api.host_channel
local events = {}

local function invalid(message) return nil, new_error("Invalid", message, false) end

-- A subscription: sub:channel() (receive, select), sub:close() (idempotent: true).
local Subscription = {}
Subscription.__name = "events.Subscription"
Subscription.__metatable = false
function Subscription:channel() return rawget(self, "_ch") end
function Subscription:close()
  if not rawget(self, "_closed") then
    rawset(self, "_closed", true)
    rawget(self, "_ch"):close()
  end
  return true
end
Subscription.__index = api.readonly(Subscription, "events.Subscription")

--- events.subscribe(system_pattern [, kind]): a Subscription, or nil, err (Invalid).
function events.subscribe(system, kind)
  api.must("events.scope")
  if type(system) ~= "string" then return invalid("events.subscribe: system must be a string") end
  if system == "" then return invalid("events.subscribe: system cannot be empty") end
  if kind ~= nil and type(kind) ~= "string" then return invalid("events.subscribe: kind must be a string") end
  local id, err = api.host("events.subscribe", system, kind)
  if id == nil then return nil, err end
  return setmetatable({ _ch = api.host_channel(id, nil) }, Subscription)
end

--- events.send(system, kind, path [, data]): true (the bus took it), or nil, err (Invalid).
function events.send(system, kind, path, data)
  api.must("events.scope")
  if type(system) ~= "string" or system == "" then return invalid("events.send: system cannot be empty") end
  if type(kind) ~= "string" or kind == "" then return invalid("events.send: kind cannot be empty") end
  if type(path) ~= "string" or path == "" then return invalid("events.send: path cannot be empty") end
  local text
  if data ~= nil then
    local err
    text, err = api.to_json(data, "data")
    if text == nil then return nil, err end
  end
  return api.host("events.send", system, kind, path, text)
end

return events
