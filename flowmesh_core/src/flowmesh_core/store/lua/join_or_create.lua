-- join_or_create: attach a requester to an op key, atomically.
-- Exactly one caller creates the in-flight op (and enqueues it in the ready pool under
-- its batch signature); every other caller either hits the action cache or joins the op
-- in flight. Re-submitting the same requester is a no-op that reports where it stands.
--
-- Ready-pool order is start-time fair queuing (see below): each tenant has a virtual
-- clock that each of its items advances by ARGV[11]. A tenant that enqueues 10,000
-- items therefore queues behind itself, not in front of everyone else.
--
-- KEYS: 1 action cache, 2 op hash, 3 op waiters, 4 inflight zset,
--       5 requester lineage hash, 6 workflow lineage zset, 7 tenant stats,
--       8 node hash, 9 ready zset of the signature, 10 ready signatures zset,
--       11 signature meta hash, 12 vclock hash, 13 tenant results set
-- ARGV: 1 inflight member, 2 now, 3 item spec (JSON), 4 tenant, 5 workflow, 6 node,
--       7 index, 8 op key, 9 signature, 10 ready member, 11 virtual cost of one item,
--       12 signature meta (JSON)
-- Returns {outcome, status, digest, node_done}; outcome is created | joined |
-- cache_hit | existing | conflict (then status holds the op key already recorded).
-- node_done is 1 when this call finished the requester's node (its last item was a hit).

local prior = redis.call('HMGET', KEYS[5], 'op_key', 'status', 'satisfied_by', 'result_digest')
if prior[1] then
  if prior[1] ~= ARGV[8] then
    return {'conflict', prior[1], '', 0}
  end
  return {'existing', prior[2], prior[4] or '', 0}
end

local function record(status, how)
  redis.call('HSET', KEYS[5], 'tenant', ARGV[4], 'workflow', ARGV[5], 'node', ARGV[6],
    'index', ARGV[7], 'op_key', ARGV[8], 'status', status, 'satisfied_by', how,
    'requested_at', ARGV[2], 'node_key', KEYS[8])
  redis.call('ZADD', KEYS[6], ARGV[2], KEYS[5])
  redis.call('HINCRBY', KEYS[7], 'requested', 1)
end

local digest = redis.call('GET', KEYS[1])
if digest then
  record('done', 'cache_hit')
  redis.call('HSET', KEYS[5], 'result_digest', digest, 'finished_at', ARGV[2])
  redis.call('HINCRBY', KEYS[7], 'cache_hits', 1)
  redis.call('SADD', KEYS[13], digest)
  local node_done = 0
  if redis.call('HEXISTS', KEYS[8], 'remaining') == 1 then
    if redis.call('HINCRBY', KEYS[8], 'remaining', -1) == 0 then
      node_done = 1
    end
  end
  return {'cache_hit', 'done', digest, node_done}
end

local status = redis.call('HGET', KEYS[2], 'status')
if status then
  redis.call('RPUSH', KEYS[3], KEYS[5])
  record(status, 'joined')
  redis.call('HINCRBY', KEYS[7], 'joins', 1)
  return {'joined', status, '', 0}
end

-- Start-time fair queuing: the system's virtual time is the start tag of the item served
-- next (the head of this signature's queue; now when it is empty). A tenant's new item
-- starts at max(virtual time, the tenant's clock), so a newcomer interleaves with a
-- backlog at once instead of queuing behind everything stamped before it arrived.
local now = tonumber(ARGV[2])
local head = redis.call('ZRANGE', KEYS[9], 0, 0, 'WITHSCORES')
local vtime = now
if head[2] then
  vtime = math.min(now, tonumber(head[2]))
end
local start = math.max(vtime, tonumber(redis.call('HGET', KEYS[12], ARGV[4]) or '0'))
redis.call('HSET', KEYS[12], ARGV[4], string.format('%.17g', start + tonumber(ARGV[11])))
redis.call('HSET', KEYS[2], 'status', 'pending', 'spec', ARGV[3], 'creator', KEYS[5],
  'created_at', ARGV[2], 'attempts', 0, 'signature', ARGV[9], 'member', ARGV[10],
  'vstart', string.format('%.17g', start))
redis.call('RPUSH', KEYS[3], KEYS[5])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[9], string.format('%.17g', start), ARGV[10])
redis.call('ZADD', KEYS[10], 'NX', ARGV[2], ARGV[9])
if redis.call('EXISTS', KEYS[11]) == 0 then
  redis.call('HSET', KEYS[11], 'meta', ARGV[12])
end
record('pending', 'executed')
redis.call('HINCRBY', KEYS[7], 'created', 1)
return {'created', 'pending', '', 0}
