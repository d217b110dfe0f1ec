-- base64: standard alphabet with padding; works on any bytes, text or binary.
local api = ...
local base64 = {}
function base64.encode(s) return api.host("base64.encode", api.as_latin1(s)) end
function base64.decode(s) return api.host("base64.decode", s) end
return base64
