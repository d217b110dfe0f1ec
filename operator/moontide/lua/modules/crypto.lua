-- crypto: Wippy's crypto module: random bytes, strings and UUIDs, HMAC,
-- authenticated encryption (AES-GCM, ChaCha20-Poly1305), JWT (HS256/384/512,
-- RS256), PBKDF2 and constant-time comparison. Keys and data are any bytes.
-- Inside a workflow random values and encryption's nonce come from the
-- workflow's seeded random: a replay makes the same ones. Everything returns
-- value, or nil, err (Invalid for bad input; Internal when decryption or a
-- token's verification fails).
local api = ...
local host, new_error, as_latin1, to_json = api.host, api.new_error, api.as_latin1, api.to_json

local function invalid(message) return nil, new_error("Invalid", message, false) end

local random = {}
--- crypto.random.bytes(n): n random bytes (1 to 1,048,576).
function random.bytes(n) return host("crypto.random.bytes", n) end
--- crypto.random.string(n [, charset]): n bytes picked from charset (default: letters and digits).
function random.string(n, charset)
  if type(charset) ~= "string" then charset = nil end
  return host("crypto.random.string", n, charset and as_latin1(charset))
end
--- crypto.random.uuid(): a version 4 UUID.
function random.uuid() return host("uuid.v4") end

local hmac = {}
for _, algo in ipairs({ "sha256", "sha512" }) do
  --- crypto.hmac.sha256(key, data): hex (the key first, unlike hash.hmac_sha256).
  hmac[algo] = function(key, data)
    if type(key) ~= "string" or type(data) ~= "string" then
      return invalid("crypto.hmac." .. algo .. ": key and data must be strings")
    end
    return host("crypto.hmac", algo, as_latin1(key), as_latin1(data))
  end
end

--- crypto.encrypt.aes(data, key [, aad]): nonce .. ciphertext .. tag;
--- crypto.decrypt.aes(encrypted, key [, aad]): the plaintext (Internal if the key, aad or data are wrong).
local encrypt, decrypt = {}, {}
for way, t in pairs({ encrypt = encrypt, decrypt = decrypt }) do
  for _, cipher in ipairs({ "aes", "chacha20" }) do
    t[cipher] = function(data, key, aad)
      if type(data) ~= "string" or type(key) ~= "string" then
        return invalid("crypto." .. way .. "." .. cipher .. ": data and key must be strings")
      end
      if type(aad) ~= "string" then aad = nil end
      return host("crypto." .. way, cipher, as_latin1(data), as_latin1(key), aad and as_latin1(aad))
    end
  end
end

local jwt = {}
--- crypto.jwt.encode(claims, key [, alg]): a signed token; claims._header (a table) adds header fields.
--- alg: HS256 (default), HS384, HS512 (key: the secret) or RS256 (key: a PEM private key).
function jwt.encode(claims, key, alg)
  if type(claims) ~= "table" then return invalid("crypto.jwt.encode: payload must be a table") end
  if type(key) ~= "string" then return invalid("crypto.jwt.encode: key must be a string") end
  local text, err = to_json(claims, "payload")
  if text == nil then return nil, err end
  return host("crypto.jwt.encode", text, as_latin1(key), alg or "HS256")
end
--- crypto.jwt.verify(token, key [, alg [, require_exp]]): the claims of a token signed with alg (HS256 by
--- default); exp (required unless require_exp is false) and nbf are checked against the host's time.
function jwt.verify(token, key, alg, require_exp)
  if type(token) ~= "string" or type(key) ~= "string" then
    return invalid("crypto.jwt.verify: token and key must be strings")
  end
  return host("crypto.jwt.verify", token, as_latin1(key), alg or "HS256", require_exp ~= false)
end

local crypto = {
  random = api.readonly(random, "crypto.random"), hmac = api.readonly(hmac, "crypto.hmac"),
  encrypt = api.readonly(encrypt, "crypto.encrypt"), decrypt = api.readonly(decrypt, "crypto.decrypt"),
  jwt = api.readonly(jwt, "crypto.jwt"),
}

--- crypto.pbkdf2(password, salt, iterations, key_length [, "sha256" | "sha512"]): the derived key's bytes.
function crypto.pbkdf2(password, salt, iterations, key_length, hash)
  if type(password) ~= "string" or type(salt) ~= "string" then
    return invalid("crypto.pbkdf2: password and salt must be strings")
  end
  if type(hash) ~= "string" then hash = "sha256" end
  return host("crypto.pbkdf2", as_latin1(password), as_latin1(salt), math.tointeger(iterations) or -1,
    math.tointeger(key_length) or -1, hash)
end

--- crypto.constant_time_compare(a, b): whether a == b, in time that does not depend on where they differ.
function crypto.constant_time_compare(a, b)
  if type(a) ~= "string" or type(b) ~= "string" then
    error("crypto.constant_time_compare(a, b): a and b must be strings", 2)
  end
  return host("crypto.compare", as_latin1(a), as_latin1(b)) == true
end

return crypto
