-- Wippy's Workflows page, "Waiting for Signals": the snippet unchanged, as the body of main.
local function main(request)
local funcs = require("funcs")

funcs.call("app.approvals:submit", request)

local inbox = process.inbox()
local msg = inbox:receive()  -- blocks until signal arrives

if msg.approved then
    funcs.call("app.orders:fulfill", request.order_id)
else
    funcs.call("app.notifications:send_rejection", request)
end
end

return { main = main }
