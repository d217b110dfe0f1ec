-- The saga: every step that succeeds pushes its compensation; a failure
-- runs the compensations in reverse order and fails the workflow.
local function main(order)
  local undo = {}
  local done = {}

  local function step(name, id, ...)
    local result, err = funcs.call(id, ...)
    if err then
      for i = #undo, 1, -1 do
        local comp = undo[i]
        funcs.call(comp.id, comp.arg)
        done[#done + 1] = "undo " .. comp.name
      end
      return nil, errors.new({ kind = err:kind(), message = name .. " failed: " .. err:message(),
                               details = { compensated = done } })
    end
    done[#done + 1] = name
    return result
  end

  local reservation, err = step("reserve", "app.api:reserve_inventory", order)
  if err then return nil, err end
  undo[#undo + 1] = { name = "reserve", id = "app.api:release_inventory", arg = reservation }

  local charge
  charge, err = step("charge", "app.api:charge_card", order.payment)
  if err then return nil, err end
  undo[#undo + 1] = { name = "charge", id = "app.api:refund", arg = charge }

  local shipment
  shipment, err = step("ship", "app.api:ship", order, reservation)
  if err then return nil, err end

  return { reservation = reservation.reservation, charge = charge.id, tracking = shipment.tracking, steps = done }
end

return { main = main }
