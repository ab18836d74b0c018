"""Model weights on a worker: where they are on disk, and which are kept loaded.

``resolve_model`` turns a ``ModelRef`` into a local directory without ever touching the
network; ``WarmCache`` keeps loaded models in memory within a byte budget. Importing
this package imports neither torch nor transformers: a worker that only runs ``data.*``
kinds must stay light.
"""

from flowmesh_worker.weights.cache import WarmCache, nbytes_of
from flowmesh_worker.weights.resolve import MINILM_NAMES, resolve_model
from flowmesh_worker.weights.tiny import TINY_GPT, TINY_MODELS, TINY_REWARD, ensure_tiny_model

__all__ = [
    "MINILM_NAMES",
    "TINY_GPT",
    "TINY_MODELS",
    "TINY_REWARD",
    "WarmCache",
    "ensure_tiny_model",
    "nbytes_of",
    "resolve_model",
]
