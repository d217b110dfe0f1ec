-- hash: digests of any bytes, text or binary (Wippy's hash module): md5, sha1,
-- sha256, sha512 and their HMACs as hex (raw bytes with `raw = true`), and the
-- non-cryptographic FNV-1 hashes as numbers. A non-string is nil, Invalid.
local api = ...
local new_error, as_latin1, host = api.new_error, api.as_latin1, api.host
local hash = {}

local function invalid(name, what)
  return nil, new_error("Invalid", "hash." .. name .. ": " .. what .. " must be a string", false)
end

for _, algo in ipairs({ "md5", "sha1", "sha256", "sha512" }) do
  --- hash.sha256(data, raw): hex digest, or the raw bytes when raw is true.
  hash[algo] = function(data, raw)
    if type(data) ~= "string" then return invalid(algo, "data") end
    return host("hash", algo, as_latin1(data), raw and true or false)
  end
  --- hash.hmac_sha256(data, secret, raw): the message first, then the key.
  local name = "hmac_" .. algo
  hash[name] = function(data, secret, raw)
    if type(data) ~= "string" then return invalid(name, "data") end
    if type(secret) ~= "string" then return invalid(name, "secret") end
    return host("hash.hmac", algo, as_latin1(secret), as_latin1(data), raw and true or false)
  end
end

for _, bits in ipairs({ 32, 64 }) do
  --- hash.fnv32(data), hash.fnv64(data): FNV-1 as a number (an fnv64 past 2^63 is a float, as in Wippy).
  local name = "fnv" .. bits
  hash[name] = function(data)
    if type(data) ~= "string" then return invalid(name, "data") end
    return host("hash.fnv", bits, as_latin1(data))
  end
end

return hash
