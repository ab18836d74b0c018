-- grant_blob: grantor lets grantee read a blob, in one step. Per (digest, grantee) the
-- grants are a set of grantors, so each grantor's grant stands on its own; the digest
-- joins the grantee's granted set with the first grant, and the grant is counted among
-- the grantor's grants (its quota) in the same step. The caller has checked that the
-- grantor may grant the digest.
--
-- ARGV: 1 digest, 2 grantor, 3 grantee, 4 the most grants the grantor may hold (0: no limit)
-- Returns 1 if the grant is new, 0 if the grantor had made it before (nothing changes),
-- -1 if the grantor holds its limit of grants already (nothing changes).

local digest, grantor, grantee, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local made = key('tenant_grants', grantor)
local member = key('grant_member', digest, grantee)
if redis.call('SISMEMBER', made, member) == 1 then
  return 0
end
if limit > 0 and redis.call('SCARD', made) >= limit then
  return -1
end
redis.call('SADD', made, member)
redis.call('SADD', key('blob_grantors', digest, grantee), grantor)
redis.call('SADD', key('blob_grantees', digest), grantee)
redis.call('SADD', key('tenant_granted', grantee), digest)
return 1
