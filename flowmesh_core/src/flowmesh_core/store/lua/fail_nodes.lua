-- fail_nodes: fail a node, every node downstream of it, and its workflow, in one step.
-- Nodes already final are left alone; so is a workflow already final.
--
-- ARGV: 1 workflow, 2 now, 3 the failed node, 4 its error, 5.. the nodes downstream of it
-- Returns 1 if this call failed the workflow, 0 if it was final already.

local workflow, now, failed, err = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local nodes = key('workflow_nodes', workflow)
local function fail_one(node, message)
  local nk = key('node', workflow, node)
  if final(redis.call('HGET', nk, 'state')) then
    return
  end
  redis.call('HSET', nk, 'state', NODE.FAILED, 'error', message, 'finished_at', now)
  redis.call('HSET', nodes, node, NODE.FAILED)
  notify(workflow, EVENT.NODE_FAILED, node)
end
fail_one(failed, err)
for i = 5, #ARGV do
  fail_one(ARGV[i], "upstream node '" .. failed .. "' failed: " .. err)
end
local wk = key('workflow', workflow)
local head = redis.call('HMGET', wk, 'status', 'tenant')
local status = head[1]
if not status or final(status) then
  return 0
end
release_reserved(workflow, head[2])
redis.call('HSET', wk, 'status', NODE.FAILED, 'finished_at', now)
redis.call('ZREM', KEY.active_workflows, workflow)
notify(workflow, EVENT.WORKFLOW_FAILED, failed)
emit(EVENT.WORKFLOW_FAILED, workflow, failed, err)
return 1
