-- complete: record an op's result and release every requester waiting on it, atomically.
-- The first result recorded wins; a late duplicate finish (a worker thought dead, a
-- redelivered assignment) changes nothing, which is safe because results are keyed by
-- content. Each requester is charged the op's whole share of the batch's cost, whatever
-- the number of requesters, so that no charge reveals who else asked (docs/isolation.md);
-- it is added to each requester's tenant totals. A node whose last item this releases is
-- announced on the outbox (node.items_done) by this same step. An op whose every
-- requester cancelled has no waiter left: its result enters the action cache, charged
-- to nobody. The op's resume point (a training run's latest intermediate checkpoint)
-- goes with the op: the run is over.
--
-- ARGV: 1 domain, 2 op key, 3 result digest, 4 finished_at, 5 batch id, 6 worker,
--       7 started_at, 8 cost in USD, 9 energy in Wh, 10 worker-seconds,
--       11 the result's bytes when it travels inline ('' when it is in the CAS),
--       12 the fairness half-life in seconds (each requester's share is charged to its
--       tenant's decayed usage), 13 the size of a result stored in the CAS ('' when not
--       known): indexed like an upload (the first record stays), for data locality
-- Returns {outcome, digest, n_released, n_nodes_finished}; outcome is completed |
-- duplicate.

local domain, op_key = ARGV[1], ARGV[2]
local ac = key('action', domain, op_key)
local existing = redis.call('GET', ac)
local digest = existing or ARGV[3]
if not existing then
  if ARGV[11] ~= '' then
    redis.call('SET', key('inline', digest), ARGV[11], 'NX')
  end
  redis.call('SET', ac, digest)
  if (ARGV[13] or '') ~= '' then
    index_blob(digest, ARGV[13], 'application/json', ARGV[4])
  end
  redis.call('SADD', KEY.results, digest)
  redis.call('HINCRBY', KEY.cluster_stats, 'executed', 1)
end
local wk = key('waiters', domain, op_key)
local waiters = redis.call('LRANGE', wk, 0, -1)
local cost, energy, seconds = ARGV[8], ARGV[9], ARGV[10]
-- Requesters that joined while the batch ran join its log (claim_batch listed the rest).
local requested = key('batch_lineage', ARGV[5])
if #waiters > 0 and redis.call('EXISTS', requested) == 1 then
  for i = 1, #waiters, 1000 do  -- unpack has a stack limit
    redis.call('SADD', requested, unpack(waiters, i, math.min(i + 999, #waiters)))
  end
end
local finished = 0
for _, waiter in ipairs(waiters) do
  redis.call('HSET', waiter, 'status', ITEM.DONE, 'result_digest', digest,
    'batch_id', ARGV[5], 'worker', ARGV[6], 'started_at', ARGV[7], 'finished_at', ARGV[4],
    'cost_usd', cost, 'energy_wh', energy, 'worker_seconds', seconds)
  local who = redis.call('HMGET', waiter, 'tenant', 'workflow', 'node')
  local stats = key('tenant_stats', who[1])
  redis.call('HINCRBYFLOAT', stats, 'cost_usd', cost)
  redis.call('HINCRBYFLOAT', stats, 'energy_wh', energy)
  redis.call('HINCRBYFLOAT', stats, 'worker_seconds', seconds)
  charge_usage(who[1], seconds, ARGV[4], ARGV[12])
  count_in_flight(who[1], -1)
  redis.call('SADD', key('tenant_results', who[1]), digest)
  if item_done(who[2], who[3]) then
    finished = finished + 1
  end
end
redis.call('DEL', key('op', domain, op_key), wk, key('resume', domain, op_key))
redis.call('ZREM', KEY.inflight, key('inflight_member', domain, op_key))
return {existing and 'duplicate' or 'completed', digest, #waiters, finished}
