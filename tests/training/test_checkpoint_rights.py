"""A checkpoint's files are covered by its tree's rights, and only by them (docs/isolation.md),
on every backend: a tenant whose lineage holds the tree reads its files; a tenant that
only knows (or uploaded) the tree's bytes, or nothing at all, gets the same answer for a
file as for a digest that names nothing."""

from __future__ import annotations

import pytest

from flowmesh_core.hashing import digest_bytes
from flowmesh_core.store import Store
from flowmesh_core.store.rights import ReadRight

pytestmark = pytest.mark.timeout(30)

TREE = digest_bytes(b"tree")
OTHER_TREE = digest_bytes(b"other tree")
FILES = [digest_bytes(b"config"), digest_bytes(b"weights")]
SHARED = digest_bytes(b"tokenizer")  # listed by both trees
UNKNOWN = digest_bytes(b"nothing")


async def holds(store: Store, tenant: str, digest: str) -> None:
    """``tenant``'s lineage holds ``digest`` (what ``complete`` writes)."""
    await store.redis.sadd(store.keys.tenant_results(tenant), digest)


async def test_a_trees_files_are_readable_by_its_holders_only(store: Store) -> None:
    await store.record_checkpoint(TREE, 120, [*FILES, SHARED], 3_000)
    await store.record_checkpoint(OTHER_TREE, 90, [SHARED], 1_000)
    await holds(store, "owner", TREE)
    await holds(store, "other", OTHER_TREE)
    # A tenant that uploaded the tree's exact bytes knows the files' digests; that
    # grants nothing over them.
    await store.record_upload("copycat", TREE, 120, "application/json")

    wanted = [*FILES, SHARED, UNKNOWN]
    assert await store.unreadable_for("owner", wanted) == [UNKNOWN]
    assert await store.unreadable_for("other", wanted) == [*FILES, UNKNOWN]
    assert await store.unreadable_for("copycat", wanted) == wanted
    assert await store.unreadable_for("stranger", wanted) == wanted
    assert await store.unreadable_for("copycat", [TREE]) == []  # its own upload


async def test_indexing_a_tree_is_idempotent_and_records_its_size(store: Store) -> None:
    for _ in range(2):
        await store.record_checkpoint(TREE, 120, FILES, 3_000)
    record = await store.blob(TREE)
    assert record is not None
    assert (record.size, record.media_type) == (120, "application/json")
    assert await store.redis.hget(store.keys.blob(TREE), "tree_bytes") == "3000"
    for digest in FILES:
        assert await store.redis.smembers(store.keys.blob_trees(digest)) == {TREE}


async def test_a_granted_trees_files_follow_the_grantors_lineage(store: Store) -> None:
    """A tree granted by a tenant whose lineage holds it covers its files for the grantee
    (as a grant: not passed on); a tree granted by a tenant that only uploaded it covers
    nothing, and neither does the grant once revoked."""
    await store.record_checkpoint(TREE, 120, FILES, 3_000)
    await holds(store, "owner", TREE)
    await store.record_upload("copycat", TREE, 120, "application/json")
    await store.grant_blob(TREE, "owner", "friend", 0)
    await store.grant_blob(TREE, "copycat", "mark", 0)

    assert await store.unreadable_for("friend", FILES) == []
    assert {await store.read_right("friend", f) for f in FILES} == {ReadRight.GRANT}
    assert {await store.read_right("owner", f) for f in FILES} == {ReadRight.LINEAGE}
    assert await store.unreadable_for("mark", FILES) == FILES
    assert await store.unreadable_for("mark", [TREE]) == []  # the tree itself, by grant

    await store.revoke_blob_grant(TREE, "owner", "friend")
    assert await store.unreadable_for("friend", [*FILES, TREE]) == [*FILES, TREE]


async def test_a_file_granted_and_in_its_own_trees_lineage_is_its_own_to_grant(
    store: Store,
) -> None:
    """A direct grant of a file does not hide the lineage right the tenant's own tree
    gives it: that tenant may grant the file on (docs/isolation.md, "Who may grant")."""
    await store.record_checkpoint(TREE, 120, FILES, 3_000)
    await holds(store, "owner", TREE)
    await store.record_upload("other", FILES[0], 10, "application/octet-stream")
    await store.grant_blob(FILES[0], "other", "owner", 0)
    assert await store.read_right("owner", FILES[0]) is ReadRight.LINEAGE
    assert await store.read_right("stranger", FILES[0]) is None
