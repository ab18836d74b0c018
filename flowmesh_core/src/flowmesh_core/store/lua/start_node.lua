-- start_node: record a node's start and attach every one of its items, in one step.
-- A node is started at most once: a second call (another replica, a redelivered outbox
-- event, a retried submission) finds it started and changes nothing. A node of a
-- workflow that is gone, finished, or owned by another tenant is not started.
--
-- ARGV: 1 workflow, 2 node, 3 tenant, 4 domain, 5 now, 6 node op key, 7 batched (1|0),
--       8 signature, 9 signature meta (JSON), 10 virtual cost of one item,
--       11.. one item spec (JSON) and its op key per item: spec, op key, spec, op key, ...
-- Returns {started, created, joined, cache_hits, done}: started is 1 if this call
-- started the node; done is 1 when every item was a cache hit (the node then waits
-- only for its result to be recorded: see node.items_done).

local workflow, node, tenant = ARGV[1], ARGV[2], ARGV[3]
local head = redis.call('HMGET', key('workflow', workflow), 'status', 'tenant')
if not head[1] or head[2] ~= tenant or final(head[1]) then
  return {0, 0, 0, 0, 0}
end
local nk = key('node', workflow, node)
if redis.call('HEXISTS', nk, 'op_key') == 1 then
  return {0, 0, 0, 0, 0}
end
local n = (#ARGV - 10) / 2
-- The submission reserved its root items against the tenant's in-flight quota; they
-- count from here as what they are (created or joined; a cache hit is not in flight).
local reserved = tonumber(redis.call('HGET', key('workflow', workflow), 'reserved') or '0')
if reserved > 0 then
  local take = math.min(reserved, n)
  redis.call('HINCRBY', key('workflow', workflow), 'reserved', -take)
  count_in_flight(tenant, -take)
end
redis.call('HSET', nk, 'op_key', ARGV[6], 'items_total', n, 'remaining', n,
  'tenant', tenant, 'batched', ARGV[7], 'state', NODE.PENDING, 'started_at', ARGV[5])
redis.call('HSET', key('workflow_nodes', workflow), node, NODE.PENDING)
local counts = {[JOIN.CREATED] = 0, [JOIN.JOINED] = 0, [JOIN.CACHE_HIT] = 0}
local done = (n == 0)
for i = 0, n - 1 do
  local outcome, _, _, node_done = join_item({
    tenant = tenant, domain = ARGV[4], workflow = workflow, node = node, index = i,
    now = ARGV[5], op_key = ARGV[12 + 2 * i], signature = ARGV[8],
    spec = ARGV[11 + 2 * i], sig_meta = ARGV[9], vcost = ARGV[10]})
  counts[outcome] = (counts[outcome] or 0) + 1
  done = done or node_done
end
if n == 0 then
  emit(EVENT.NODE_ITEMS_DONE, workflow, node)
end
if counts[JOIN.CREATED] > 0 then
  wake_scheduler()
end
return {1, counts[JOIN.CREATED], counts[JOIN.JOINED], counts[JOIN.CACHE_HIT], done and 1 or 0}
