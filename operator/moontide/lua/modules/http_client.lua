-- http_client: Wippy's HTTP client, for functions and processes (never for
-- workflows: their results would not be recorded; call a function instead).
-- http_client.get(url, options) ... return a response table {status_code=,
-- body=, body_size=, headers=, cookies=, url=, stream=} or nil, err (Invalid
-- for a bad URL or option, Internal and retryable for a network failure or a
-- timeout). Redirects are followed (up to 10), as in Wippy.
local api = ...
local new_error, as_latin1, to_json = api.new_error, api.as_latin1, api.to_json
local http_client = {}

-- A stream over a buffered body (stream = true): read(n) gives the next n
-- bytes (all that is left without n), nil at the end.
local Stream = {}
Stream.__name = "http_client.stream"
Stream.__metatable = false
function Stream:read(n)
  local data, pos = rawget(self, "_data"), rawget(self, "_pos")
  if data == nil or pos > #data then return nil end
  local last = (type(n) == "number" and n > 0) and pos + math.tointeger(n // 1) - 1 or #data
  rawset(self, "_pos", last + 1)
  return data:sub(pos, last)
end
function Stream:close()
  rawset(self, "_data", nil)
  return true
end
Stream.__index = api.readonly(Stream, "http_client.stream")

local function response(raw)
  local data = raw.stream_data
  if data ~= nil then
    raw.stream_data = nil
    raw.stream = setmetatable({ _data = data, _pos = 1 }, Stream)
  end
  return raw
end

-- Options as JSON text; the body and files' contents are any bytes (Latin-1 on the way).
local function options_json(options)
  if options == nil then return nil end
  if type(options) ~= "table" then return nil, new_error("Invalid", "http_client: options must be a table", false) end
  local copy = {}
  for k, v in pairs(options) do copy[k] = v end
  if type(copy.body) == "string" then copy.body = as_latin1(copy.body) end
  if type(copy.files) == "table" then
    local files = {}
    for i, f in ipairs(copy.files) do
      local c = {}
      if type(f) == "table" then for k, v in pairs(f) do c[k] = v end end
      if type(c.content) == "string" then c.content = as_latin1(c.content) end
      files[i] = c
    end
    copy.files = files
  end
  return to_json(copy, "options")
end

--- http_client.request(method, url [, options]): response, or nil, err.
function http_client.request(method, url, options)
  if type(method) ~= "string" or method == "" then
    return nil, new_error("Invalid", "http_client.request: method required", false)
  end
  if type(url) ~= "string" or url == "" then return nil, new_error("Invalid", "http_client: URL required", false) end
  local opts, err = options_json(options)
  if err ~= nil then return nil, err end
  local raw
  if api.host("http.blocking") then
    -- a process host runs many processes on one loop: this one waits, the others go on
    raw, err = api.result(api.sys("http.client.request", method:upper(), url, opts))
  else
    raw, err = api.host("http.client.request", method:upper(), url, opts)
  end
  if raw == nil then return nil, err end
  return response(raw)
end

for _, method in ipairs({ "get", "post", "put", "patch", "delete", "head" }) do
  http_client[method] = function(url, options) return http_client.request(method, url, options) end
end

--- http_client.request_batch{ {method, url [, options]}, ... }: responses, errors (arrays by position;
--- errors is nil when every request succeeded). The requests run at once.
function http_client.request_batch(requests)
  if type(requests) ~= "table" or #requests == 0 then
    return nil, new_error("Invalid", "http_client.request_batch: requests must be a non-empty array", false)
  end
  local list = {}
  for i, r in ipairs(requests) do
    if type(r) ~= "table" or type(r[1]) ~= "string" or type(r[2]) ~= "string" then
      return nil, new_error("Invalid", "http_client.request_batch: request " .. i .. " must be {method, url, options?}",
        false)
    end
    local opts, err = options_json(r[3])
    if err ~= nil then return nil, err end
    list[i] = { method = r[1]:upper(), url = r[2], options = opts }
  end
  local text = to_json(list, "requests")
  local out, err
  if api.host("http.blocking") then
    out, err = api.result(api.sys("http.client.batch", text))
  else
    out, err = api.host("http.client.batch", text)
  end
  if out == nil then return nil, err end
  local responses, errs = {}, nil
  for i = 1, #requests do
    local r = out[i]
    if r.ok then
      responses[i] = response(r.response)
    else
      errs = errs or {}
      errs[i] = new_error(r.error.kind, r.error.message, r.error.retryable)
    end
  end
  return responses, errs
end

--- http_client.encode_uri(s): s for a URL's query ("hello world" -> "hello+world", as Go's url.QueryEscape).
function http_client.encode_uri(s)
  if type(s) ~= "string" then error("http_client.encode_uri(s): s must be a string", 2) end
  return (s:gsub("[^%w%-_%.~ ]", function(c) return string.format("%%%02X", c:byte()) end):gsub(" ", "+"))
end

--- http_client.decode_uri(s): the reverse; nil, err (Invalid) for a bad % escape.
function http_client.decode_uri(s)
  if type(s) ~= "string" then error("http_client.decode_uri(s): s must be a string", 2) end
  local bad = s:find("%%%X") or s:find("%%%x%X") or s:find("%%%x?$")
  if bad then
    return nil, new_error("Invalid", "http_client.decode_uri: invalid URL escape " .. string.format("%q", s:sub(bad, bad + 2)),
      false)
  end
  return (s:gsub("%+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

return http_client
