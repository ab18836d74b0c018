-- submit_workflow: store a workflow, its node states and the tenant's index entry, and
-- announce it on the outbox (so its root nodes start even if the submitter dies before
-- starting them), in one step; or nothing at all if the id is taken or the submission
-- is a replay of an earlier one with the same idempotency key.
--
-- ARGV: 1 workflow id, 2 tenant, 3 name, 4 now, 5 spec (JSON), 6 dedup domain,
--       7 idempotency key hash ('' when the submission carries none),
--       8 seconds the idempotency key is remembered, 9.. node names
-- Returns {1, id} if created, {0, id} if the id already existed, {2, earlier id} if a
-- submission with this idempotency key was made before (nothing is created).

local workflow, tenant = ARGV[1], ARGV[2]
local submission = nil
if ARGV[7] ~= '' then
  submission = key('submission', tenant, ARGV[7])
  local earlier = redis.call('GET', submission)
  if earlier then
    return {2, earlier}
  end
end
local wk = key('workflow', workflow)
if redis.call('EXISTS', wk) == 1 then
  return {0, workflow}
end
redis.call('HSET', wk, 'tenant', tenant, 'name', ARGV[3], 'status', NODE.PENDING,
  'created_at', ARGV[4], 'spec', ARGV[5], 'domain', ARGV[6])
for i = 9, #ARGV do
  redis.call('HSET', key('workflow_nodes', workflow), ARGV[i], NODE.WAITING)
end
redis.call('ZADD', key('tenant_workflows', tenant), ARGV[4], workflow)
if submission then
  redis.call('SET', submission, workflow, 'EX', tonumber(ARGV[8]))
end
emit(EVENT.WORKFLOW_SUBMITTED, workflow)
return {1, workflow}
