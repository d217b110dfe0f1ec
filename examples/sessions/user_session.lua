-- One user's session: the cart, and the orders started from it.
--
-- Topics: add_item {sku, qty, price}, remove_item {sku}, get_cart, checkout.
-- Checkout starts the order_processor workflow on the Temporal worker
-- (process.spawn with a temporal.worker host), monitored: when the order
-- finishes, its result arrives as a pid.exit event and goes to whoever
-- checked out ("order_done").
local function cart_view(cart)
  local items, total = {}, 0
  for sku, item in pairs(cart) do
    items[#items + 1] = { sku = sku, qty = item.qty, price = item.price }
    total = total + item.qty * item.price
  end
  return { items = items, total = total }
end

local function main(user, manager)
  local cart = {}             -- sku -> {qty, price}
  local orders = {}           -- order workflow pid -> {reply_to, amount}
  local inbox, events = process.inbox(), process.events()

  while true do
    local r = channel.select{ inbox:case_receive(), events:case_receive() }
    if r.channel == events then
      local ev = r.value
      if ev.kind == process.event.CANCEL or ev.from == manager then
        return { user = user, open_orders = next(orders) ~= nil }
      end
      local order = orders[ev.from]
      if order then
        orders[ev.from] = nil
        local err = ev.result.error
        logger:info("order finished", { user = user, order = ev.from, ok = err == nil })
        process.send(order.reply_to, "order_done", {
          user = user, order = ev.from, amount = order.amount, result = ev.result.value, error = err and err:message(),
        })
      end
    else
      local msg = r.value
      local topic, req, reply_to = msg:topic(), msg.data or {}, msg.reply_to
      local function reply(t, payload) if reply_to then process.send(reply_to, t, payload) end end

      if topic == "add_item" then
        if type(req.sku) ~= "string" or type(req.price) ~= "number" then
          reply("error", { message = "add_item needs sku (string) and price (number)" })
        else
          local item = cart[req.sku] or { qty = 0, price = req.price }
          item.qty = item.qty + (req.qty or 1)
          cart[req.sku] = item
          reply("cart", cart_view(cart))
        end
      elseif topic == "remove_item" then
        cart[req.sku or ""] = nil
        reply("cart", cart_view(cart))
      elseif topic == "get_cart" then
        reply("cart", cart_view(cart))
      elseif topic == "checkout" then
        local view = cart_view(cart)
        if #view.items == 0 then
          reply("error", { message = "the cart is empty" })
        else
          local order, err = process.spawn_monitored("order_processor", "temporal_worker", {
            user = user, items = view.items, payment = { amount = view.total }, wait = req.wait or "1s",
          })
          if not order then
            reply("error", { message = "checkout failed: " .. err:message() })
          else
            logger:info("checkout", { user = user, order = order, amount = view.total })
            orders[order] = { reply_to = reply_to or manager, amount = view.total }
            cart = {}
            reply("checkout_started", { user = user, order = order, amount = view.total })
          end
        end
      else
        reply("error", { message = "unknown topic " .. topic })
      end
    end
  end
end

return { main = main }
