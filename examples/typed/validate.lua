-- A signup as the Signup type wants it, or an Invalid error naming the field.
local types = require("types")

local function main(input: any): (any?, error?)
    local signup, err = types.Signup:is(input)
    if signup == nil then
        return nil, errors.new({ kind = errors.INVALID, message = err!:message(), details = err!:details() })
    end
    signup.email = string(signup.email):lower()
    return signup
end

return main
