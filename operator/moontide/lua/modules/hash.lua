-- hash: hex digests (md5, sha1, sha256, sha512) and HMAC-SHA256.
local api = ...
local hash = {}
for _, name in ipairs({ "md5", "sha1", "sha256", "sha512" }) do
  hash[name] = function(s) return api.host("hash", name, s) end
end
function hash.hmac_sha256(key, s) return api.host("hash.hmac", "sha256", key, s) end
return hash
