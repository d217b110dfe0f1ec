-- workflow: what a running workflow knows about itself, safe code changes,
-- and continue-as-new for long-running workflows.
local api = ...
local workflow = {}

--- workflow.info(): {workflow_id, run_id, workflow_type, task_queue, namespace,
--- attempt, history_length, history_size, continue_as_new_suggested, pid, parent, code,
--- search_attributes}
function workflow.info() return api.must("workflow.info") end

--- workflow.upsert_search_attributes{Name = value, ...}: set search attributes
--- the temporal.client declares; true, or nil, err (Invalid naming the attribute).
function workflow.upsert_search_attributes(values)
  local data, err = api.to_json(values, "search attributes")
  if not data then return nil, err end
  return api.host("workflow.upsert_search_attributes", data)
end

--- workflow.exec(id, ...): run workflow `id` as a child on its worker (or this one's) and wait:
--- its result, or nil, err.
function workflow.exec(id, ...)
  if type(id) ~= "string" or id == "" then
    return nil, api.new_error("Invalid", "workflow.exec(id, ...): id must be a workflow entry ID", false)
  end
  local args, err = api.args_json(select("#", ...), ...)
  if not args then return nil, err end
  return api.result(api.sys("process.exec", id, "", args, nil))
end

--- workflow.history_length(), workflow.history_size(): events and bytes of this run's history so far.
function workflow.history_length() return api.must("workflow.history")[1] end
function workflow.history_size() return api.must("workflow.history")[2] end

--- workflow.attrs{search = {Name = value}, memo = {key = value}}: upsert search attributes (those
--- the temporal.client declares) and memo fields; true, or nil, err.
function workflow.attrs(attrs)
  if type(attrs) ~= "table" then return nil, api.new_error("Invalid", "workflow.attrs: expected a table", false) end
  for k in pairs(attrs) do
    if k ~= "search" and k ~= "memo" then
      return nil, api.new_error("Invalid", "workflow.attrs: unknown field " .. tostring(k) .. " (search, memo)", false)
    end
  end
  local search, memo, err
  if attrs.search ~= nil then
    if type(attrs.search) ~= "table" then return nil, api.new_error("Invalid", "search must be a table", false) end
    search, err = api.to_json(attrs.search, "search")
    if not search then return nil, err end
  end
  if attrs.memo ~= nil then
    if type(attrs.memo) ~= "table" then return nil, api.new_error("Invalid", "memo must be a table", false) end
    memo, err = api.to_json(attrs.memo, "memo")
    if not memo then return nil, err end
  end
  if search == nil and memo == nil then
    return nil, api.new_error("Invalid", "workflow.attrs: at least one of search or memo required", false)
  end
  return api.host("workflow.attrs", search, memo)
end

--- workflow.version(change_id, min, max): max in executions that start after
--- the change, min in those that started before it (Temporal's patching).
function workflow.version(change_id, min_version, max_version)
  if type(change_id) ~= "string" then error("workflow.version: change_id must be a string", 2) end
  return api.must("workflow.version", change_id, min_version, max_version)
end

--- workflow.continue_as_new(...): end this run and start a fresh one (new
--- history) with these arguments. Does not return.
function workflow.continue_as_new(...)
  local args, err = api.args_json(select("#", ...), ...)
  if not args then error(err, 2) end
  local _, err = api.result(api.sys("workflow.continue_as_new", args))
  error(err or "continue_as_new did not end the run", 2)
end

return workflow
