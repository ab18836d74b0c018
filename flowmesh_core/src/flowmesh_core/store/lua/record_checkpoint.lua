-- record_checkpoint: index a checkpoint tree a worker stored, in one step: the tree like
-- any blob (the first record stays), the bytes of its files (what a worker that lacks it
-- fetches), and, for each file, that the tree lists it (so the tree's readers may read
-- it; rights.py).
--
-- ARGV: 1 tree digest, 2 the tree's size, 3 now, 4 the bytes of its files, 5.. its files
-- Returns 1.

local tree = ARGV[1]
redis.call('HSET', index_blob(tree, ARGV[2], 'application/json', ARGV[3]), 'tree_bytes', ARGV[4])
for i = 5, #ARGV do
  redis.call('SADD', key('blob_trees', ARGV[i]), tree)
end
return 1
