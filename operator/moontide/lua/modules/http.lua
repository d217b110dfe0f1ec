-- http: an HTTP client for functions and processes (never for workflows:
-- their results would not be recorded). Returns a response table
-- {status_code=, headers=, body=} or nil, err (kind Unavailable/Timeout/Invalid).
local api = ...
local http = {}

--- http.request(method, url, {headers=, body=, json=, query=, timeout=}): response, or nil, err.
function http.request(method, url, options)
  if type(method) ~= "string" or type(url) ~= "string" then
    return nil, api.new_error("Invalid", "http.request(method, url, options): method and url must be strings", false)
  end
  local opts = nil
  if options ~= nil then
    local err
    opts, err = api.to_json(options, "options")
    if not opts then return nil, err end
  end
  if api.host("http.blocking") then
    -- a process host runs many processes on one loop: this one waits, the others go on
    return api.result(api.sys("http.request", method:upper(), url, opts))
  end
  -- a function has a thread of its own: the host answers at once
  local response, err = api.host("http.request", method:upper(), url, opts)
  if response == nil then return nil, err end
  return response
end

for _, method in ipairs({ "get", "post", "put", "patch", "delete", "head" }) do
  http[method] = function(url, options) return http.request(method, url, options) end
end

return http
