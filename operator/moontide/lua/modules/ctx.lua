-- ctx: the request context (Wippy's ctx module): values the caller set with
-- funcs.new():with_context{...} or process.with_context{...}, inherited along
-- every call and spawn after (docs/lua-api.md, "ctx"). Read-only here.
local api = ...
local ctx = {}

--- ctx.get(key): the value, or nil, err (NotFound when the context has no such key).
function ctx.get(key)
  if type(key) ~= "string" then return nil, api.new_error("Invalid", "ctx.get: key must be a string", false) end
  if key == "" then return nil, api.new_error("Invalid", "ctx.get: empty key", false) end
  return api.host("ctx.get", key)
end

--- ctx.all(): every value, as a fresh table ({} when there are none).
function ctx.all() return api.host("ctx.all") end

--- For funcs' and process's with_context: {values=, json=} with `values` over `prev`'s, or nil, err.
function api.context_values(prev, values)
  if type(values) ~= "table" then error("with_context: expected a table of context values", 3) end
  local merged = {}
  if prev then for k, v in pairs(prev.values) do merged[k] = v end end
  for k, v in pairs(values) do
    if type(k) ~= "string" then return nil, api.new_error("Invalid", "with_context: keys must be strings", false) end
    merged[k] = v
  end
  local text, err = api.to_json(merged, "context")
  if not text then return nil, err end
  return { values = merged, json = text }
end

return ctx
