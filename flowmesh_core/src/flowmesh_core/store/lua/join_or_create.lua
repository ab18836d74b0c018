-- join_or_create: attach a requester to an op key, atomically.
-- Exactly one caller creates the in-flight op; every other caller either hits the
-- action cache or joins the op in flight. Re-submitting the same requester is a no-op
-- that reports where it stands (retries re-attach instead of submitting twice).
--
-- KEYS: 1 action cache, 2 op hash, 3 op waiters, 4 inflight zset,
--       5 requester lineage hash, 6 workflow lineage zset, 7 tenant stats
-- ARGV: 1 inflight member, 2 now, 3 item spec (JSON), 4 tenant, 5 workflow,
--       6 node, 7 index, 8 op key
-- Returns {outcome, status, digest}; outcome is created | joined | cache_hit |
-- existing | conflict (then status holds the op key already recorded).

local prior = redis.call('HMGET', KEYS[5], 'op_key', 'status', 'satisfied_by', 'result_digest')
if prior[1] then
  if prior[1] ~= ARGV[8] then
    return {'conflict', prior[1], ''}
  end
  return {'existing', prior[2], prior[4] or '', prior[3]}
end

local function record(status, how)
  redis.call('HSET', KEYS[5], 'tenant', ARGV[4], 'workflow', ARGV[5], 'node', ARGV[6],
    'index', ARGV[7], 'op_key', ARGV[8], 'status', status, 'satisfied_by', how,
    'requested_at', ARGV[2])
  redis.call('ZADD', KEYS[6], ARGV[2], KEYS[5])
  redis.call('HINCRBY', KEYS[7], 'requested', 1)
end

local digest = redis.call('GET', KEYS[1])
if digest then
  record('done', 'cache_hit')
  redis.call('HSET', KEYS[5], 'result_digest', digest, 'finished_at', ARGV[2])
  redis.call('HINCRBY', KEYS[7], 'cache_hits', 1)
  return {'cache_hit', 'done', digest}
end

local status = redis.call('HGET', KEYS[2], 'status')
if status then
  redis.call('RPUSH', KEYS[3], KEYS[5])
  record(status, 'joined')
  redis.call('HINCRBY', KEYS[7], 'joins', 1)
  return {'joined', status, ''}
end

redis.call('HSET', KEYS[2], 'status', 'pending', 'spec', ARGV[3], 'creator', KEYS[5],
  'created_at', ARGV[2], 'attempts', 0)
redis.call('RPUSH', KEYS[3], KEYS[5])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
record('pending', 'executed')
redis.call('HINCRBY', KEYS[7], 'created', 1)
return {'created', 'pending', ''}
