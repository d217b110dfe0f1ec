-- The example's types. `type` declares a local holding the type as a value,
-- so a library hands its types to its importers like any other field.

type Email = string @pattern("^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$")

type Plan = "free" | "pro" | "team"

type Signup = {
    email: Email,
    name: string @min_len(1) @max_len(80),
    age: integer @min(13) @max(150),
    plan: Plan,
    referrer?: string,
    tags?: {string @min_len(1)} @max_len(5),
}

type Account = {
    id: string,
    email: Email,
    plan: Plan,
    seats: integer @min(1),
}

-- What a signup workflow returns: tagged by `ok`.
type Result<T> = {ok: true, value: T} | {ok: false, error: string}

local M = {}
M.Email, M.Plan, M.Signup, M.Account, M.Result = Email, Plan, Signup, Account, Result

function M.seats(plan: Plan): integer
    if plan == "team" then return 5 end
    return 1
end

return M
