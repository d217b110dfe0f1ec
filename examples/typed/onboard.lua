-- Signs up a batch of users, each in its own signup workflow (monitored:
-- its result arrives as an exit event), and tallies the accounts by plan.
local types = require("types")

type Event = process.Event
type Batch = {signups: {any} @min_len(1), cooling_off?: string}
type Report = {accounts: {[string]: integer}, rejected: {string}}

local function main(batch: any): any
    local b = Batch(batch)
    local waiting: {[string]: integer} = {}
    local count = 0
    for i, s in ipairs(b.signups) do
        local pid, err = process.spawn_monitored("app:signup", "app:temporal_worker",
            { signup = s, cooling_off = b.cooling_off })
        if err then error(err) end
        waiting[pid!] = i
        count = count + 1
    end
    local report: Report = { accounts = {}, rejected = {} }
    local events = process.events()
    while count > 0 do
        local ev = Event(events:receive())
        if waiting[ev.from] and ev.kind == process.event.EXIT then
            waiting[ev.from], count = nil, count - 1
            local result = ev.result!.value
            if result.ok then
                local account = types.Account(result.value)
                report.accounts[account.plan] = (report.accounts[account.plan] or 0) + 1
            else
                report.rejected[#report.rejected + 1] = result.error
            end
        end
    end
    table.sort(report.rejected)
    return report
end

return main
