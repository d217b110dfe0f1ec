-- errors: Wippy's error objects. err:kind(), err:message(), err:retryable(),
-- err:details(), err:stack(); errors.new, errors.wrap, errors.is,
-- errors.call_stack. An ambient global in every entry.
local api = ...
local new_error, is_error, fields = api.new_error, api.is_error, api.error_fields

local errors = {
  NOT_FOUND = "NotFound", ALREADY_EXISTS = "AlreadyExists", INVALID = "Invalid",
  PERMISSION_DENIED = "PermissionDenied", UNAVAILABLE = "Unavailable", TIMEOUT = "Timeout",
  CANCELED = "Canceled", TERMINATED = "Terminated", INTERNAL = "Internal", CONFLICT = "Conflict",
  RATE_LIMITED = "RateLimited", UNKNOWN = "Unknown",
}

--- errors.new("message") (kind UNKNOWN) or errors.new{message=, kind=, retryable=, details=}
function errors.new(spec)
  if type(spec) == "string" then return new_error("Unknown", spec, nil, nil, api.stack_here(2)) end
  if type(spec) ~= "table" or type(spec.message) ~= "string" then
    error("errors.new: expected a message string or a table with a message (the (kind, message) form is not " ..
      "supported)", 2)
  end
  if spec.kind ~= nil and type(spec.kind) ~= "string" then
    error("errors.new: kind must be a string like errors.NOT_FOUND, got " .. type(spec.kind), 2)
  end
  return new_error(spec.kind or "Unknown", spec.message, spec.retryable, spec.details, api.stack_here(2))
end

--- errors.is(err, kind): is err an error of this kind?
function errors.is(err, kind)
  local k = fields(err)
  return k ~= nil and k == kind
end

--- errors.wrap(err, "context"): the same kind, retryable and details, with context before the message.
function errors.wrap(err, context)
  local kind, message, retryable, details = fields(err)
  if kind == nil then kind, message = "Unknown", tostring(err) end
  return new_error(kind, tostring(context) .. ": " .. message, retryable, details, api.stack_here(2))
end

--- errors.call_stack(err): {thread=, frames={{source=, line=, name=}, ...}} of where err was made, or nil.
function errors.call_stack(err)
  if not is_error(err) then return nil end
  local _, _, _, _, stack = fields(err)
  if not stack or stack == "" then return nil end
  local frames = {}
  for source, line, rest in string.gmatch(stack, "\n%s*([^\n]-):(%d+):([^\n]*)") do
    local name = string.match(rest, "in %a+ '([^']+)'") or string.match(rest, "in function <([^>]+)>") or "?"
    frames[#frames + 1] = { source = source, line = math.tointeger(tonumber(line)), name = name }
  end
  return { thread = "main", frames = frames }
end

-- Wippy's type for error objects (typed Lua: `errors.Error`, the same as `error`).
errors.Error = api.types.named("errors.Error", api.types.error)

return errors
