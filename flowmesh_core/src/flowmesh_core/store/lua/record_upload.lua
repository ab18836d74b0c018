-- record_upload: make a tenant an owner of a stored, verified blob and index the blob,
-- counting its size against the tenant's upload quota, in one step. The index keeps
-- what the first upload recorded; a tenant that owns the blob already changes nothing
-- and is not counted again.
--
-- ARGV: 1 tenant, 2 digest, 3 size, 4 media type, 5 now, 6 the most bytes the tenant
-- may own (0: no limit)
-- Returns 1 if the tenant became an owner now, 0 if it was one, -1 if the blob would
-- take it past its limit (nothing changes).

local tenant, digest, size, limit = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[6])
local owners = key('blob_owners', digest)
if redis.call('SISMEMBER', owners, tenant) == 1 then
  return 0
end
local qk = key('quota', tenant)
if limit > 0 then
  local used = tonumber(redis.call('HGET', qk, 'upload_bytes') or '0')
  if used + size > limit then
    return -1
  end
end
index_blob(digest, size, ARGV[4], ARGV[5])  -- the first uploader's media type stays
redis.call('SADD', owners, tenant)
redis.call('SADD', key('tenant_uploads', tenant), digest)
redis.call('HINCRBY', qk, 'upload_bytes', size)
return 1
