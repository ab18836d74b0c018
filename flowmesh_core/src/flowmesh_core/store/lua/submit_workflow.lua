-- submit_workflow: store a workflow, its node states, the tenant's index entry and its
-- entry in the index of active workflows, and announce it on the outbox (so its root
-- nodes start even if the submitter dies before starting them), in one step; or nothing at all if the id is taken or the submission
-- is a replay of an earlier one with the same idempotency key.
--
--
-- The tenant's quotas (docs/isolation.md, "Quotas") are checked and counted in the same
-- step, so concurrent submissions cannot together pass a limit: the submission rate is a
-- token bucket (rate per second, burst tokens at most), and the root items are reserved
-- against the items-in-flight limit (start_node turns the reservation into the count of
-- what is really in flight). A refused submission changes nothing.
--
-- ARGV: 1 workflow id, 2 tenant, 3 name, 4 now, 5 spec (JSON), 6 dedup domain,
--       7 idempotency key hash ('' when the submission carries none),
--       8 seconds the idempotency key is remembered, 9 most items in flight (0: no
--       limit), 10 submissions per second (0: no limit), 11 burst (tokens), 12 the root
--       nodes' items, 13 the graph summary the autoscaler reads instead of the spec
--       (JSON, '' when the spec has none), 14.. node names
-- Returns {1, id} if created, {0, id} if the id already existed, {2, earlier id} if a
-- submission with this idempotency key was made before (nothing is created), {3,
-- 'rate' | 'in_flight', seconds to wait before trying again, the limit} if a quota
-- refused it (nothing is changed).

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
local now, max_in_flight, rate = tonumber(ARGV[4]), tonumber(ARGV[9]), tonumber(ARGV[10])
local roots = tonumber(ARGV[12])
local qk = key('quota', tenant)
local q = redis.call('HMGET', qk, 'in_flight', 'tokens', 'at')
local in_flight = tonumber(q[1] or '0')
if max_in_flight > 0 and in_flight + roots > max_in_flight then
  return {3, 'in_flight', '1', ARGV[9]}
end
if rate > 0 then
  local burst = tonumber(ARGV[11])
  local tokens = burst
  if q[2] then
    tokens = math.min(burst, tonumber(q[2]) + math.max(now - tonumber(q[3]), 0) * rate)
  end
  if tokens < 1 then
    return {3, 'rate', string.format('%.6f', (1 - tokens) / rate), ARGV[10]}
  end
  redis.call('HSET', qk, 'tokens', string.format('%.17g', tokens - 1), 'at', ARGV[4])
end
if roots > 0 then
  redis.call('HINCRBY', qk, 'in_flight', roots)
end
redis.call('HSET', wk, 'tenant', tenant, 'name', ARGV[3], 'status', NODE.PENDING,
  'created_at', ARGV[4], 'spec', ARGV[5], 'domain', ARGV[6], 'reserved', roots)
if ARGV[13] ~= '' then
  redis.call('HSET', wk, 'graph', ARGV[13])
end
for i = 14, #ARGV do
  redis.call('HSET', key('workflow_nodes', workflow), ARGV[i], NODE.WAITING)
end
redis.call('ZADD', key('tenant_workflows', tenant), ARGV[4], workflow)
redis.call('ZADD', KEY.active_workflows, ARGV[4], workflow)
if submission then
  redis.call('SET', submission, workflow, 'EX', tonumber(ARGV[8]))
end
emit(EVENT.WORKFLOW_SUBMITTED, workflow)
return {1, workflow}
