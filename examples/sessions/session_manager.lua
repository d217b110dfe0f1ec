-- The session handler (a supervised process.service).
--
-- Registered as "sessions". Every message is {user = ..., ...}; the manager
-- starts one user_session process per user (linked: a session that crashes is
-- dropped and started fresh on the user's next message) and forwards the
-- message to it, with the original sender so the session can answer.
local function main()
  local ok, err = process.registry.register("sessions")
  if not ok then return nil, err end
  logger:info("session handler up", { pid = process.pid() })

  local by_user, by_pid = {}, {}
  local inbox, events = process.inbox(), process.events()

  while true do
    local r = channel.select{ inbox:case_receive(), events:case_receive() }
    if r.channel == events then
      local ev = r.value
      if ev.kind == process.event.CANCEL then
        -- the service is stopping: end every session, then ourselves
        local n = 0
        for _, pid in pairs(by_user) do
          process.cancel(pid, "the session handler stops")
          n = n + 1
        end
        return { sessions = n }
      end
      local user = by_pid[ev.from]
      if user then
        if ev.kind == process.event.LINK_DOWN then
          logger:warn("session crashed; it starts afresh on the next message",
            { user = user, error = ev.result.error:message() })
        end
        by_user[user], by_pid[ev.from] = nil, nil
      end
    else
      local msg = r.value
      local user = msg.user
      if type(user) ~= "string" or user == "" then
        if msg:from() then process.send(msg:from(), "error", { message = "a message needs a user" }) end
      else
        local pid = by_user[user]
        if not pid then
          pid = process.spawn_linked("user_session", "processes", user, process.pid())
          by_user[user], by_pid[pid] = pid, user
        end
        process.send(pid, msg:topic(), { reply_to = msg:from(), data = msg:payload():data() })
      end
    end
  end
end

return { main = main }
