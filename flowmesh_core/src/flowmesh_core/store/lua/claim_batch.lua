-- claim_batch: take up to N items of one batch signature from the ready pool, mark them
-- running on one worker, record the batch, and put it on that worker's assignment
-- stream, all in one step. Only the holder of the scheduler lease may do it (fencing):
-- a scheduler that lost its lease cannot assign anything, even if it still runs.
--
-- KEYS: 1 worker's assignment stream, 2 scheduler lease, 3 batch hash, 4 worker hash
-- ARGV: 1 fencing token, 2 max items, 3 batch id, 4 worker id, 5 now, 6 signature,
--       7 the decision's utility terms (JSON), 8 seconds the batch log is kept
-- The batch log (key batch_log) keeps what was decided, and who asked, after the batch
-- record itself is gone (docs/ui.md, batch page).
-- Returns {status, size}: status is 'assigned', 'empty' (nothing pending), or 'fenced'.

if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return {'fenced', 0}
end
local ready = key('ready', ARGV[6])
local popped = redis.call('ZPOPMIN', ready, tonumber(ARGV[2]))
local members, specs, requesters = {}, {}, {}
for i = 1, #popped, 2 do
  local member = popped[i]
  local _, _, _, domain, op_key = string.find(member, KEY.ready_member_pattern)
  local op = key('op', domain, op_key)
  if redis.call('HGET', op, 'status') == ITEM.PENDING then
    local attempt = redis.call('HINCRBY', op, 'attempts', 1)
    redis.call('HSET', op, 'status', ITEM.RUNNING, 'batch_id', ARGV[3], 'worker', ARGV[4],
      'started_at', ARGV[5])
    for _, waiter in ipairs(redis.call('LRANGE', key('waiters', domain, op_key), 0, -1)) do
      redis.call('HSET', waiter, 'status', ITEM.RUNNING, 'batch_id', ARGV[3],
        'worker', ARGV[4], 'started_at', ARGV[5])
      requesters[#requesters + 1] = waiter
    end
    members[#members + 1] = member
    specs[#specs + 1] = '{"domain":"' .. domain .. '","op_key":"' .. op_key ..
      '","attempt":' .. attempt .. ',"spec":' .. redis.call('HGET', op, 'spec') .. '}'
  end
end
if redis.call('ZCARD', ready) == 0 then
  redis.call('ZREM', KEY.ready_signatures, ARGV[6])
  forget_inputs(ARGV[6])
end
if #members == 0 then
  return {'empty', 0}
end
redis.call('HSET', KEYS[3], 'worker', ARGV[4], 'signature', ARGV[6], 'assigned_at', ARGV[5],
  'size', #members, 'members', table.concat(members, '\n'))
local log, requested = key('batch_log', ARGV[3]), key('batch_lineage', ARGV[3])
redis.call('HSET', log, 'worker', ARGV[4], 'signature', ARGV[6], 'assigned_at', ARGV[5],
  'size', #members, 'terms', ARGV[7])
redis.call('EXPIRE', log, tonumber(ARGV[8]))
if #requesters > 0 then
  for i = 1, #requesters, 1000 do  -- unpack has a stack limit
    redis.call('SADD', requested, unpack(requesters, i, math.min(i + 999, #requesters)))
  end
  redis.call('EXPIRE', requested, tonumber(ARGV[8]))
end
redis.call('XADD', KEYS[1], '*', 'batch_id', ARGV[3], 'signature', ARGV[6],
  'meta', redis.call('HGET', key('signature_meta', ARGV[6]), 'meta') or '{}',
  'items', '[' .. table.concat(specs, ',') .. ']')
redis.call('HINCRBY', KEYS[4], 'inflight', 1)
redis.call('HINCRBY', KEY.cluster_stats, 'claimed', #members)
return {'assigned', #members}
