-- A simulated carrier.
local function ship(order, reservation)
  if order.fail and order.fail.ship then
    return nil, errors.new({ kind = "Unavailable", message = "carrier refused " .. reservation.reservation })
  end
  return { tracking = "trk_" .. reservation.reservation, address = order.address }
end

local function cancel(shipment)
  return { canceled = shipment.tracking }
end

return { ship = ship, cancel = cancel }
