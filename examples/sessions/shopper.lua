-- A scripted client for the session handler: two users fill their carts and
-- check out; it waits for both orders and returns what each one charged.
local SCRIPT = {
  { "add_item", { user = "alice", sku = "book", qty = 2, price = 12 } },
  { "add_item", { user = "bob", sku = "lamp", qty = 1, price = 40 } },
  { "add_item", { user = "alice", sku = "pen", qty = 3, price = 2 } },
  { "remove_item", { user = "bob", sku = "nothing" } },
  { "checkout", { user = "alice" } },
  { "checkout", { user = "bob" } },
}

local function main(script)
  script = script or SCRIPT
  local checkouts = 0
  for _, step in ipairs(script) do
    local ok, err = process.send("sessions", step[1], step[2])
    if not ok then return nil, err end
    if step[1] == "checkout" then checkouts = checkouts + 1 end
  end

  local done = process.listen("order_done")
  local deadline = time.after("60s")
  local orders = {}
  while checkouts > 0 do
    local r = channel.select{ done:case_receive(), deadline:case_receive() }
    if r.channel == deadline then
      return nil, errors.new{ kind = errors.TIMEOUT, message = "no order finished within 60s" }
    end
    local o = r.value
    orders[o.user] = { order = o.order, amount = o.amount, charged = o.result and o.result.charged ~= nil,
                       status = o.result and o.result.status, error = o.error }
    checkouts = checkouts - 1
  end
  return orders
end

return { main = main }
