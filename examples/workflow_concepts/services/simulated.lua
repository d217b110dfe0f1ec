-- Simulated services for the page's snippets. Each logs what it does; the saga's steps answer
-- {error = "..."} when the input asks them to fail, which is how the page's saga reads them.

-- app.api: charge_card, check_status, refund (How Workflows Work)
local function charge_card(payment)
  logger.info("charged", { amount = payment.amount })
  return { id = "ch_" .. tostring(payment.card or "card"), amount = payment.amount }
end

local function check_status(charge_id)
  logger.info("checked " .. charge_id)
  return charge_id:find("declined") and "failed" or "settled"
end

--- An undo step: logs and answers {<verb> = id} (refund of a charge or a payment, release of a reservation).
local function undo(verb)
  return function(id)
    logger.info(verb .. " " .. id)
    return { [verb] = id }
  end
end
local refund, release = undo("refunded"), undo("released")

-- app.inventory: reserve, release; app.payments: charge, refund; app.shipping: create (Saga Pattern)
local function reserve(items)
  for _, item in ipairs(items) do
    if item == "out-of-stock" then return { error = "no stock for " .. item } end
  end
  return { id = "rsv_" .. #items }
end

local function charge(amount)
  if amount > 1000 then return { error = "card declined for " .. amount } end
  return { id = "pay_" .. amount }
end

local function create_shipment(order)
  if not order.address then return { error = "no shipping address for order " .. order.id } end
  return { id = "shp_" .. order.id, tracking = "trk_" .. order.id }
end

-- app.approvals: submit; app.orders: fulfill; app.notifications: send_rejection (Waiting for Signals)
local function submit(request)
  logger.info("approval requested for " .. request.id)
  return { submitted = request.id }
end

local function fulfill(order_id)
  logger.info("fulfilling " .. order_id)
  return { fulfilled = order_id }
end

local function send_rejection(request)
  logger.info("rejected " .. request.id)
  return { notified = request.id }
end

return {
  charge_card = charge_card, check_status = check_status,
  reserve = reserve, release = release, charge = charge, refund = refund, create_shipment = create_shipment,
  submit = submit, fulfill = fulfill, send_rejection = send_rejection,
}
