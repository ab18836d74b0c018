-- fail: mark an op failed for every requester waiting on it, with the error, and forget
-- the in-flight op so that a later request may try again. Nothing enters the action cache.
-- An op already completed is left alone (a result beats a late failure report).
--
-- KEYS: 1 action cache, 2 op hash, 3 op waiters, 4 inflight zset, 5 cluster stats
-- ARGV: 1 inflight member, 2 error message, 3 now
-- Returns the waiter lineage keys that were failed (empty if nothing was in flight).

if redis.call('EXISTS', KEYS[1]) == 1 then
  return {}
end
local waiters = redis.call('LRANGE', KEYS[3], 0, -1)
for _, waiter in ipairs(waiters) do
  redis.call('HSET', waiter, 'status', 'failed', 'error', ARGV[2], 'finished_at', ARGV[3])
end
if redis.call('DEL', KEYS[2]) == 1 then
  redis.call('HINCRBY', KEYS[5], 'failed', 1)
end
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
return waiters
