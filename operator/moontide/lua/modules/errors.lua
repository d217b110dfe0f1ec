-- errors: error objects with kind / message / retryable (Wippy-compatible).
local api = ...
local new_error, is_error = api.new_error, api.is_error

local errors = {
  NOT_FOUND = "NotFound", ALREADY_EXISTS = "AlreadyExists", INVALID = "Invalid",
  PERMISSION_DENIED = "PermissionDenied", UNAVAILABLE = "Unavailable", TIMEOUT = "Timeout",
  CANCELED = "Canceled", TERMINATED = "Terminated", INTERNAL = "Internal", UNKNOWN = "Internal",
}

--- errors.new("message") or errors.new{kind=, message=, retryable=, details=}
function errors.new(spec)
  if type(spec) == "string" then return new_error("Internal", spec, false) end
  if type(spec) ~= "table" or type(spec.message) ~= "string" then
    error("errors.new: expected a message string or {kind=, message=}", 2)
  end
  if spec.kind ~= nil and type(spec.kind) ~= "string" then
    error("errors.new: kind must be a string like errors.NOT_FOUND, got " .. type(spec.kind), 2)
  end
  return new_error(spec.kind or "Internal", spec.message, spec.retryable == true, spec.details)
end

--- errors.is(err, kind): does err have this kind?
function errors.is(err, kind)
  return is_error(err) and err.kind == kind
end

--- errors.wrap(err, "context"): the same kind, with context before the message.
function errors.wrap(err, context)
  if not is_error(err) then err = new_error("Internal", tostring(err), false) end
  return new_error(err.kind, context .. ": " .. err.message, err.retryable, err.details)
end

-- Wippy's type for error objects (typed Lua: `errors.Error`, the same as `error`).
errors.Error = api.types.named("errors.Error", api.types.error)

return errors
