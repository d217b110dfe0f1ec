-- uuid: v4 (random) and v7 (time-ordered); inside a workflow both are recorded
-- by coming from the workflow's seeded random and time.
local api = ...
local uuid = {}
function uuid.v4() return api.must("uuid.v4") end
function uuid.v7() return api.must("uuid.v7") end
return uuid
