-- claim_batch: take up to N items of one batch signature from the ready pool, mark them
-- running on one worker, record the batch, and put it on that worker's assignment
-- stream, all in one step. Only the holder of the scheduler lease may do it (fencing):
-- a scheduler that lost its lease cannot assign anything, even if it still runs.
--
-- KEYS: 1 ready zset of the signature, 2 ready signatures zset, 3 worker's assignment
--       stream, 4 scheduler lease, 5 batch hash, 6 cluster stats, 7 worker hash,
--       8 signature meta hash
-- ARGV: 1 fencing token, 2 max items, 3 batch id, 4 worker id, 5 now, 6 signature,
--       7 op key template (KeySpace.op_template)
-- Returns {status, size}: status is 'assigned', 'empty' (nothing pending), or 'fenced'.

if redis.call('GET', KEYS[4]) ~= ARGV[1] then
  return {'fenced', 0}
end
local popped = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[2]))
local members, specs = {}, {}
for i = 1, #popped, 2 do
  local member = popped[i]
  local _, _, domain, op_key = string.find(member, '^[^|]*|([^|]*)|(.*)$')
  local op = ARGV[7] .. domain .. ':' .. op_key
  if redis.call('HGET', op, 'status') == 'pending' then
    local attempt = redis.call('HINCRBY', op, 'attempts', 1)
    redis.call('HSET', op, 'status', 'running', 'batch_id', ARGV[3], 'worker', ARGV[4],
      'started_at', ARGV[5])
    for _, waiter in ipairs(redis.call('LRANGE', op .. ':waiters', 0, -1)) do
      redis.call('HSET', waiter, 'status', 'running', 'batch_id', ARGV[3],
        'worker', ARGV[4], 'started_at', ARGV[5])
    end
    members[#members + 1] = member
    specs[#specs + 1] = '{"domain":"' .. domain .. '","op_key":"' .. op_key ..
      '","attempt":' .. attempt .. ',"spec":' .. redis.call('HGET', op, 'spec') .. '}'
  end
end
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[6])
end
if #members == 0 then
  return {'empty', 0}
end
redis.call('HSET', KEYS[5], 'worker', ARGV[4], 'signature', ARGV[6], 'assigned_at', ARGV[5],
  'size', #members, 'members', table.concat(members, '\n'))
redis.call('XADD', KEYS[3], '*', 'batch_id', ARGV[3], 'signature', ARGV[6],
  'meta', redis.call('HGET', KEYS[8], 'meta') or '{}', 'items', '[' .. table.concat(specs, ',') .. ']')
redis.call('HINCRBY', KEYS[7], 'inflight', 1)
redis.call('HINCRBY', KEYS[6], 'claimed', #members)
return {'assigned', #members}
