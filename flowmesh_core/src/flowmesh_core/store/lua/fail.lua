-- fail: mark an op failed for every requester waiting on it, with the error, and forget
-- the in-flight op so that a later request may try again. Nothing enters the action cache.
-- An op already completed is left alone (a result beats a late failure report).
--
-- KEYS: 1 action cache, 2 op hash, 3 op waiters, 4 inflight zset, 5 cluster stats,
--       6 nodes to settle
-- ARGV: 1 inflight member, 2 error message, 3 now, 4 ready zset template,
--       5 the node's error (names the item)
-- Returns the node keys of the waiting requesters that this call failed (a node is
-- listed once, the first time one of its items fails); each is also written to the
-- settle hash, so the failure reaches the workflow even if the control plane dies now.

if redis.call('EXISTS', KEYS[1]) == 1 then
  return {}
end
local state = redis.call('HMGET', KEYS[2], 'signature', 'member')
if state[1] then
  redis.call('ZREM', ARGV[4] .. state[1], state[2])
end
local failed = {}
for _, waiter in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  redis.call('HSET', waiter, 'status', 'failed', 'error', ARGV[2], 'finished_at', ARGV[3])
  local node = redis.call('HGET', waiter, 'node_key')
  if node and redis.call('HEXISTS', node, 'remaining') == 1 then
    if redis.call('HSETNX', node, 'error', ARGV[2]) == 1 then
      failed[#failed + 1] = node
      redis.call('HSET', KEYS[6], node, 'failed\n' .. ARGV[5])
    end
  end
end
if redis.call('DEL', KEYS[2]) == 1 then
  redis.call('HINCRBY', KEYS[5], 'failed', 1)
end
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
return failed
