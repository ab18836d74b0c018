-- round_view: what one scheduling round reads, in one step (one round trip, one
-- consistent snapshot): the fleet, the ready pool with what each signature means, and
-- every tenant's fair-share usage. Reads only.
--
-- ARGV: 1 head (members listed per signature), 2 now, 3 fairness half-life in seconds,
--       4 input blobs listed per signature
-- Returns {workers, pool, usage}:
--   workers: per registered worker with a profile, {profile, heartbeat, warm, inflight,
--            draining, held} (nil where a field is missing);
--   pool:    per signature with items waiting, {signature, count, {member, score, ...},
--            meaning, tree_bytes} with the first `head` members, oldest start time
--            first, the signature's stored meaning (JSON; '' if none) and, when its model
--            is a checkpoint digest whose size is indexed, the bytes of that checkpoint's
--            files ('' otherwise: a named model, or a tree no worker stored);
--            then input_items, input_bytes ('' when unknown) and the largest input
--            blobs its waiting items read, {digest, bytes, ...} (see count_inputs);
--   usage:   tenant, usage decayed to now, ... (flat)

-- The indexed size of the checkpoint a signature's meaning names as its model, or ''.
local function tree_bytes(meaning)
  if meaning == '' then
    return ''
  end
  local ok, decoded = pcall(cjson.decode, meaning)
  local model = ok and type(decoded) == 'table' and decoded.model
  if type(model) ~= 'table' or type(model.digest) ~= 'string' then
    return ''
  end
  return redis.call('HGET', key('blob', model.digest), 'tree_bytes') or ''
end

local head, now, half_life = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local listed = tonumber(ARGV[4])

-- One redis.call per worker is most of this script's time: add nothing per field.
local workers, n = {}, 0
for _, id in ipairs(redis.call('ZRANGE', KEY.workers, 0, -1)) do
  local fields = redis.call('HMGET', key('worker', id),
    'profile', 'heartbeat', 'warm', 'inflight', 'draining', 'held')
  if fields[1] then
    n = n + 1
    workers[n] = fields
  end
end

local pool = {}
for _, signature in ipairs(redis.call('ZRANGE', KEY.ready_signatures, 0, -1)) do
  local ready = key('ready', signature)
  local count = redis.call('ZCARD', ready)
  if count > 0 then
    local members = redis.call('ZRANGE', ready, 0, head - 1, 'WITHSCORES')
    local meta = redis.call('HMGET', key('signature_meta', signature),
      'meta', 'input_items', 'input_bytes')
    local meaning, inputs = meta[1] or '', {}
    if meta[3] then
      inputs = redis.call('ZREVRANGE', key('signature_inputs', signature), 0, listed - 1,
        'WITHSCORES')
    end
    table.insert(pool, {signature, count, members, meaning, tree_bytes(meaning),
      meta[2] or '', meta[3] or '', inputs})
  end
end

local usage = {}
local raw = redis.call('HGETALL', KEY.usage)
for i = 1, #raw, 2 do
  local tenant = raw[i]
  local since = tonumber(redis.call('HGET', KEY.usage_at, tenant) or now)
  local value = value_at(tonumber(raw[i + 1]), since, now, half_life)
  table.insert(usage, tenant)
  table.insert(usage, string.format('%.17g', value))
end

return {workers, pool, usage}
