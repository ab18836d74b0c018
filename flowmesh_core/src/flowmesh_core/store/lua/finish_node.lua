-- finish_node: record a node's result, let its tenant read it, announce it, and finish
-- the workflow when this was its last node, all in one step. Exactly once: a node that
-- is final already (done or failed) is left alone.
--
-- ARGV: 1 workflow, 2 node, 3 result digest, 4 now, 5 the result's bytes when it is kept
--       inline (a small manifest), '' when it is in the CAS
-- Returns {finished, workflow_done}: 1 where this call made the change.

local workflow, node = ARGV[1], ARGV[2]
local nk = key('node', workflow, node)
local state = redis.call('HMGET', nk, 'state', 'tenant')
if not state[1] or final(state[1]) then
  return {0, 0}
end
if ARGV[5] ~= '' then
  redis.call('SET', key('inline', ARGV[3]), ARGV[5], 'NX')
end
redis.call('HSET', nk, 'state', NODE.DONE, 'result_digest', ARGV[3], 'finished_at', ARGV[4])
local nodes = key('workflow_nodes', workflow)
redis.call('HSET', nodes, node, NODE.DONE)
redis.call('SADD', key('tenant_results', state[2]), ARGV[3])
redis.call('SADD', KEY.results, ARGV[3])
notify(workflow, EVENT.NODE_DONE, node)
emit(EVENT.NODE_DONE, workflow, node)
for _, status in ipairs(redis.call('HVALS', nodes)) do
  if status ~= NODE.DONE then
    return {1, 0}
  end
end
local wk = key('workflow', workflow)
if final(redis.call('HGET', wk, 'status')) then
  return {1, 0}
end
redis.call('HSET', wk, 'status', NODE.DONE, 'finished_at', ARGV[4])
redis.call('ZREM', KEY.active_workflows, workflow)
notify(workflow, EVENT.WORKFLOW_DONE)
emit(EVENT.WORKFLOW_DONE, workflow)
return {1, 1}
