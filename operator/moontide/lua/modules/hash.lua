-- hash: hex digests (md5, sha1, sha256, sha512) and HMAC-SHA256 of any bytes.
local api = ...
local hash = {}
for _, name in ipairs({ "md5", "sha1", "sha256", "sha512" }) do
  hash[name] = function(s) return api.host("hash", name, api.as_latin1(s)) end
end
function hash.hmac_sha256(key, s) return api.host("hash.hmac", "sha256", api.as_latin1(key), api.as_latin1(s)) end
return hash
