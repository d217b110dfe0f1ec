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

-- A spawner (process.with_options(...)) is immutable: each with_* returns a new one.
local Spawner = {}
Spawner.__metatable = false

-- Fields: options (Wippy's), name (:with_name), messages (:with_message), ctx (:with_context: {values=, json=}).
local function spawner(options, name, messages, ctx)
  return setmetatable({ options = options, name = name, messages = messages, ctx = ctx }, Spawner)
end

local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

--- The spawner's options, name, startup messages (JSON) and context (JSON) as the host reads them, or nil, err.
local function spec(self)
  local opts, messages, err
  if self and next(self.options) ~= nil then
    opts, err = to_json(self.options, "options")
    if not opts then return nil, err end
  end
  if self and #self.messages > 0 then
    messages, err = to_json(self.messages, "startup messages")
    if not messages then return nil, err end
  end
  return true, opts, self and self.name, messages, self and self.ctx and self.ctx.json
end

-- self: a spawner, or nil (process.spawn)
local function spawn(self, how, id, host, ...)
  if type(id) ~= "string" or type(host) ~= "string" then
    return nil, new_error("Invalid", "process.spawn(id, host, ...): id and host must be entry IDs", false)
  end
  local args, err = args_json(select("#", ...), ...)
  if not args then return nil, err end
  local ok, opts, name, messages, ctx_json = spec(self)
  if not ok then return nil, opts end
  return api.result(sys("process.spawn", how, id, host, args, opts, name, messages, ctx_json))
end

--- process.with_options{["workflow.id"] = ..., ...}: a spawner. The options are Wippy's
--- (docs/lua-api.md, "Spawn options").
function process.with_options(options)
  if type(options) ~= "table" then error("process.with_options(options): expected a table", 2) end
  return spawner(copy(options), nil, {})
end
--- spawner:with_options{...}: a spawner with these options merged in.
function Spawner:with_options(options)
  if type(options) ~= "table" then error("spawner:with_options(options): expected a table", 2) end
  local merged = copy(self.options)
  for k, v in pairs(options) do merged[k] = v end
  return spawner(merged, self.name, self.messages, self.ctx)
end
--- spawner:with_name(name): the workflow ID (a named spawn answers a running one's pid);
--- on a process host, the name the process is registered under.
function Spawner:with_name(name)
  if type(name) ~= "string" or name == "" then error("spawner:with_name(name): expected a non-empty string", 2) end
  return spawner(self.options, name, self.messages, self.ctx)
end
--- spawner:with_message(topic, ...): a message the spawned process gets first (signal-with-start).
function Spawner:with_message(topic, ...)
  if type(topic) ~= "string" or topic == "" then error("spawner:with_message(topic, ...): expected a topic", 2) end
  local n = select("#", ...)
  local payload = n == 1 and (...) or nil
  if n > 1 then payload = { ... } end
  local messages = copy(self.messages)
  messages[#messages + 1] = { topic = topic, payload = payload }
  return spawner(self.options, self.name, messages, self.ctx)
end

-- A spawner with context values over the ones it had (the caller's own context is always passed on).
local function with_context(sp, values)
  api.require("ctx")
  local ctx, err = api.context_values(sp and sp.ctx, values)
  if not ctx then return nil, err end
  if sp == nil then return spawner({}, nil, {}, ctx) end
  return spawner(sp.options, sp.name, sp.messages, ctx)
end
--- process.with_context{key = value}: a spawner whose processes and workflows see these values in ctx.
function process.with_context(values) return with_context(nil, values) end
--- spawner:with_context{key = value}: a spawner with these context values over its own.
function Spawner:with_context(values) return with_context(self, values) end

function Spawner:spawn(id, host, ...) return spawn(self, "plain", id, host, ...) end
function Spawner:spawn_linked(id, host, ...) return spawn(self, "linked", id, host, ...) end
function Spawner:spawn_monitored(id, host, ...) return spawn(self, "monitored", id, host, ...) end
function Spawner:spawn_linked_monitored(id, host, ...) return spawn(self, "linked_monitored", id, host, ...) end

function process.spawn(id, host, ...) return spawn(nil, "plain", id, host, ...) end
function process.spawn_linked(id, host, ...) return spawn(nil, "linked", id, host, ...) end
function process.spawn_monitored(id, host, ...) return spawn(nil, "monitored", id, host, ...) end
function process.spawn_linked_monitored(id, host, ...) return spawn(nil, "linked_monitored", id, host, ...) end

local function exec(self, id, host, ...)
  if type(id) ~= "string" or type(host) ~= "string" then
    return nil, new_error("Invalid", "process.exec(id, host, ...): id and host must be entry IDs", false)
  end
  local args, err = args_json(select("#", ...), ...)
  if not args then return nil, err end
  local ok, opts, name, messages, ctx_json = spec(self)
  if not ok then return nil, opts end
  return api.result(sys("process.exec", id, host, args, opts, ctx_json, name, messages))
end

--- process.exec(id, host, ...): spawn and wait for the result: value, or nil, err.
function process.exec(id, host, ...) return exec(nil, id, host, ...) end
--- process.with_options{...}:exec(id, host, ...): the same, with the spawner's options, name, messages and context.
function Spawner:exec(id, host, ...) return exec(self, id, host, ...) end
Spawner.__index = api.readonly(Spawner, "process.spawner")   -- shared: a read-only view

--- process.upgrade(id, ...): go on as entry `id` (nil: this one) with these arguments, keeping
--- the pid. A workflow continues as new; a process restarts its code with its inbox kept.
--- Does not return, unless it cannot (nil, err).
function process.upgrade(id, ...)
  if id ~= nil and (type(id) ~= "string" or id == "") then
    return nil, new_error("Invalid", "process.upgrade(id, ...): id must be an entry ID or nil", false)
  end
  local args, err = args_json(select("#", ...), ...)
  if not args then return nil, err end
  return api.result(sys("process.upgrade", id, args))
end

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
function process.trap_links(on) return must("process.trap_links", on ~= false) end  -- old spelling
--- process.set_options{trap_links = true}: a linked process's failure is only a pid.link.down
--- event (also implied once this process waits on process.events()). true, or false, err.
function process.set_options(options)
  if type(options) ~= "table" then return false, new_error("Invalid", "options parameter must be a table", false) end
  for k, v in pairs(options) do
    if k ~= "trap_links" then return false, new_error("Invalid", "option " .. tostring(k) .. " is not supported", false) end
    if type(v) ~= "boolean" then return false, new_error("Invalid", "trap_links must be a boolean", false) end
  end
  if options.trap_links ~= nil then must("process.trap_links", options.trap_links) end
  return true
end
--- process.get_options(): {trap_links = bool}
function process.get_options() return { trap_links = must("process.trap_links_get") } end
function process.link(pid) return api.result(sys("process.link", pid)) end
function process.unlink(pid) return api.result(sys("process.unlink", pid)) end
function process.monitor(pid) return api.result(sys("process.monitor", pid)) end
function process.unmonitor(pid) return api.result(sys("process.unmonitor", pid)) end
process.demonitor = process.unmonitor   -- old spelling

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
--- process.listen(topic, {message = true}?): a channel of that topic's payloads (the data
--- itself), or with message = true of its messages (msg:from(), msg:payload():data()).
function process.listen(topic, options)
  if type(topic) ~= "string" then error("process.listen(topic): topic must be a string", 2) end
  if topic == "" or topic:sub(1, 1) == "@" then
    return nil, new_error("Invalid", "process.listen: topic cannot be empty or start with @", false)
  end
  local as_message = false
  if options ~= nil then
    if type(options) ~= "table" then return nil, new_error("Invalid", "process.listen options must be a table", false) end
    for k, v in pairs(options) do
      if k ~= "message" then
        return nil, new_error("Invalid", "unsupported process.listen option " .. tostring(k), false)
      end
      if type(v) ~= "boolean" then
        return nil, new_error("Invalid", "process.listen message option must be a boolean", false)
      end
    end
    as_message = options.message == true
  end
  must("channel.listen", topic)
  if as_message then return api.host_channel("message:" .. topic, message) end
  return api.host_channel("topic:" .. topic, nil)
end
--- process.unlisten(ch): stop listening (the topic's messages go to the inbox again).
function process.unlisten(ch)
  if type(ch) ~= "table" or ch.close == nil then error("process.unlisten(ch): expected a channel from process.listen", 2) end
  return ch:close()
end

process.registry = api.readonly({
  register = function(name, pid) return api.result(sys("registry.register", name, pid)) end,
  lookup = function(name) return api.result(sys("registry.lookup", name)) end,
  unregister = function(name) return api.result(sys("registry.unregister", name)) end,
}, "process.registry")

return process
