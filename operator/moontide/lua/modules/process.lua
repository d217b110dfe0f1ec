-- process: pids, spawn, messages, events, cancel. The same API in every
-- host: in a workflow, spawn starts a child workflow and a message is a
-- Temporal signal; in a process host, they are local actors and mailboxes.
local api = ...
local sys, must, new_error, args_json, to_json = api.sys, api.must, api.new_error, api.args_json, api.to_json
local channel = api.require("channel")

local process = { event = api.readonly({ EXIT = "pid.exit", CANCEL = "pid.cancel", LINK_DOWN = "pid.link.down" }, "process.event") }

-- Messages answer msg:topic(), msg:from(), msg:payload() (a payload module
-- payload: :data(), :get_format(), :transcode(...)), and read as their
-- payload: msg.approved.
local new_payload = api.require("payload").new

local Message = {}
Message.__name = "message"
Message.__metatable = false
Message.__index = function(msg, key)
  local method = Message[key]
  if method ~= nil then return method end
  local data = rawget(msg, "_payload")
  if type(data) == "table" then return data[key] end
end
function Message:topic() return rawget(self, "_topic") end
function Message:from() return rawget(self, "_from") end
function Message:payload() return new_payload(rawget(self, "_payload")) end
Message.__tojson = function(m) return { topic = m:topic(), from = m:from(), payload = m:payload():data() } end

local function message(raw)
  return setmetatable({ _topic = raw.topic, _from = raw.from, _payload = raw.payload }, Message)
end

-- Wippy's types for what process hands out (typed Lua: `type Message = process.Message`).
local types = api.types
process.Message = types.opaque("process.Message", "interface", function(v) return api.getmetatable(v) == Message end)
process.Event = types.named("process.Event", types.record({
  { "kind", types.string }, { "from", types.string },
  { "result", types.opt(types.any), true }, { "reason", types.opt(types.string), true },
}))

function process.pid() return must("process.pid") end

local Spawner = {}
Spawner.__metatable = false

-- sp: a spawner ({options=, ctx=}) or nil
local function spawn(sp, how, id, host, ...)
  if type(id) ~= "string" or type(host) ~= "string" then
    return nil, new_error("Invalid", "process.spawn(id, host, ...): id and host must be entry IDs", false)
  end
  local args, err = args_json(select("#", ...), ...)
  if not args then return nil, err end
  local opts = nil
  if sp and sp.options ~= nil then
    opts, err = to_json(sp.options, "options")
    if not opts then return nil, err end
  end
  return api.result(sys("process.spawn", how, id, host, args, opts, sp and sp.ctx and sp.ctx.json))
end

--- process.with_options{workflow_id=, id_conflict_policy=, id_reuse_policy=,
--- execution_timeout=, retry_policy=, memo=, search_attributes=,
--- parent_close_policy=}: a spawner.
function process.with_options(options)
  return setmetatable({ options = options }, Spawner)
end

-- A spawner with context values over the ones it had (the caller's own context is always passed on).
local function with_context(sp, values)
  api.require("ctx")
  local ctx, err = api.context_values(sp and sp.ctx, values)
  if not ctx then return nil, err end
  return setmetatable({ options = sp and sp.options, ctx = ctx }, Spawner)
end
--- process.with_context{key = value}: a spawner whose processes and workflows see these values in ctx.
function process.with_context(values) return with_context(nil, values) end
function Spawner:with_context(values) return with_context(self, values) end

function Spawner:spawn(id, host, ...) return spawn(self, "plain", id, host, ...) end
function Spawner:spawn_linked(id, host, ...) return spawn(self, "linked", id, host, ...) end
function Spawner:spawn_monitored(id, host, ...) return spawn(self, "monitored", id, host, ...) end

function process.spawn(id, host, ...) return spawn(nil, "plain", id, host, ...) end
function process.spawn_linked(id, host, ...) return spawn(nil, "linked", id, host, ...) end
function process.spawn_monitored(id, host, ...) return spawn(nil, "monitored", id, host, ...) end

local function exec(sp, id, host, ...)
  if type(id) ~= "string" or type(host) ~= "string" then
    return nil, new_error("Invalid", "process.exec(id, host, ...): id and host must be entry IDs", false)
  end
  local args, err = args_json(select("#", ...), ...)
  if not args then return nil, err end
  local opts = nil
  if sp and sp.options ~= nil then
    opts, err = to_json(sp.options, "options")
    if not opts then return nil, err end
  end
  return api.result(sys("process.exec", id, host, args, opts, sp and sp.ctx and sp.ctx.json))
end

--- process.exec(id, host, ...): spawn and wait for the result: value, or nil, err.
function process.exec(id, host, ...) return exec(nil, id, host, ...) end
--- process.with_options{...}:exec(id, host, ...): the same, with spawn options.
function Spawner:exec(id, host, ...) return exec(self, id, host, ...) end
Spawner.__index = api.readonly(Spawner, "process.spawner")   -- shared: a read-only view

--- process.send(pid, topic, payload): true, or nil, err.
function process.send(pid, topic, payload)
  if type(pid) ~= "string" or type(topic) ~= "string" then
    return nil, new_error("Invalid", "process.send(pid, topic, payload): pid and topic must be strings", false)
  end
  local data, err = to_json(payload, "payload")
  if not data then return nil, err end
  return api.result(sys("process.send", pid, topic, data))
end

function process.cancel(pid, reason) return api.result(sys("process.cancel", pid, reason and tostring(reason) or nil)) end
function process.terminate(pid, reason) return api.result(sys("process.terminate", pid, reason and tostring(reason) or nil)) end
--- process.trap_links(on): a linked process's failure is only a pid.link.down event
--- (also implied once this process waits on process.events()).
function process.trap_links(on) return must("process.trap_links", on ~= false) end
function process.link(pid) return api.result(sys("process.link", pid)) end
function process.unlink(pid) return api.result(sys("process.unlink", pid)) end
function process.monitor(pid) return api.result(sys("process.monitor", pid)) end
function process.demonitor(pid) return api.result(sys("process.demonitor", pid)) end

local inbox = api.host_channel("inbox", message, "process.inbox")
-- An event's result.error arrives as data: make it an error object.
local function event(raw)
  local result = raw.result
  local e = type(result) == "table" and rawget(result, "error")
  if type(e) == "table" and not api.is_error(e) and type(e.kind) == "string" then
    result.error = new_error(e.kind, e.message, e.retryable, e.details)
  end
  return raw
end
local events = api.host_channel("events", event, "process.events")
function process.inbox() return inbox end
function process.events() return events end
--- process.listen(topic): a channel of that topic's payloads (the data itself).
function process.listen(topic)
  if type(topic) ~= "string" then error("process.listen(topic): topic must be a string", 2) end
  must("channel.listen", topic)
  return api.host_channel("topic:" .. topic, nil)
end

process.registry = api.readonly({
  register = function(name, pid) return api.result(sys("registry.register", name, pid)) end,
  lookup = function(name) return api.result(sys("registry.lookup", name)) end,
  unregister = function(name) return api.result(sys("registry.unregister", name)) end,
}, "process.registry")

return process
