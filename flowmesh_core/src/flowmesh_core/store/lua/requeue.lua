-- requeue: hand a running op back to pending (its worker died or was preempted), so the
-- scheduler can plan it again. Only the worker named in ARGV may be displaced, so a
-- stale reclaim cannot take work from the worker that now runs it.
--
-- KEYS: 1 op hash, 2 op waiters
-- ARGV: 1 worker expected to hold it
-- Returns 1 if requeued, 0 otherwise.

local state = redis.call('HMGET', KEYS[1], 'status', 'worker')
if state[1] ~= 'running' or state[2] ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'pending')
redis.call('HDEL', KEYS[1], 'batch_id', 'worker', 'started_at')
for _, waiter in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  redis.call('HSET', waiter, 'status', 'pending')
  redis.call('HDEL', waiter, 'batch_id', 'worker', 'started_at')
end
return 1
