"""What an executor is: the code that runs one batch of one kind.

An executor receives a ``Batch`` whose inputs are already resolved (blob references read
from the CAS) and returns one outcome per item, in order: a JSON-able value, an
``ItemError`` for an item that failed on its own, or a ``Checkpoint`` (a model directory
the executor wrote, which the worker stores in the CAS as a tree of file blobs).
Raising fails the whole batch; the worker then runs the items one at a time to find the
one to blame, so an executor never has to guess which item broke a batched call.

Executors that need weights implement ``load`` (called through the worker's warm-model
cache, never per batch) and get the loaded object back in ``run``. An executor must never
touch Redis or the CAS: what goes in and out is the worker's business.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from flowmesh_core.models import ModelRef

__all__ = [
    "Batch",
    "Checkpoint",
    "Executor",
    "ItemError",
    "Loaded",
    "Resumable",
    "WorkItem",
]


class Resumable(Protocol):
    """Where a long item keeps its intermediate state (``train.*``): ``save`` stores a
    trainer checkpoint directory as the item's latest, ``latest`` fetches the latest one
    (if any) into ``into`` and says at which step it was taken."""

    def save(self, directory: Path, step: int) -> None: ...

    def latest(self, into: Path) -> tuple[Path, int] | None: ...


@dataclass(frozen=True)
class WorkItem:
    """One item to compute: its resolved inputs and its own (normalized) params.

    ``report``, when set, takes how far a long item is (``step``, ``steps``, ``loss``,
    ``eta_s``); the worker shows it in workflow status. Cheap to call, never raises.
    """

    op_key: str
    inputs: Mapping[str, Any]
    params: Mapping[str, Any]
    sample_index: int | None = None
    report: Callable[[Mapping[str, Any]], None] | None = field(default=None, compare=False)
    checkpoints: Resumable | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Batch:
    """Items that share kind, version, model and every param the executor cannot vary."""

    kind: str
    version: str
    model: ModelRef | None
    items: Sequence[WorkItem]

    @property
    def params(self) -> Mapping[str, Any]:
        """The params of the first item (the signature params are the same for all)."""
        return self.items[0].params if self.items else {}


@dataclass(frozen=True)
class ItemError:
    """An item that failed on its own; ``message`` goes into every requester's lineage.

    ``deterministic`` says the item would fail the same way on any worker (its inputs or
    params are what is wrong), so it is failed at once rather than retried; raising
    ``flowmesh_core.errors.ItemRejectedError`` for one item means the same.
    """

    message: str
    deterministic: bool = False


@dataclass(frozen=True)
class Checkpoint:
    """A trained model directory to store as a checkpoint tree (``flowmesh_core.checkpoint``).

    ``scratch`` is the directory to delete once the files are stored (``directory`` or a
    folder above it); the worker owns it from the moment the executor returns.
    """

    directory: Path
    scratch: Path
    format: Literal["full", "lora"]
    base: ModelRef | None
    metrics: Mapping[str, Any]


@dataclass
class Loaded:
    """Weights in memory: the object ``run`` gets, and what it costs to keep it warm."""

    model: Any
    nbytes: int
    extra: dict[str, Any] = field(default_factory=dict)


class Executor(ABC):
    """Runs batches of one kind. Instances are created once per worker and reused."""

    kind: ClassVar[str]
    needs_model: ClassVar[bool] = False

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def load(self, path: Path, model: ModelRef) -> Loaded:
        """Load the weights at ``path`` (a local directory) for ``model``."""
        raise NotImplementedError(f"kind {self.kind!r} takes no model")

    @abstractmethod
    def run(self, batch: Batch, loaded: Loaded | None) -> list[Any]:
        """One outcome per item of ``batch``, in order: a JSON-able value, an ItemError or
        a Checkpoint."""
