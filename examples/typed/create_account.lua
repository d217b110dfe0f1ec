-- The account for a valid signup; the Account cast checks what is returned.
local types = require("types")

local function main(signup: {email: string, plan: string}, id: string): any
    local plan = signup.plan as types.Plan
    local account: types.Account = {
        id = id,
        email = signup.email,
        plan = plan,
        seats = types.seats(plan),
    }
    return types.Account(account)
end

return main
