-- Simulated services for the approval example.
local function notify(message)
  logger:info("notify " .. tostring(message.to) .. ": " .. message.text)
  return { sent = true }
end

local function fulfil(request)
  logger:info("fulfilling " .. request.id)
  return { order = "ord_" .. request.id }
end

return { notify = notify, fulfil = fulfil }
