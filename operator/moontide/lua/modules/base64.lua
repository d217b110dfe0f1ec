-- base64: standard alphabet with padding.
local api = ...
local base64 = {}
function base64.encode(s) return api.host("base64.encode", s) end
function base64.decode(s) return api.host("base64.decode", s) end
return base64
