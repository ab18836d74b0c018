-- complete: record an op's result and release every requester waiting on it, atomically.
-- The first result recorded wins; a late duplicate finish (a worker thought dead, a
-- redelivered assignment) changes nothing, which is safe because results are keyed by
-- content. The op's share of the batch's cost is split evenly across its requesters and
-- added to each requester's tenant totals.
--
-- KEYS: 1 action cache, 2 op hash, 3 op waiters, 4 inflight zset, 5 cluster stats,
--       6 all results set, 7 nodes to settle
-- ARGV: 1 inflight member, 2 result digest, 3 finished_at, 4 batch id, 5 worker,
--       6 started_at, 7 cost in USD, 8 energy in Wh, 9 worker-seconds,
--       10 tenant stats template (KeySpace.stats_template),
--       11 tenant results template (KeySpace.results_template)
-- Returns {outcome, digest, n_released, node keys finished...}; outcome is completed |
-- duplicate. A node key is listed when this call released its last pending item; it is
-- also written to the settle hash, so the node's transition survives a control plane
-- that dies before applying it.

local existing = redis.call('GET', KEYS[1])
local digest = existing or ARGV[2]
if not existing then
  redis.call('SET', KEYS[1], digest)
  redis.call('SADD', KEYS[6], digest)
  redis.call('HINCRBY', KEYS[5], 'executed', 1)
end
local waiters = redis.call('LRANGE', KEYS[3], 0, -1)
local share = math.max(#waiters, 1)
local cost = tonumber(ARGV[7]) / share
local energy = tonumber(ARGV[8]) / share
local seconds = tonumber(ARGV[9]) / share
local out = {'completed', digest, #waiters}
if existing then
  out[1] = 'duplicate'
end
for _, waiter in ipairs(waiters) do
  redis.call('HSET', waiter, 'status', 'done', 'result_digest', digest, 'batch_id', ARGV[4],
    'worker', ARGV[5], 'started_at', ARGV[6], 'finished_at', ARGV[3],
    'cost_usd', tostring(cost), 'energy_wh', tostring(energy),
    'worker_seconds', tostring(seconds))
  local info = redis.call('HMGET', waiter, 'tenant', 'node_key')
  local stats = ARGV[10] .. info[1]
  redis.call('HINCRBYFLOAT', stats, 'cost_usd', tostring(cost))
  redis.call('HINCRBYFLOAT', stats, 'energy_wh', tostring(energy))
  redis.call('HINCRBYFLOAT', stats, 'worker_seconds', tostring(seconds))
  redis.call('SADD', ARGV[11] .. info[1] .. ':results', digest)
  if info[2] and redis.call('HEXISTS', info[2], 'remaining') == 1 then
    if redis.call('HINCRBY', info[2], 'remaining', -1) == 0 then
      out[#out + 1] = info[2]
      redis.call('HSET', KEYS[7], info[2], 'done')
    end
  end
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
return out
