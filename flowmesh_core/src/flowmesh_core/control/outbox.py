"""The outbox consumer: acts on every node and workflow transition the ledger announced.

Every control-plane replica runs one, in the consumer group ``control`` on the outbox
stream (``KeySpace.outbox``), so each entry reaches one replica. Acting on an entry means
asking the engine to ``advance`` its workflow (the rules derive what is due from the
records, whatever the entry says); the entry is acknowledged only afterwards. A replica
that dies mid-way leaves its entries pending, and another adopts them after
``adopt_after_s``; one that fails to act (Redis or the blob store did not answer) leaves
them pending too and tries again at its next adoption round. Nothing is ever lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from flowmesh_core.control.engine import WorkflowEngine
from flowmesh_core.errors import ServiceUnavailableError
from flowmesh_core.store import Store, Transition, TransitionEvent

__all__ = ["OutboxConsumer"]

log = logging.getLogger("flowmesh.outbox")

_CHUNK = 256
"""Outbox entries read at once."""

_ANNOUNCEMENTS = frozenset(
    {
        Transition.NODE_DONE,
        Transition.WORKFLOW_DONE,
        Transition.WORKFLOW_FAILED,
        Transition.WORKFLOW_CANCELLED,
    }
)
"""Entries that ask nothing of the control plane: they announce what the step that acted
on another entry did (that entry stays pending until everything it led to is done), for
observers of the outbox."""


class OutboxConsumer:
    """Reads the outbox and advances the workflows its entries name."""

    def __init__(
        self,
        store: Store,
        engine: WorkflowEngine,
        *,
        consumer: str,
        adopt_after_s: float = 2.0,
    ) -> None:
        self.store = store
        self.engine = engine
        self.consumer = consumer
        self.adopt_after_s = adopt_after_s

    async def run(self, stop: asyncio.Event) -> None:
        """Act on entries until ``stop`` is set: first this consumer's own pending ones
        (a restart under the same name), then, now and then, those another consumer left
        (see the module docstring), and new ones as they come."""
        grouped = False
        pending = True
        adopted_at = 0.0
        while not stop.is_set():
            started = time.monotonic()
            try:
                if not grouped:
                    if await self.store.ensure_outbox_group() and not pending:
                        log.error(
                            "the outbox's consumer group was gone: Redis lost its data "
                            "(restarted without persistence, or failed over to an empty "
                            "replica); transitions announced before then were lost, new "
                            "ones are applied"
                        )
                    grouped = True
                if started - adopted_at > self.adopt_after_s:
                    await self.adopt()
                    adopted_at = started
                acted = await self.read_once(pending=pending, block_ms=250)
            except ServiceUnavailableError as exc:
                log.warning("outbox unavailable: %s", exc)
                grouped = False  # Redis may have lost the group with its data
                await asyncio.sleep(1.0)
                continue
            if pending and acted == 0:
                pending = False

    async def adopt(self) -> int:
        """Act on entries left unacknowledged for ``adopt_after_s`` by any consumer."""
        events = await self.store.adopt_outbox(
            self.consumer, idle_ms=int(self.adopt_after_s * 1000), count=_CHUNK
        )
        return await self.act(events)

    async def read_once(self, *, pending: bool = False, block_ms: int = 500) -> int:
        """Read one chunk (own pending entries, or new ones) and act on it."""
        events = await self.store.read_outbox(
            self.consumer, pending=pending, count=_CHUNK, block_ms=None if pending else block_ms
        )
        await self.act(events)
        return len(events)

    async def act(self, events: list[TransitionEvent]) -> int:
        """Advance each workflow named once, then acknowledge its entries; how many
        entries were acknowledged (a workflow whose advance failed keeps its own)."""
        by_workflow: dict[str, list[str]] = defaultdict(list)
        done: list[str] = []
        for event in events:
            if event.transition in _ANNOUNCEMENTS:
                done.append(event.entry_id)
            else:
                by_workflow[event.workflow].append(event.entry_id)
        for wf_id, entry_ids in by_workflow.items():
            try:
                if wf_id:
                    await self.engine.advance(wf_id)
            except ServiceUnavailableError as exc:
                log.warning("workflow %s: will retry: %s", wf_id, exc)
                continue
            done += entry_ids
        await self.store.ack_outbox(done)
        return len(done)
