-- The order workflow of examples/orders (copied): charge, wait, check, refund if needed.
local function main(order)
  local charge, err = funcs.call("app:charge_card", order.payment)
  if err then
    return nil, err
  end
  time.sleep(order.wait or "2s")                                  -- durable timer
  local status = funcs.call("app:check_status", charge.id, order.payment.status)
  if status == "failed" then
    local refund = funcs.call("app:refund", charge)
    logger:info("refunded", { id = charge.id })
    return { charged = charge.id, status = status, refunded = refund.refunded }
  end
  return { charged = charge.id, status = status }
end

return { main = main }
