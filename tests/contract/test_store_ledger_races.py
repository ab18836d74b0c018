"""The ledger's node and workflow transitions raced against themselves (STYLE habit 6),
on every backend: 50 concurrent calls through five connections, and each applies once.

Also the rule the ledger's scripts keep: they name no key and spell no status word
themselves (both come from the generated prelude, see store/_lua.py).
"""

from __future__ import annotations

import asyncio
import re
from importlib import resources

import pytest

from flowmesh_core.hashing import digest_bytes
from flowmesh_core.models import Item, ItemStatus, Requester, Satisfaction
from flowmesh_core.models.api import NodeState
from flowmesh_core.store import JoinOutcome, Store, Transition
from tests.contract.test_store_scheduling import DOMAIN, make_item

RACERS = 50
DIGEST = digest_bytes(b"node result")


async def announced(store: Store) -> list[str]:
    return [f["event"] for _, f in await store.redis.xrange(store.keys.outbox())]


async def test_racing_starts_of_one_node_start_it_once(clients: list[Store]) -> None:
    store = clients[0]
    await store.submit_workflow("wf", "acme", "", "{}", ["embed"])
    items = [make_item() for _ in range(4)]
    starts = await asyncio.gather(
        *(
            clients[i % 5].start_node("acme", DOMAIN, "wf", "embed", "k" * 64, items, batched=True)
            for i in range(RACERS)
        )
    )
    assert sum(s.started for s in starts) == 1
    assert [s.created for s in starts if s.started] == [4]
    lineage = await store.lineage("wf")
    assert sorted(r.index for r in lineage) == [0, 1, 2, 3]
    assert {r.satisfied_by for r in lineage} == {Satisfaction.EXECUTED}
    assert int(await store.redis.hget(store.keys.node("wf", "embed"), "remaining")) == 4
    assert len(await store.inflight()) == 4


async def test_racing_finishes_of_one_node_finish_it_and_its_workflow_once(
    clients: list[Store],
) -> None:
    store = clients[0]
    await store.submit_workflow("wf", "acme", "", "{}", ["embed"])
    item = make_item()
    await store.start_node("acme", DOMAIN, "wf", "embed", item.op_key, [item], batched=False)
    await store.complete(DOMAIN, item.op_key, DIGEST)
    outcomes = await asyncio.gather(
        *(clients[i % 5].finish_node("wf", "embed", DIGEST) for i in range(RACERS))
    )
    assert sum(node for node, _ in outcomes) == 1
    assert sum(workflow for _, workflow in outcomes) == 1
    events = await announced(store)
    assert events.count(Transition.NODE_DONE) == 1
    assert events.count(Transition.WORKFLOW_DONE) == 1
    state = await store.workflow("wf")
    assert state is not None
    assert state.status == NodeState.DONE
    assert await store.may_read("acme", DIGEST)


async def test_racing_failures_fail_the_workflow_once_and_a_late_finish_changes_nothing(
    clients: list[Store],
) -> None:
    store = clients[0]
    await store.submit_workflow("wf", "acme", "", "{}", ["gen", "score"])
    item = make_item()
    await store.start_node("acme", DOMAIN, "wf", "gen", item.op_key, [item], batched=False)
    failed = await asyncio.gather(
        *(clients[i % 5].fail_nodes("wf", "gen", f"boom {i}", ["score"]) for i in range(RACERS))
    )
    assert sum(failed) == 1
    assert (await announced(store)).count(Transition.WORKFLOW_FAILED) == 1
    assert await store.finish_node("wf", "gen", DIGEST) == (False, False)
    records = await store.node_records("wf", ["gen", "score"])
    assert [records[n]["state"] for n in ("gen", "score")] == ["failed", "failed"]
    assert records["score"]["error"].startswith("upstream node 'gen' failed: boom")


async def test_racing_submissions_with_one_idempotency_key_store_one(
    clients: list[Store],
) -> None:
    outcomes = await asyncio.gather(
        *(
            clients[i % 5].submit_workflow(f"wf{i}", "acme", "", "{}", ["a"], idempotency_key="k")
            for i in range(RACERS)
        )
    )
    created = [i for i, o in enumerate(outcomes) if o is None]
    assert len(created) == 1
    assert set(outcomes) - {None} == {f"wf{created[0]}"}
    assert await clients[0].tenant_workflows("acme") == [f"wf{created[0]}"]


async def test_a_join_that_finishes_a_node_with_a_cache_hit_announces_it(store: Store) -> None:
    item: Item = make_item()
    await store.join_or_create(
        DOMAIN, Requester(tenant="acme", workflow="warm", node="embed"), item
    )
    await store.complete(DOMAIN, item.op_key, DIGEST)
    await store.submit_workflow("wf", "acme", "", "{}", ["embed"])
    start = await store.start_node("acme", DOMAIN, "wf", "embed", "k" * 64, [item], batched=True)
    assert (start.cache_hits, start.done) == (1, True)
    assert (await announced(store)).count(Transition.NODE_ITEMS_DONE) == 1
    (record,) = await store.lineage("wf")
    assert (record.status, record.satisfied_by) == (ItemStatus.DONE, Satisfaction.CACHE_HIT)


_SCRIPTS = resources.files("flowmesh_core.store").joinpath("lua")
_WORDS = {
    str(w) for enum in (ItemStatus, Satisfaction, NodeState, JoinOutcome, Transition) for w in enum
}


@pytest.mark.parametrize(
    "name", sorted(p.name for p in _SCRIPTS.iterdir() if p.name.endswith(".lua"))
)
def test_a_script_spells_no_status_word_and_builds_no_key(name: str) -> None:
    source = _SCRIPTS.joinpath(name).read_text()
    code = "\n".join(line.split("--", 1)[0] for line in source.splitlines())
    code = _COUNTER.sub("", code)  # a counter's field name ('executed') is not a status
    literals = set(re.findall(r"'([^']*)'", code)) | set(re.findall(r'"([^"]*)"', code))
    assert not literals & _WORDS, f"{name} spells {literals & _WORDS}: use the prelude's tables"
    pieces = [lit for lit in literals if _KEY_PIECE.match(lit)]
    assert not pieces, f"{name} builds a key from {pieces}: use key(...)"


_COUNTER = re.compile(r"'HINCRBY(FLOAT)?', [^,]+, '\w+'")
_KEY_PIECE = re.compile(r"^[\w{}|-]*:[\w{}|:-]*$")
"""A literal made of name characters and a ':' (``':waiters'``, ``'fm:op:'``)."""


async def test_racing_cancels_against_completions_settle_every_item_once(
    clients: list[Store],
) -> None:
    """Cancels of one workflow raced with the completions of its items (and another
    workflow's join of one of them): the workflow is cancelled once, each item is either
    done (its result came first) or cancelled and charged nothing, the other requester
    always gets its result, and the tenant's in-flight count comes back to zero."""
    store = clients[0]
    await store.submit_workflow("wf", "acme", "", "{}", ["embed"], domain=DOMAIN)
    await store.submit_workflow("other", "beta", "", "{}", ["embed"], domain=DOMAIN)
    items = [make_item() for _ in range(8)]
    await store.start_node("acme", DOMAIN, "wf", "embed", "k" * 64, items, batched=True)
    await store.start_node("beta", DOMAIN, "other", "embed", "j" * 64, items[:1], batched=True)
    assert await store.in_flight("acme") == 8
    cancels = [clients[i % 5].cancel_workflow("wf", "acme") for i in range(RACERS)]
    completions = [
        clients[i % 5].complete(DOMAIN, item.op_key, DIGEST, worker_seconds=2.0)
        for i, item in enumerate(items)
    ]
    outcomes = await asyncio.gather(*cancels, *completions)
    assert sum(1 for o in outcomes[:RACERS] if o is not None and o.cancelled) == 1
    assert (await announced(store)).count(Transition.WORKFLOW_CANCELLED) == 1
    for record in await store.lineage("wf"):
        assert record.status in (ItemStatus.DONE, ItemStatus.CANCELLED)
        if record.status is ItemStatus.CANCELLED:
            assert record.worker_seconds == 0
            assert record.result_digest is None
    (theirs,) = await store.lineage("other")
    assert theirs.status is ItemStatus.DONE
    assert await store.in_flight("acme") == 0
    assert await store.in_flight("beta") == 0
    assert await store.inflight() == []
    state = await store.workflow("wf")
    assert state is not None
    assert state.status == NodeState.CANCELLED
