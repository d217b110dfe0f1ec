-- logger: structured logs; inside a workflow, replay does not log twice.
local api = ...
local logger = {}
for _, level in ipairs({ "debug", "info", "warn", "error" }) do
  logger[level] = function(message, fields)
    local f = nil
    if fields ~= nil then f = api.to_json(fields, "fields") end
    api.host("log", level, tostring(message), f)
  end
end
return logger
