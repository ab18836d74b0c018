-- join_or_create: attach one requester to an op key, atomically (see join_item in the
-- prelude). Re-submitting the same requester is a no-op that reports where it stands.
--
-- ARGV: 1 tenant, 2 domain, 3 workflow, 4 node, 5 index, 6 now, 7 op key, 8 signature,
--       9 item spec (JSON), 10 signature meta (JSON), 11 virtual cost of one item
-- Returns {outcome, status, digest, node_done}; on a conflict, status holds the op key
-- the requester asked for before. node_done is 1 when this call finished the node.

local outcome, status, digest, node_done = join_item({
  tenant = ARGV[1], domain = ARGV[2], workflow = ARGV[3], node = ARGV[4], index = ARGV[5],
  now = ARGV[6], op_key = ARGV[7], signature = ARGV[8], spec = ARGV[9], sig_meta = ARGV[10],
  vcost = ARGV[11]})
if outcome == JOIN.CREATED then
  wake_scheduler()
end
return {outcome, status, digest, node_done and 1 or 0}
