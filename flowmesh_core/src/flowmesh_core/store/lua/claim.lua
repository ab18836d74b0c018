-- claim: move an op from pending to running on one worker, atomically, and tell every
-- waiting requester's lineage which batch and worker took it.
--
-- KEYS: 1 op hash, 2 op waiters, 3 cluster stats
-- ARGV: 1 batch id, 2 worker, 3 now
-- Returns the attempt number (1 for the first run), or 0 if the op is not pending
-- (already running elsewhere, completed, failed or unknown).

if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then
  return 0
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'batch_id', ARGV[1], 'worker', ARGV[2],
  'started_at', ARGV[3])
for _, waiter in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  redis.call('HSET', waiter, 'status', 'running', 'batch_id', ARGV[1], 'worker', ARGV[2],
    'started_at', ARGV[3])
end
redis.call('HINCRBY', KEYS[3], 'claimed', 1)
return attempt
