-- cancel_workflow: cancel a workflow for its tenant, in one step (docs/isolation.md,
-- "Cancelling"). The workflow and each of its nodes not final yet become cancelled;
-- every one of its items without a result is detached from its op (its lineage record
-- says cancelled, and it leaves the op's waiters, so no later result or failure reaches
-- it and none is charged to it). An op that no other requester waits for:
--   pending: leaves the ready pool and is forgotten (it never runs), with its resume
--            point if an earlier attempt left one;
--   running: is left to finish on its worker (a batch in hand is not interrupted); its
--            result then enters the action cache charged to nobody, and a worker that
--            dies with it does not have it planned again (requeue drops it).
-- An op that another requester (any tenant, any workflow) also waits for is left exactly
-- as it was: that requester sees no difference. Waiting clients are told on the
-- workflow's events stream; the outbox announces workflow.cancelled.
--
-- ARGV: 1 workflow, 2 tenant that must own it ('' for an admin: any), 3 now
-- Returns {outcome, status, items dropped, items left to other requesters}: outcome is
-- 'applied' (cancelled by this call), 'final' (status is the final status it had: done, failed
-- or cancelled, nothing changed) or 'unknown' (no such workflow for this tenant).

local workflow, now = ARGV[1], ARGV[3]
local wk = key('workflow', workflow)
local head = redis.call('HMGET', wk, 'status', 'tenant', 'domain')
if not head[1] or (ARGV[2] ~= '' and head[2] ~= ARGV[2]) then
  return {'unknown', '', 0, 0}
end
if final(head[1]) then
  return {'final', head[1], 0, 0}
end
local tenant, domain = head[2], head[3] or 'global'
redis.call('HSET', wk, 'status', NODE.CANCELLED, 'finished_at', now)
redis.call('ZREM', KEY.active_workflows, workflow)
release_reserved(workflow, tenant)

local nodes = key('workflow_nodes', workflow)
local names = redis.call('HKEYS', nodes)
for _, node in ipairs(names) do
  local nk = key('node', workflow, node)
  if not final(redis.call('HGET', nk, 'state')) then
    redis.call('HSET', nk, 'state', NODE.CANCELLED, 'finished_at', now)
    redis.call('HSET', nodes, node, NODE.CANCELLED)
  end
end

local dropped, shared = 0, 0
for _, lin in ipairs(redis.call('ZRANGE', key('workflow_lineage', workflow), 0, -1)) do
  local item = redis.call('HMGET', lin, 'status', 'op_key')
  if item[1] == ITEM.PENDING or item[1] == ITEM.RUNNING then
    redis.call('HSET', lin, 'status', ITEM.CANCELLED, 'finished_at', now)
    count_in_flight(tenant, -1)
    local op_key = item[2]
    local wl = key('waiters', domain, op_key)
    redis.call('LREM', wl, 0, lin)
    if redis.call('LLEN', wl) > 0 then
      shared = shared + 1
    else
      dropped = dropped + 1
      local op = key('op', domain, op_key)
      local state = redis.call('HMGET', op, 'status', 'signature', 'member')
      if state[1] == ITEM.PENDING then
        local ready = key('ready', state[2])
        redis.call('ZREM', ready, state[3])
        if redis.call('ZCARD', ready) == 0 then
          redis.call('ZREM', KEY.ready_signatures, state[2])
          forget_inputs(state[2])
        end
        redis.call('DEL', op, key('resume', domain, op_key))
        redis.call('ZREM', KEY.inflight, key('inflight_member', domain, op_key))
      end
    end
  end
end

notify(workflow, EVENT.WORKFLOW_CANCELLED)
emit(EVENT.WORKFLOW_CANCELLED, workflow)
return {'applied', NODE.CANCELLED, dropped, shared}
