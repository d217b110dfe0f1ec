-- A user session service: counts the items each user adds until it is told to stop.
-- A process.lua with no modules list, as on the page: `process` is one of Wippy's
-- ambient globals, there without `modules` or `require`.
local function main()
  process.registry.register("sessions")
  local carts = {}
  local inbox = process.inbox()
  while true do
    local msg = inbox:receive()
    local data = msg:payload():data()
    if msg:topic() == "add" then
      carts[data.user] = (carts[data.user] or 0) + 1
    elseif msg:topic() == "stop" then
      return { carts = carts }
    end
  end
end

return { main = main }
