-- registry: Wippy's entry registry, read-only, for functions and processes
-- (docs/lua-api.md, "registry"). Entries come from the app's YAML files or
-- custom resources: one version, and changesets or apply_version are refused
-- (PermissionDenied). Every entry handed out is a fresh copy.
local api = ...
local new_error, to_json = api.new_error, api.to_json
local registry = {}

local READ_ONLY = "the registry is read-only in Moontide: entries come from the app's YAML files or its " ..
  "custom resources (change them there)"
local function denied(what) return nil, new_error("PermissionDenied", what .. ": " .. READ_ONLY, false) end
local function invalid(message) return nil, new_error("Invalid", message, false) end

local function get(id)
  if type(id) ~= "string" then return invalid("registry.get: id must be a string 'namespace:name'") end
  return api.host("registry.get", id)
end

local function find(filter)
  if filter ~= nil and type(filter) ~= "table" then return invalid("registry.find: filter must be a table") end
  local text, err
  if filter ~= nil and next(filter) ~= nil then
    text, err = to_json(filter, "filter")
    if text == nil then return nil, err end
  end
  return api.host("registry.find", text)
end

-- Versions: Moontide's registry has one, 1, for the life of the runtime.
local Version = {}
Version.__name = "registry.Version"
Version.__metatable = false
function Version:id() return 1 end
function Version:string() return "1" end
function Version:previous() return nil end
function Version:next() return nil end
Version.__index = api.readonly(Version, "registry.Version")
local function version() return setmetatable({}, Version) end

local function version_number(v)
  if type(v) == "number" then return v end
  if type(v) == "table" and api.getmetatable(v) == Version then return 1 end
end

-- A changeset: operations are collected as in Wippy; apply() is refused.
local Changes = {}
Changes.__name = "registry.Changes"
Changes.__metatable = false
local function add(self, kind, entry)
  local ops = rawget(self, "_ops")
  ops[#ops + 1] = { kind = kind, entry = entry }
  return self
end
function Changes:create(entry) return add(self, "entry.create", entry) end
function Changes:update(entry) return add(self, "entry.update", entry) end
function Changes:delete(id)
  if type(id) == "table" then id = tostring(id.ns or id[1]) .. ":" .. tostring(id.name or id[2]) end
  return add(self, "entry.delete", { id = id })
end
function Changes:ops()
  local out = {}
  for i, op in ipairs(rawget(self, "_ops")) do out[i] = op end
  return out
end
function Changes:apply() return denied("changes:apply()") end
Changes.__index = api.readonly(Changes, "registry.Changes")

-- A snapshot: the entries as they are (they do not change while the runtime runs).
local Snapshot = {}
Snapshot.__name = "registry.Snapshot"
Snapshot.__metatable = false
function Snapshot:entries() return find(nil) end
function Snapshot:get(id) return get(id) end
function Snapshot:find(filter) return find(filter) end
function Snapshot:namespace(ns)
  if type(ns) ~= "string" then return invalid("snapshot:namespace(ns): ns must be a string") end
  return find({ [".ns"] = ns })
end
function Snapshot:version() return version() end
function Snapshot:changes() return setmetatable({ _ops = {} }, Changes) end
Snapshot.__index = api.readonly(Snapshot, "registry.Snapshot")

local function scoped(f)
  return function(...)
    api.must("registry.scope")
    return f(...)
  end
end

--- registry.get(id): {id=, kind=, meta=, data=}, or nil, err (NotFound, Invalid).
registry.get = scoped(get)
--- registry.find(filter): entries whose fields all match ({[".kind"] = ..., [".ns"] = ..., meta fields}).
registry.find = scoped(find)

--- registry.parse_id("ns:name"): {ns=, name=}, or nil, err (Invalid).
function registry.parse_id(id)
  if type(id) ~= "string" then return invalid("registry.parse_id: id must be a string") end
  local ns, name = id:match("^([^:]+):([^:]+)$")
  if ns == nil then return invalid("registry.parse_id: invalid entry ID '" .. id .. "' (expected 'namespace:name')") end
  return { ns = ns, name = name }
end

registry.snapshot = scoped(function() return setmetatable({}, Snapshot) end)
registry.snapshot_at = scoped(function(v)
  if version_number(v) ~= 1 then return nil, new_error("NotFound", "registry: no version " .. tostring(v) ..
    " (Moontide's registry has version 1 only)", false) end
  return setmetatable({}, Snapshot)
end)
registry.current_version = scoped(function() return version() end)
registry.versions = scoped(function() return { version() } end)

local History = {}
History.__name = "registry.History"
History.__metatable = false
function History:versions() return { version() } end
function History:get_version(n)
  if version_number(n) ~= 1 then return nil, new_error("NotFound", "registry: no version " .. tostring(n), false) end
  return version()
end
function History:snapshot_at(v) return registry.snapshot_at(v) end
History.__index = api.readonly(History, "registry.History")
registry.history = scoped(function() return setmetatable({}, History) end)

--- registry.apply_version(v): refused (PermissionDenied).
registry.apply_version = scoped(function() return denied("registry.apply_version") end)

return registry
