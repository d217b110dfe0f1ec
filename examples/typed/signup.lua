-- One signup, durably: validate it, wait out the cooling-off period (a
-- durable timer), then create the account.
local types = require("types")

type Input = {signup: any, cooling_off?: string}
type Outcome = types.Result<types.Account>

local function main(input: Input): any
    local signup, err = funcs.call("app:validate", input.signup)
    if err then
        return Outcome({ ok = false, error = err:message() })
    end
    time.sleep(input.cooling_off or "1s")
    local email: string @min_len(3) = signup!.email :: string
    local account, err2 = funcs.call("app:create_account", signup, "acct-" .. email)
    if err2 then
        return Outcome({ ok = false, error = err2:message() })
    end
    return Outcome({ ok = true, value = account })
end

return main
