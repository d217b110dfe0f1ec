-- logger: structured logs (Wippy's logger): logger:info("message", {fields}),
-- children with fields of their own (logger:with{...}) or a name
-- (logger:named("auth")). logger.info("message") works too. Inside a workflow,
-- replay does not log twice.
local api = ...
local to_json, new_error = api.to_json, api.new_error

-- A logger is {name=, fields=}: the module itself is the root. Children are
-- fresh tables sharing read-only methods.
local Logger = {}
Logger.__name = "logger"
Logger.__metatable = false

local ROOT = {}   -- the root logger's state: never handed out
local logger = {}

-- Who is calling: a child logger, the module itself (logger:info), or nobody
-- (logger.info("message"): the root, and the first argument is the message).
local function self_of(x)
  if api.getmetatable(x) == Logger then return x end
  if type(x) == "table" and rawequal(x.with, logger.with) and rawequal(x.info, logger.info) then return ROOT end
  return nil
end

local function merged(a, b)
  if a == nil then return b end
  if b == nil then return a end
  local out = {}
  for k, v in pairs(a) do out[k] = v end
  for k, v in pairs(b) do out[k] = v end
  return out
end

for _, level in ipairs({ "debug", "info", "warn", "error" }) do
  logger[level] = function(x, message, fields)
    local self = self_of(x)
    if self == nil then self, message, fields = ROOT, x, message end
    local all = merged(rawget(self, "fields"), fields)
    local name = rawget(self, "name")
    if name ~= nil then all = merged(all, { logger = name }) end
    local f = nil
    if all ~= nil then f = to_json(all, "fields") end   -- fields that cannot cross are left out
    api.host("log", level, tostring(message), f)
  end
end

--- logger:with{fields}: a child logger adding these fields to every line.
function logger.with(x, fields)
  local self = self_of(x)
  if self == nil then self, fields = ROOT, x end
  if type(fields) ~= "table" then error("logger:with(fields): fields must be a table", 2) end
  return setmetatable({ name = rawget(self, "name"), fields = merged(rawget(self, "fields"), fields) }, Logger)
end

--- logger:named(name): a child logger whose lines carry the field logger = name ("parent.name" for a child's child).
function logger.named(x, name)
  local self = self_of(x)
  if self == nil then self, name = ROOT, x end
  if type(name) ~= "string" or name == "" then
    return nil, new_error("Invalid", "logger:named(name): name must be a non-empty string", false)
  end
  local parent = rawget(self, "name")
  return setmetatable({ name = parent and parent .. "." .. name or name, fields = rawget(self, "fields") }, Logger)
end

Logger.__index = api.readonly(logger, "logger")
return logger
