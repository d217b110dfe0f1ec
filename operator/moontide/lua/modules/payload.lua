-- payload: Wippy's payloads, a value with a format, transcoded between
-- formats. payload.new(v) is a Lua payload ("lua/any"; an error object gives
-- "golang/error"); p:transcode(payload.format.JSON) encodes it (JSON, YAML,
-- MSGPACK: the value; STRING, BYTES: a string as it is); p:data() and
-- p:unmarshal() give the Lua value back. Failures are nil, err (Internal).
local api = ...
local new_error, host, to_json = api.new_error, api.host, api.to_json

local FORMAT = {
  JSON = "json/plain", YAML = "yaml/plain", STRING = "text/plain", BYTES = "application/octet-stream",
  MSGPACK = "application/msgpack", LUA = "lua/any", GOLANG = "golang/any", ERROR = "golang/error",
}
local KNOWN = {}
for _, f in pairs(FORMAT) do KNOWN[f] = true end
-- formats that hold the value itself; the others hold its encoding (a string of bytes)
local HELD = { [FORMAT.LUA] = true, [FORMAT.GOLANG] = true, [FORMAT.ERROR] = true }

local function failed(what, message)
  return nil, new_error("Internal", "payload:" .. what .. ": " .. message, false)
end

local Payload = {}
Payload.__name = "payload"
Payload.__metatable = false

-- _value: the value (a held format), or for an encoded one a private copy made when it was
-- encoded (what it is when it crosses to the host, where no decoding can be done)
local function make(format, value, raw)
  return setmetatable({ _format = format, _value = value, _raw = raw }, Payload)
end

local payload = { format = api.readonly(FORMAT, "payload.format") }

--- payload.new(value): a "lua/any" payload of any Lua value ("golang/error" for an error object).
function payload.new(value)
  return make(api.is_error(value) and FORMAT.ERROR or FORMAT.LUA, value)
end

--- p:get_format(): one of payload.format's values.
function Payload:get_format() return rawget(self, "_format") end

local function decoded(self, what)
  local format, raw = rawget(self, "_format"), rawget(self, "_raw")
  if HELD[format] then return rawget(self, "_value") end
  if format == FORMAT.STRING or format == FORMAT.BYTES then return raw end
  local value, err
  if format == FORMAT.JSON then
    value, err = host("json.decode", raw)
  else
    value, err = host("payload.decode", format, format == FORMAT.MSGPACK and api.as_latin1(raw) or raw)
  end
  if err ~= nil then return failed(what, tostring(err)) end
  return value
end

--- p:data(): the Lua value (decoded from the payload's format if need be), or nil, err.
function Payload:data() return decoded(self, "data") end
--- p:unmarshal(): the same: Moontide's payloads always decode to plain Lua values.
function Payload:unmarshal() return decoded(self, "unmarshal") end

--- p:transcode(format): a new payload holding the value in that format, or nil, err.
function Payload:transcode(format)
  if not KNOWN[format] then
    return failed("transcode", "unknown format " .. tostring(format) .. " (use a payload.format constant)")
  end
  local value, err = decoded(self, "transcode")
  if err ~= nil then return nil, err end
  if format == FORMAT.LUA or format == FORMAT.GOLANG then return make(format, value) end
  if format == FORMAT.ERROR then
    if api.is_error(value) then return make(format, value) end
    return failed("transcode", "only an error converts to " .. format)
  end
  if format == FORMAT.STRING or format == FORMAT.BYTES then
    local t = type(value)
    if t == "string" then return make(format, value, value) end
    if t == "number" or t == "boolean" then return make(format, tostring(value), tostring(value)) end
    return failed("transcode", "a " .. t .. " has no " .. format .. " form (transcode to JSON or YAML)")
  end
  local text, jerr = to_json(value, "payload", true)   -- json.encode's rules
  if text == nil then return failed("transcode", tostring(jerr)) end
  local copy, cerr = host("json.decode", text)
  if cerr ~= nil then return failed("transcode", tostring(cerr)) end
  if format == FORMAT.JSON then return make(format, copy, text) end
  local raw, herr = host("payload.encode", format, text)
  if herr ~= nil then return failed("transcode", tostring(herr)) end
  return make(format, copy, raw)
end

Payload.__index = api.readonly(Payload, "payload")
Payload.__tostring = function(p) return "payload{format=" .. rawget(p, "_format") .. "}" end
-- a payload crossing to the host (a result, a message) is its value
Payload.__tojson = function(p) return rawget(p, "_value") end

return payload
