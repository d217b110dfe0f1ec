-- json: Wippy's json module. encode/decode (keys sorted), validate against a
-- JSON Schema; json.array(t) marks a table as a JSON array, json.null stands
-- for null inside arrays (test with `v == json.null`).
local api = ...
local new_error = api.new_error
local json = { null = api.null }

local function internal(err)
  return nil, new_error("Internal", tostring(err), false)
end

--- json.encode(value): text, or nil, err (Internal). Wippy's rules: an empty table is [],
--- NaN and infinities are null; functions, cycles, mixed keys and sparse arrays are errors.
function json.encode(value)
  local text, err = api.to_json(value, "value", true)
  if text == nil then return internal(err) end
  return text
end

--- json.decode(text [, T]): value, or nil, err (Internal for text that is not JSON, Invalid for
--- a text that is not a string or is empty, or a value that is not a T).
function json.decode(text, t)
  if type(text) ~= "string" then return nil, new_error("Invalid", "json.decode: string expected", false) end
  if text == "" then return nil, new_error("Invalid", "json.decode: empty string is not valid JSON", false) end
  local value, err = api.host("json.decode", text)   -- text that is not JSON: Internal, as in Wippy
  if err ~= nil or t == nil then return value, err end
  local is = type(t) == "table" and t.is
  if type(is) ~= "function" then return nil, new_error("Invalid", "json.decode: $: expected type value", false) end
  local _, bad = is(t, value)
  if bad ~= nil then return nil, new_error("Invalid", "json.decode: " .. tostring(bad), false) end
  return value
end

local function schema_text(schema)
  if type(schema) == "string" then return schema end
  if type(schema) == "table" then return api.to_json(schema, "schema") end
  return nil, new_error("Invalid", "json.validate: schema must be a string or table", false)
end

local function validated(schema, data_json)
  local text, err = schema_text(schema)
  if text == nil then return false, err end
  local ok, verr = api.host("json.validate", text, data_json)
  if ok == nil then return false, verr end
  return true
end

--- json.validate(schema, data): true, or false, err (Invalid, naming where data breaks the schema).
function json.validate(schema, data)
  if schema == nil then return false, new_error("Invalid", "json.validate: schema is required", false) end
  if data == nil then return false, new_error("Invalid", "json.validate: data is required", false) end
  local text, err = api.to_json(data, "data")
  if text == nil then return false, err end
  return validated(schema, text)
end

--- json.validate_string(schema, text): json.validate for a JSON text, without decoding it into Lua.
function json.validate_string(schema, text)
  if schema == nil then return false, new_error("Invalid", "json.validate_string: schema is required", false) end
  if type(text) ~= "string" then
    return false, new_error("Invalid", "json.validate_string: data must be a JSON string", false)
  end
  return validated(schema, text)
end

--- json.array(t): t (or a new table) encodes as a JSON array, even when empty.
function json.array(t)
  return setmetatable(t or {}, api.ARRAY)
end

return json
