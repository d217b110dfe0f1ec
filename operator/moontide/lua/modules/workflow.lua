-- workflow: what a running workflow knows about itself, safe code changes,
-- and continue-as-new for long-running workflows.
local api = ...
local workflow = {}

--- workflow.info(): {workflow_id, run_id, workflow_type, task_queue, namespace,
--- attempt, history_length, continue_as_new_suggested, pid, parent, code,
--- search_attributes}
function workflow.info() return api.must("workflow.info") end

--- workflow.upsert_search_attributes{Name = value, ...}: set search attributes
--- the temporal.client declares; true, or nil, err (Invalid naming the attribute).
function workflow.upsert_search_attributes(values)
  local data, err = api.to_json(values, "search attributes")
  if not data then return nil, err end
  return api.host("workflow.upsert_search_attributes", data)
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
