"""What a worker reports while it loads a model: ``phase: loading`` on each of the batch's
items, renewed while the load lasts (a big model outlives one progress key), then nothing
more from the load (docs/architecture.md, "What a status says")."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from flowmesh_core.blobs import open_blob_store
from flowmesh_worker import runner as runner_module
from flowmesh_worker.runner import BatchRunner
from flowmesh_worker.weights import WarmCache


def test_a_long_load_is_reported_on_every_item_and_renewed_until_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "PHASE_RENEW_S", 0.05)
    runner = BatchRunner(
        open_blob_store(f"file://{tmp_path / 'blobs'}"),
        factory=lambda kind: None,  # type: ignore[arg-type,return-value]
        cache=WarmCache(1 << 20),
        model_dir=tmp_path,
        worker_id="w-1",
    )
    seen: list[tuple[str, str, dict[str, Any]]] = []
    runner.progress_sink = lambda domain, op_key, p: seen.append((domain, op_key, dict(p)))
    batch: Any = SimpleNamespace(
        items=[SimpleNamespace(domain="d", op_key=k) for k in ("k1", "k2")]
    )
    loading = {"phase": "loading", "model": "m"}
    with runner._reporting(batch, loading):
        time.sleep(0.3)  # the load
    after = len(seen)
    time.sleep(0.2)
    assert len(seen) == after  # the renewals stop with the load
    per_item = {k: [p for _d, key, p in seen if key == k] for k in ("k1", "k2")}
    assert all(len(reports) >= 3 for reports in per_item.values()), per_item  # now + renewals
    assert all(p == loading for reports in per_item.values() for p in reports)
