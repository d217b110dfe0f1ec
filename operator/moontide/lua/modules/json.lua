-- json: encode/decode with sorted keys; json.array(t) marks a table as a JSON array;
-- json.null stands for null inside arrays (test with `v == json.null`).
local api = ...
local json = { null = api.null }

function json.encode(value)
  return api.to_json(value, "value")
end

function json.decode(text)
  if type(text) ~= "string" then return nil, api.new_error("Invalid", "json.decode: expected a string", false) end
  return api.host("json.decode", text)
end

--- json.array(t): t (or a new table) encodes as a JSON array, even when empty.
function json.array(t)
  return setmetatable(t or {}, api.ARRAY)
end

return json
