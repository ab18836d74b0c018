-- requeue: hand a running op back to the ready pool (its worker died or was preempted),
-- so the scheduler plans it again. Only the worker named in ARGV may be displaced, so a
-- stale reclaim cannot take work from the worker that now runs it. The op keeps its
-- fair-queuing start time: it goes back to the front, not the end.
--
-- KEYS: 1 op hash, 2 op waiters, 3 ready signatures zset
-- ARGV: 1 worker expected to hold it, 2 now, 3 ready zset template (KeySpace.ready(""))
-- Returns 1 if requeued, 0 otherwise.

local state = redis.call('HMGET', KEYS[1], 'status', 'worker', 'signature', 'member', 'vstart')
if state[1] ~= 'running' or state[2] ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'pending')
redis.call('HDEL', KEYS[1], 'batch_id', 'worker', 'started_at')
for _, waiter in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  redis.call('HSET', waiter, 'status', 'pending')
  redis.call('HDEL', waiter, 'batch_id', 'worker', 'started_at')
end
redis.call('ZADD', ARGV[3] .. state[3], state[5], state[4])
redis.call('ZADD', KEYS[3], 'NX', ARGV[2], state[3])
return 1
