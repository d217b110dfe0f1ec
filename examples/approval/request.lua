-- A multi-step approval: ask, wait for a decision with a deadline, act on it.
--   moontide send <pid> approval '{"approved": true, "by": "ana"}'
local function main(request)
  funcs.call("notify", { to = request.approver, text = "please approve " .. request.id })

  local decisions = process.listen("approval")
  local deadline = time.after(request.timeout or "168h")          -- at most 7 days
  local got = channel.select({ decisions:case_receive(), deadline:case_receive() })

  if got.channel == deadline then
    funcs.call("notify", { to = request.requester, text = request.id .. " expired without a decision" })
    return { id = request.id, status = "expired" }
  end
  local decision = got.value
  if decision.approved then
    local order = funcs.call("fulfil", request)
    return { id = request.id, status = "approved", by = decision.by, order = order.order }
  end
  funcs.call("notify", { to = request.requester, text = request.id .. " rejected: " .. tostring(decision.reason) })
  return { id = request.id, status = "rejected", by = decision.by, reason = decision.reason }
end

return { main = main }
