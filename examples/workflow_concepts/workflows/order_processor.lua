-- Wippy's Workflows page, "How Workflows Work": the snippet unchanged, as the body of main.
local function main(payment)
local funcs = require("funcs")
local time = require("time")

local result = funcs.call("app.api:charge_card", payment)
time.sleep("24h")
local status = funcs.call("app.api:check_status", result.id)

if status == "failed" then
    funcs.call("app.api:refund", result.id)
end
end

return { main = main }
