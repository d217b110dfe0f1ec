-- funcs: call function.lua entries. Inside a workflow a call is a Temporal
-- activity whose result is recorded; elsewhere it runs in-process.
local api = ...
local sys, must, new_error, args_json, to_json = api.sys, api.must, api.new_error, api.args_json, api.to_json

-- A future (Wippy's en/lua/core/future.md): f:result() reads it without
-- waiting; f:response() (or f:channel()) is a channel that receives its
-- payload (or its error) once it is done, for receive or channel.select.
local Future = {}
Future.__index = Future
Future.__name = "future"
Future.__metatable = false

api.require("channel")   -- host_channel
local new_payload = api.require("payload").new   -- a result is a payload module payload

--- The outcome once done: {ok=true, value=} or {ok=false, error=}; nil while it runs.
local function outcome(f)
  local out = rawget(f, "outcome")
  if out == nil then
    out = must("future.result", f.handle)
    if out ~= nil then rawset(f, "outcome", out) end
  end
  return out
end

--- future:result(): its payload (payload:data() is the value), or nil, err; nil, nil while it runs.
function Future:result()
  local out = outcome(self)
  if out == nil then return nil, nil end
  if out.ok then return new_payload(out.value), nil end
  return nil, out.error
end
--- future:error(): err, true once it has failed (a non-retryable Internal error with its message); nil, false otherwise.
function Future:error()
  local out = outcome(self)
  if out == nil or out.ok then return nil, false end
  return api.new_error("Internal", tostring(out.error), false), true
end
function Future:is_complete() return outcome(self) ~= nil end
function Future:is_canceled() return rawget(self, "canceled") == true end
--- future:cancel(): true if it was still running (its result is now a Canceled error); false once done.
function Future:cancel()
  local canceled, err = api.host("future.cancel", self.handle)
  if canceled then rawset(self, "canceled", true) end
  if err then return false, err end
  return canceled == true
end
--- future:response() / future:channel(): receives the payload, or the error, once it is done
--- (a canceled future's channel is closed).
function Future:response()
  local ch = rawget(self, "ch")
  if ch == nil then
    ch = api.host_channel("future:" .. self.handle, new_payload)
    rawset(ch, "errors_are_values", true)
    rawset(ch, "future", self)
    rawset(self, "ch", ch)
  end
  return ch
end
Future.channel = Future.response

local Executor = {}
Executor.__index = Executor
Executor.__name = "funcs.executor"
Executor.__metatable = false

-- ctx: {values=, json=} of with_context, or nil (the call passes on the caller's own context)
local function executor(options, ctx)
  local opts_json = nil
  if next(options) ~= nil then
    local err
    opts_json, err = to_json(options, "options")
    if not opts_json then error(err, 3) end
  end
  return setmetatable({ options = options, opts_json = opts_json, ctx = ctx }, Executor)
end

--- executor:with_options{start_to_close_timeout=, retry_policy={...}, ...}: a new executor.
function Executor:with_options(options)
  if type(options) ~= "table" then error("with_options: expected a table of options", 2) end
  local merged = {}
  for k, v in pairs(self.options) do merged[k] = v end
  for k, v in pairs(options) do merged[k] = v end
  return executor(merged, self.ctx)
end

--- executor:with_context{key = value, ...}: a new executor whose calls carry these context values
--- (over the caller's own, which every call passes on); nil, err for keys that are not strings.
function Executor:with_context(values)
  api.require("ctx")
  local ctx, err = api.context_values(self.ctx, values)
  if not ctx then return nil, err end
  return executor(self.options, ctx)
end

local function check_id(id, what)
  if type(id) ~= "string" or id == "" then
    return new_error("Invalid", what .. ": the function id must be a string like 'app.api:charge'", false)
  end
end

--- executor:call(id, ...): value, or nil, err (err:kind(), err:message(), err:retryable()).
function Executor:call(id, ...)
  local bad = check_id(id, "funcs.call")
  if bad then return nil, bad end
  local args, err = args_json(select("#", ...), ...)
  if not args then return nil, err end
  return api.result(sys("call", id, args, self.opts_json, self.ctx and self.ctx.json))
end

--- executor:async(id, ...): a future; future:result() waits for it.
function Executor:async(id, ...)
  local bad = check_id(id, "funcs.async")
  if bad then return nil, bad end
  local args, err = args_json(select("#", ...), ...)
  if not args then return nil, err end
  local handle, herr = api.host("funcs.async", id, args, self.opts_json, self.ctx and self.ctx.json)
  if handle == nil then return nil, herr end
  return setmetatable({ handle = handle, id = id }, Future)
end

-- Wippy's type for futures (typed Lua: `local f: funcs.Future`).
local Future_type = api.types.opaque("funcs.Future", "interface", function(v) return api.getmetatable(v) == Future end)

-- Shared by every execution of this runtime: hand out read-only views.
Future.__index = api.readonly(Future, "future")
Executor.__index = api.readonly(Executor, "funcs.executor")

local default = executor({})
local funcs = {}
function funcs.new() return executor({}) end
function funcs.call(id, ...) return default:call(id, ...) end
function funcs.async(id, ...) return default:async(id, ...) end
funcs.Future = Future_type
return funcs
