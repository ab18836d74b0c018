-- finish_batch: account for a batch once its completion report has been applied:
-- free the worker's slot and add the batch to the cluster totals. Exactly once: a
-- redelivered report finds the batch gone and changes nothing.
--
-- KEYS: 1 batch hash, 2 worker hash, 3 cluster stats
-- ARGV: 1 items in the report (counted when the batch records no size), 2 worker-seconds,
--       3 cost in USD, 4 energy in Wh, 5 batch id, 6 now
-- The batch's log (kept for the dashboard, see claim_batch) gets the figures too.
-- Returns 1 if accounted now (the scheduler is woken: a slot is free), 0 if it had been
-- already.

local size = redis.call('HGET', KEYS[1], 'size') or ARGV[1]
if redis.call('DEL', KEYS[1]) == 0 then
  return 0
end
if redis.call('HINCRBY', KEYS[2], 'inflight', -1) < 0 then
  redis.call('HSET', KEYS[2], 'inflight', 0)
end
local log = key('batch_log', ARGV[5])
if redis.call('EXISTS', log) == 1 then
  redis.call('HSET', log, 'finished_at', ARGV[6], 'worker_seconds', ARGV[2],
    'cost_usd', ARGV[3], 'energy_wh', ARGV[4])
end
redis.call('HINCRBY', KEYS[3], 'batches', 1)
redis.call('HINCRBY', KEYS[3], 'batched_items', size)
redis.call('HINCRBYFLOAT', KEYS[3], 'worker_seconds', ARGV[2])
redis.call('HINCRBYFLOAT', KEYS[3], 'cost_usd', ARGV[3])
redis.call('HINCRBYFLOAT', KEYS[3], 'energy_wh', ARGV[4])
wake_scheduler()
return 1
