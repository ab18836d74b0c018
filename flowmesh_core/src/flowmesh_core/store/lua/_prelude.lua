-- The steps several transitions share (appended to the generated tables above).

local function key(name, ...)
  return string.format(KEY[name], ...)
end

-- Announce a transition on the outbox, in the same step that made it.
local function emit(event, workflow, node, err)
  redis.call('XADD', KEY.outbox, '*', 'event', event, 'workflow', workflow,
    'node', node or '', 'error', err or '')
end

-- One more item of a node has its result; the last one announces the node.
-- Returns true when this was the node's last item.
-- Tell clients waiting on a workflow (its events stream) what just happened to it.
local function notify(workflow, event, node)
  redis.call('XADD', key('workflow_events', workflow), 'MAXLEN', '~', 1000, '*',
    'event', event, 'node', node or '')
end

local function item_done(workflow, node)
  local nk = key('node', workflow, node)
  if redis.call('HEXISTS', nk, 'remaining') == 1 then
    if redis.call('HINCRBY', nk, 'remaining', -1) == 0 then
      emit(EVENT.NODE_ITEMS_DONE, workflow, node)
      return true
    end
  end
  return false
end

-- Move a tenant's count of items in flight (docs/isolation.md, "Quotas") by delta; it
-- never goes below 0 (counts from before quotas existed are not known).
local function count_in_flight(tenant, delta)
  local qk = key('quota', tenant)
  if redis.call('HINCRBY', qk, 'in_flight', delta) < 0 then
    redis.call('HSET', qk, 'in_flight', 0)
  end
end

-- Give back what a workflow's submission reserved for root items never started.
local function release_reserved(workflow, tenant)
  local wk = key('workflow', workflow)
  local reserved = tonumber(redis.call('HGET', wk, 'reserved') or '0')
  if reserved > 0 then
    redis.call('HSET', wk, 'reserved', 0)
    count_in_flight(tenant, -reserved)
  end
end

-- Index a blob ({p}:blob hash: size, media type, when first recorded). The first record
-- stays: every writer (uploads, results, manifests, checkpoint trees) goes through here,
-- so none overwrites what another recorded first. Returns the hash's key.
local function index_blob(digest, size, media, now)
  local blob = key('blob', digest)
  redis.call('HSETNX', blob, 'size', size)
  redis.call('HSETNX', blob, 'media_type', media)
  redis.call('HSETNX', blob, 'created_at', now)
  return blob
end

local function wake_scheduler()
  redis.call('LPUSH', KEY.wake, '1')
  redis.call('LTRIM', KEY.wake, 0, 15)
end

-- Bounds on a signature's data-locality figures, so a signature whose ready pool never
-- empties (and so never forgets them) keeps them small and recent: at most INPUTS_KEPT
-- blobs, the largest by bytes read, and once INPUTS_DECAY_AT items are counted every
-- figure is halved, so older items weigh half as much as newer ones, again and again.
local INPUTS_KEPT = 256
local INPUTS_DECAY_AT = 4096

local function decay_inputs(meta, inputs, items)
  local bytes = tonumber(redis.call('HGET', meta, 'input_bytes') or '0') or 0
  redis.call('HSET', meta, 'input_items', math.floor(items / 2),
    'input_bytes', math.floor(bytes / 2))
  if redis.call('EXISTS', inputs) == 1 then
    redis.call('ZUNIONSTORE', inputs, 1, inputs, 'WEIGHTS', 0.5)
  end
end

-- Count one created item towards its signature's data-locality figures: one more item,
-- and the indexed size ({p}:blob hash) of each blob it reads as a plain blob input (an
-- unindexed blob counts 0). The scheduler reads them back in round_view.
local function count_inputs(signature, spec)
  local meta = key('signature_meta', signature)
  local inputs = key('signature_inputs', signature)
  local items = redis.call('HINCRBY', meta, 'input_items', 1)
  if items >= INPUTS_DECAY_AT then
    decay_inputs(meta, inputs, items)
  end
  if not string.find(spec, '"kind":"blob"', 1, true) then
    return
  end
  local ok, decoded = pcall(cjson.decode, spec)
  if not ok or type(decoded) ~= 'table' or type(decoded.inputs) ~= 'table' then
    return
  end
  for _, input in pairs(decoded.inputs) do
    if type(input) == 'table' and input.kind == 'blob' and type(input.digest) == 'string' then
      local size = tonumber(redis.call('HGET', key('blob', input.digest), 'size') or '0') or 0
      if size > 0 then
        redis.call('HINCRBY', meta, 'input_bytes', size)
        redis.call('ZINCRBY', inputs, size, input.digest)
        redis.call('ZREMRANGEBYRANK', inputs, 0, -(INPUTS_KEPT + 1))
      end
    end
  end
end

-- A signature's ready pool emptied: its data-locality figures start afresh, so they
-- describe the items waiting rather than every item it ever had.
local function forget_inputs(signature)
  redis.call('HDEL', key('signature_meta', signature), 'input_items', 'input_bytes')
  redis.call('DEL', key('signature_inputs', signature))
end

-- Attach one requester (tenant, workflow, node, index) to an op key: a cache hit, a
-- join of the op in flight, or the creation of the op (into the ready pool).
-- r: {tenant, domain, workflow, node, index, now, op_key, signature, spec, sig_meta,
--     vcost}. Returns outcome, status, digest, node_done.
--
-- Ready-pool order is start-time fair queuing: each tenant has a virtual clock that
-- each of its items advances by r.vcost, and the system's virtual time is the start
-- tag of the item served next (the head of this signature's queue; now when empty). A
-- tenant's new item starts at max(virtual time, its clock): a tenant that enqueues
-- 10,000 items queues behind itself, and a newcomer interleaves with a backlog at once.
local function join_item(r)
  local lin = key('lineage', r.workflow, r.node, r.index)
  local prior = redis.call('HMGET', lin, 'op_key', 'status', 'result_digest')
  if prior[1] then
    if prior[1] ~= r.op_key then
      return JOIN.CONFLICT, prior[1], '', false
    end
    return JOIN.EXISTING, prior[2], prior[3] or '', false
  end
  local stats = key('tenant_stats', r.tenant)
  local function record(status, how)
    redis.call('HSET', lin, 'tenant', r.tenant, 'workflow', r.workflow, 'node', r.node,
      'index', r.index, 'op_key', r.op_key, 'status', status, 'satisfied_by', how,
      'requested_at', r.now)
    redis.call('ZADD', key('workflow_lineage', r.workflow), r.now, lin)
    redis.call('HINCRBY', stats, 'requested', 1)
  end

  local digest = redis.call('GET', key('action', r.domain, r.op_key))
  if digest then
    record(ITEM.DONE, HOW.CACHE_HIT)
    redis.call('HSET', lin, 'result_digest', digest, 'finished_at', r.now)
    redis.call('HINCRBY', stats, 'cache_hits', 1)
    redis.call('SADD', key('tenant_results', r.tenant), digest)
    return JOIN.CACHE_HIT, ITEM.DONE, digest, item_done(r.workflow, r.node)
  end

  local op = key('op', r.domain, r.op_key)
  local status = redis.call('HGET', op, 'status')
  if status then
    redis.call('RPUSH', key('waiters', r.domain, r.op_key), lin)
    record(status, HOW.JOINED)
    redis.call('HINCRBY', stats, 'joins', 1)
    count_in_flight(r.tenant, 1)
    return JOIN.JOINED, status, '', false
  end

  local ready = key('ready', r.signature)
  local now = tonumber(r.now)
  local head = redis.call('ZRANGE', ready, 0, 0, 'WITHSCORES')
  local vtime = now
  if head[2] then
    vtime = math.min(now, tonumber(head[2]))
  end
  local start = math.max(vtime, tonumber(redis.call('HGET', KEY.vclock, r.tenant) or '0'))
  local vstart = string.format('%.17g', start)
  local member = key('ready_member', r.tenant, r.domain, r.op_key)
  redis.call('HSET', KEY.vclock, r.tenant, string.format('%.17g', start + tonumber(r.vcost)))
  redis.call('HSET', op, 'status', ITEM.PENDING, 'spec', r.spec, 'creator', lin,
    'created_at', r.now, 'attempts', 0, 'signature', r.signature, 'member', member,
    'vstart', vstart)
  redis.call('RPUSH', key('waiters', r.domain, r.op_key), lin)
  redis.call('ZADD', KEY.inflight, r.now, key('inflight_member', r.domain, r.op_key))
  redis.call('ZADD', ready, vstart, member)
  redis.call('ZADD', KEY.ready_signatures, 'NX', r.now, r.signature)
  local meta = key('signature_meta', r.signature)
  if redis.call('EXISTS', meta) == 0 then
    redis.call('HSET', meta, 'meta', r.sig_meta)
  end
  count_inputs(r.signature, r.spec)
  record(ITEM.PENDING, HOW.EXECUTED)
  redis.call('HINCRBY', stats, 'created', 1)
  count_in_flight(r.tenant, 1)
  return JOIN.CREATED, ITEM.PENDING, '', false
end

-- Is the workflow's (or a node's) status final?
local function final(status)
  return status == NODE.DONE or status == NODE.FAILED or status == NODE.CANCELLED
end

-- A tenant's fair-share usage: worker-seconds that halve every half_life seconds, kept
-- as a value in KEY.usage as of the time in KEY.usage_at (docs/architecture.md,
-- "Scheduling rounds and fair share"). value_at is that value at a later time; a time
-- before the stored one (clocks of two control planes disagree) decays nothing, so
-- usage never grows by being read.
local function value_at(value, since, now, half_life)
  if now <= since then
    return value
  end
  return value * 2 ^ ((since - now) / half_life)
end

-- Charge a tenant `seconds` of work finished at `now`. The stored value and the new
-- charge are each decayed from their own time to the later of the two, so reports that
-- arrive out of order add up to what they would in order.
local function charge_usage(tenant, seconds, now, half_life)
  seconds, now, half_life = tonumber(seconds), tonumber(now), tonumber(half_life)
  if seconds <= 0 then
    return
  end
  local value = tonumber(redis.call('HGET', KEY.usage, tenant) or '0')
  local since = tonumber(redis.call('HGET', KEY.usage_at, tenant) or now)
  local at = math.max(since, now)
  value = value_at(value, since, at, half_life) + value_at(seconds, now, at, half_life)
  redis.call('HSET', KEY.usage, tenant, string.format('%.17g', value))
  redis.call('HSET', KEY.usage_at, tenant, string.format('%.17g', at))
end
