-- complete: record an op's result and release every requester waiting on it, atomically.
-- The first result recorded wins; a late duplicate finish (a worker thought dead, a
-- redelivered assignment) changes nothing, which is safe because results are keyed by
-- content. The batch's cost for this op is split evenly across its requesters.
--
-- KEYS: 1 action cache, 2 op hash, 3 op waiters, 4 inflight zset, 5 cluster stats
-- ARGV: 1 inflight member, 2 result digest, 3 finished_at, 4 batch id, 5 worker,
--       6 started_at, 7 cost in USD, 8 energy in Wh
-- Returns {outcome, digest, waiter lineage keys...}; outcome is completed | duplicate.

local existing = redis.call('GET', KEYS[1])
local digest = existing or ARGV[2]
if not existing then
  redis.call('SET', KEYS[1], digest)
  redis.call('HINCRBY', KEYS[5], 'executed', 1)
end
local waiters = redis.call('LRANGE', KEYS[3], 0, -1)
local share = math.max(#waiters, 1)
local cost = tostring(tonumber(ARGV[7]) / share)
local energy = tostring(tonumber(ARGV[8]) / share)
for _, waiter in ipairs(waiters) do
  redis.call('HSET', waiter, 'status', 'done', 'result_digest', digest, 'batch_id', ARGV[4],
    'worker', ARGV[5], 'started_at', ARGV[6], 'finished_at', ARGV[3], 'cost_usd', cost,
    'energy_wh', energy)
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
local outcome = 'completed'
if existing then
  outcome = 'duplicate'
end
local out = {outcome, digest}
for _, waiter in ipairs(waiters) do
  out[#out + 1] = waiter
end
return out
