-- fail: mark an op failed for every requester waiting on it, with the error, and forget
-- the in-flight op so that a later request may try again. Nothing enters the action
-- cache. An op already completed is left alone (a result beats a late failure report).
-- Each node that loses an item this way is announced on the outbox (node.item_failed,
-- once per node) by this same step. The op's resume point goes with it: a later request
-- starts a new run from step 0.
--
-- ARGV: 1 domain, 2 op key, 3 error message, 4 now, 5 the node's error (names the item)
-- Returns the number of nodes announced.

local domain, op_key = ARGV[1], ARGV[2]
if redis.call('EXISTS', key('action', domain, op_key)) == 1 then
  return 0
end
local op = key('op', domain, op_key)
local state = redis.call('HMGET', op, 'signature', 'member')
if state[1] then
  redis.call('ZREM', key('ready', state[1]), state[2])
end
local failed = 0
local wk = key('waiters', domain, op_key)
for _, waiter in ipairs(redis.call('LRANGE', wk, 0, -1)) do
  redis.call('HSET', waiter, 'status', ITEM.FAILED, 'error', ARGV[3], 'finished_at', ARGV[4])
  local who = redis.call('HMGET', waiter, 'workflow', 'node', 'tenant')
  count_in_flight(who[3], -1)
  local nk = key('node', who[1], who[2])
  if redis.call('HEXISTS', nk, 'remaining') == 1 then
    if redis.call('HSETNX', nk, 'error', ARGV[5]) == 1 then
      failed = failed + 1
      emit(EVENT.NODE_ITEM_FAILED, who[1], who[2], ARGV[5])
    end
  end
end
if redis.call('DEL', op) == 1 then
  redis.call('HINCRBY', KEY.cluster_stats, 'failed', 1)
end
redis.call('DEL', wk, key('resume', domain, op_key))
redis.call('ZREM', KEY.inflight, key('inflight_member', domain, op_key))
return failed
