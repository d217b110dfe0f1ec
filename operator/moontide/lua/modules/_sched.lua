-- coroutine.spawn and the scheduler that runs what it spawns, loaded by the
-- prelude with the internals it needs (user code never sees this table).
--
-- An execution starts as one coroutine, stepped by the host. Its first
-- coroutine.spawn turns it into tasks: the main function and the spawned
-- coroutines, run one at a time by a scheduler coroutine inside the step, in
-- a fixed order (ready tasks first in, first out; waiters in spawn order), so
-- the same answers from the host make the same commands on replay.
--
-- A task stops when it waits. On a channel.new channel it parks (the channel
-- module keeps it in the channel's queue and wakes it); anything else is a
-- wait on the host. When every task waits, the scheduler asks the host once:
-- the one waiter's request itself, or, with several, one channel.select over
-- all of them, each request that is not a channel wait started first as an
-- operation of its own ("op.start" -> a channel "op:<n>" that is ready when it
-- ends). The answer goes to the task that waits for it, and the tasks run on.
local P = ...
local co_create, co_resume, co_yield, co_status = P.co_create, P.co_resume, P.co_yield, P.co_status
local arm, SYS, pack, unpack, error, type, ipairs = P.arm, P.SYS, P.pack, P.unpack, P.error, P.type, P.ipairs

local PARK = {}      -- a task's yield: "wake me through the channel module"
local FIRED = {}     -- first value a parked task is woken with (by a channel partner)
local DEADLOCK = {}  -- the main task is woken with it when nothing can ever wake anyone
local PARKED = {}    -- a task's wait while parked

local M, api = {}, { FIRED = FIRED, DEADLOCK = DEADLOCK }

local function ready(S, t, values)
  t.wait, t.resume = nil, values
  local n = S.rtail + 1
  S.rtail, S.ready[n] = n, t
end

--- The task running now, or nil while the execution has spawned nothing.
local function running()
  local thread = P.thread()
  local S = thread and thread.sched
  return S and S.running
end

--- coroutine.spawn(fn): run fn as a task of this execution; it starts once the running task waits.
function M.spawn(fn)
  if type(fn) ~= "function" then error("coroutine.spawn: expected a function, got " .. type(fn), 2) end
  local thread = P.thread()
  if thread == nil then error("coroutine.spawn: no execution is running here", 2) end
  local S = thread.sched
  if S == nil then
    -- the main coroutine is the one running now
    local main = { co = thread.co, main = true }
    S = { tasks = { main }, ntasks = 1, ready = {}, rhead = 1, rtail = 0, running = main }
    thread.sched = S
  end
  local t = { co = arm(co_create(fn)) }
  S.ntasks = S.ntasks + 1
  S.tasks[S.ntasks] = t
  ready(S, t, pack())
end

--- What a task's resume returned: nil to go on, or how the execution ends.
local function settle(S, t, r)
  if not r[1] then return "failed", t.co, r[2] end
  if co_status(t.co) == "dead" then
    if t.main then return "done", r end
    -- a spawned task ended: what it returned goes nowhere
    local tasks, n = S.tasks, 0
    for i = 1, S.ntasks do
      if tasks[i] ~= t then n = n + 1; tasks[n] = tasks[i] end
    end
    for i = n + 1, S.ntasks do tasks[i] = nil end
    S.ntasks = n
    return nil
  end
  if r[2] ~= SYS then return "failed", t.co, "coroutine.yield outside a coroutine" end
  local op = r[3]
  if op == PARK then
    t.wait = PARKED
  elseif op == "channel.receive" then
    t.wait = { receive = r[4] }
  elseif op == "channel.select" and t.select_ids then
    t.wait = { select = t.select_ids, json = r[4] }
  else
    t.wait = { op = r }   -- (true, SYS, op, args...)
  end
  t.select_ids = nil
  return nil
end

--- Resume ready tasks until none is: nil, or how the execution ends.
local function run_ready(S)
  while S.rhead <= S.rtail do
    local h = S.rhead
    local t = S.ready[h]
    S.ready[h], S.rhead = nil, h + 1
    P.spent()   -- past the budget nothing more runs
    local values = t.resume
    t.resume = nil
    S.running = t
    P.set_main(t.co)
    local what, co, err = settle(S, t, pack(co_resume(t.co, unpack(values, 1, values.n))))
    S.running, S.last = nil, t
    if what then return what, co, err end
  end
end

local function add_ids(ids, n, w)
  if w.started then
    n = n + 1; ids[n] = w.started
  elseif w.receive then
    n = n + 1; ids[n] = w.receive
  else
    for _, id in ipairs(w.select) do n = n + 1; ids[n] = id end
  end
  return n
end

local function waits_on(w, id)
  if w.started then return w.started == id end
  if w.receive then return w.receive == id end
  for _, c in ipairs(w.select) do if c == id then return true end end
  return false
end

--- Ask the host for what one waiter waits for, itself.
local function ask_one(S, t)
  local w = t.wait
  if w.receive then return ready(S, t, pack(co_yield(SYS, "channel.receive", w.receive))) end
  if w.select then return ready(S, t, pack(co_yield(SYS, "channel.select", w.json))) end
  if w.op then return ready(S, t, pack(co_yield(unpack(w.op, 2, w.op.n)))) end
  -- its started operation
  local answer = pack(co_yield(SYS, "channel.select", P.to_json({ w.started }, "cases")))
  if answer[1] then return ready(S, t, pack(unpack(answer, 3, answer.n))) end
  P.call_host("op.cancel", w.started)
  ready(S, t, answer)
end

--- Ask the host for what several waiters wait for, in one select; the first ready goes to its waiter.
local function ask_all(S, waiters, n)
  local ids, nids = {}, 0
  for i = 1, n do
    local t = waiters[i]
    local w = t.wait
    if w.op then
      local cid, err = P.call_host("op.start", unpack(w.op, 3, w.op.n))
      if cid == nil then
        ready(S, t, pack(false, err))
        return
      end
      t.wait = { started = cid }
    end
    nids = add_ids(ids, nids, t.wait)
  end
  P.mark_array(ids)
  local answer = pack(co_yield(SYS, "channel.select", P.to_json(ids, "cases")))
  if not answer[1] then
    -- the wait itself failed (a cancel request): its first waiter gets the error, once
    local t = waiters[1]
    if t.wait.started then P.call_host("op.cancel", t.wait.started) end
    return ready(S, t, answer)
  end
  local id = answer[2]
  for i = 1, n do
    local t = waiters[i]
    local w = t.wait
    if waits_on(w, id) then
      if w.started then return ready(S, t, pack(unpack(answer, 3, answer.n))) end
      if w.receive then
        if answer[4] ~= nil then return ready(S, t, pack(false, answer[4])) end
        return ready(S, t, pack(true, answer[3]))
      end
      return ready(S, t, answer)
    end
  end
  error("scheduler: the host answered for " .. P.tostring(id) .. ", which no task waits for")
end

--- How the execution ends: ("done", values...) or ("failed", coroutine, error).
local function ending(what, co, err)
  if what == "done" then return "done", unpack(co, 2, co.n) end
  return what, co, err
end

--- The scheduler coroutine: runs tasks, asks the host, routes its answers.
local function loop(S, first)
  local what, co, err = settle(S, S.tasks[1], first)
  if what then return ending(what, co, err) end
  -- function code answers one request at a time: there its waiters take turns
  S.concurrent = P.call_host("sched.concurrent") == true
  while true do
    what, co, err = run_ready(S)
    if what then return ending(what, co, err) end
    local waiters, n = {}, 0
    for i = 1, S.ntasks do
      local t = S.tasks[i]
      if t.wait ~= PARKED and t.wait ~= nil then n = n + 1; waiters[n] = t end
    end
    if n == 0 then
      -- every task is parked on channels and nothing outside can wake one: the
      -- main task's channel operation fails (it always waits: it has not returned)
      ready(S, S.tasks[1], pack(DEADLOCK))
    elseif n == 1 or not S.concurrent then
      ask_one(S, waiters[1])
    else
      ask_all(S, waiters, n)
    end
  end
end

--- The first step's end once the main coroutine spawned: the scheduler takes over.
--- Returns the scheduler coroutine and what resuming it returned.
function M.enter(thread, ...)
  local S = thread.sched
  S.co = arm(co_create(loop))
  S.running = nil
  return S.co, co_resume(S.co, S, pack(...))
end

--- A later step: the host's answer to what the scheduler asked.
function M.step(thread, ...)
  local S = thread.sched
  arm(S.co)
  return S.co, co_resume(S.co, ...)
end

-- For the channel module ----------------------------------------------------

--- The running task (to queue on a channel), or nil: nothing else runs, so waiting on a channel.new channel can never end.
api.current = running

--- Park the running task until the channel module wakes it; returns what it was woken with.
function api.park()
  return co_yield(SYS, PARK)
end

--- Wake a parked task (or one in a select that also waits on the host) with these values.
function api.wake(t, ...)
  local S = P.thread().sched
  ready(S, t, pack(...))
end

--- channel.select on host channels; `ids` are the cases of `ids_json`, for the scheduler.
function api.select(ids_json, ids)
  local t = running()
  if t then t.select_ids = ids end
  return co_yield(SYS, "channel.select", ids_json)
end

M.api = api
return M
