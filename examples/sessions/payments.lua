-- A simulated payment provider (copied from examples/orders).
local function charge(payment)
  if type(payment) ~= "table" or type(payment.amount) ~= "number" then
    return nil, errors.new({ kind = errors.INVALID, message = "charge_card: payment.amount must be a number" })
  end
  if payment.fail then
    return nil, errors.new({ kind = "Declined", message = "card declined for " .. payment.amount })
  end
  local id = "ch_" .. uuid.v4()
  logger:info("charged", { id = id, amount = payment.amount })
  return { id = id, amount = payment.amount, status = payment.status or "settled" }
end

local function status(charge_id, wanted)
  return wanted or "settled"
end

local function refund(charge)
  logger:info("refunded", { id = charge.id })
  return { refunded = charge.id, amount = charge.amount }
end

return { charge = charge, status = status, refund = refund }
