-- requeue: hand a running op back to the ready pool (its worker died or was preempted),
-- so the scheduler plans it again. Only the worker named in ARGV may be displaced, so a
-- stale reclaim cannot take work from the worker that now runs it. The op keeps its
-- fair-queuing start time: it goes back to the front, not the end. An op that no
-- requester waits for any more (all cancelled) is dropped instead, with its resume point.
--
-- ARGV: 1 domain, 2 op key, 3 worker expected to hold it, 4 now
-- Returns 1 if requeued, 0 otherwise.

local op = key('op', ARGV[1], ARGV[2])
local state = redis.call('HMGET', op, 'status', 'worker', 'signature', 'member', 'vstart')
if state[1] ~= ITEM.RUNNING or state[2] ~= ARGV[3] then
  return 0
end
local wk = key('waiters', ARGV[1], ARGV[2])
if redis.call('LLEN', wk) == 0 then
  -- Every requester cancelled while it ran: nobody needs it planned again.
  redis.call('DEL', op, wk, key('resume', ARGV[1], ARGV[2]))
  redis.call('ZREM', KEY.inflight, key('inflight_member', ARGV[1], ARGV[2]))
  return 0
end
redis.call('HSET', op, 'status', ITEM.PENDING)
redis.call('HDEL', op, 'batch_id', 'worker', 'started_at')
for _, waiter in ipairs(redis.call('LRANGE', key('waiters', ARGV[1], ARGV[2]), 0, -1)) do
  redis.call('HSET', waiter, 'status', ITEM.PENDING)
  redis.call('HDEL', waiter, 'batch_id', 'worker', 'started_at')
end
redis.call('ZADD', key('ready', state[3]), state[5], state[4])
redis.call('ZADD', KEY.ready_signatures, 'NX', ARGV[4], state[3])
wake_scheduler()
return 1
