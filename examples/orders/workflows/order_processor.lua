local function main(order)
  local charge, err = funcs.call("app.api:charge_card", order.payment)
  if err then
    return nil, err
  end
  time.sleep(order.wait or "2s")                                  -- durable timer
  local status = funcs.call("app.api:check_status", charge.id, order.payment.status)
  if status == "failed" then
    local refund = funcs.call("app.api:refund", charge)
    logger:info("refunded", { id = charge.id })
    return { charged = charge.id, status = status, refunded = refund.refunded }
  end
  return { charged = charge.id, status = status }
end

return { main = main }
