-- A simulated inventory service.
local function reserve(order)
  if order.fail and order.fail.reserve then
    return nil, errors.new({ kind = "OutOfStock", message = "no stock for " .. tostring(order.sku) })
  end
  return { reservation = "rsv_" .. tostring(order.sku), sku = order.sku, qty = order.qty or 1 }
end

local function release(reservation)
  logger:info("released", reservation)
  return { released = reservation.reservation }
end

return { reserve = reserve, release = release }
