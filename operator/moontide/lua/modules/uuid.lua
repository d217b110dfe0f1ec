-- uuid: generation (v1, v4, v7: inside a workflow they come from the
-- workflow's time and seeded random, so a replay makes the same ones; v3, v5:
-- from a namespace and a name) and inspection (Wippy's uuid module).
local api = ...
local host, new_error = api.host, api.new_error
local uuid = {}

function uuid.v1() return host("uuid.v1") end
function uuid.v4() return host("uuid.v4") end
function uuid.v7() return host("uuid.v7") end

local function named(version)
  return function(namespace, name)
    if type(namespace) ~= "string" or type(name) ~= "string" then
      return nil, new_error("Invalid", "uuid.v" .. version .. ": namespace and name must be strings", false)
    end
    return host("uuid.named", version, namespace, api.as_latin1(name))
  end
end
--- uuid.v3(namespace, name), uuid.v5(namespace, name): the same name in the same namespace, the same UUID.
uuid.v3, uuid.v5 = named(3), named(5)

--- uuid.validate(x): whether x is a UUID string (standard, {braced}, urn:uuid: or 32 hex digits).
function uuid.validate(x)
  return type(x) == "string" and host("uuid.inspect", "validate", x) == true
end

local function inspect(what)
  return function(id, arg)
    if type(id) ~= "string" then return nil, new_error("Invalid", "uuid." .. what .. ": input must be a string", false) end
    return host("uuid.inspect", what, id, arg)
  end
end
--- uuid.version(id) -> integer; uuid.variant(id) -> "RFC4122", "Microsoft", "NCS" or "Future";
--- uuid.parse(id) -> {version=, variant=, timestamp= (v1, v7: Unix seconds), node= (v1: 12 hex digits)};
--- uuid.format(id, "standard" | "simple" | "urn").
uuid.version, uuid.variant, uuid.parse, uuid.format = inspect("version"), inspect("variant"), inspect("parse"),
  inspect("format")

return uuid
