"""The ``embed`` kind: a sentence embedding per text, with sentence-transformers.

Each item is one element of the operator's ``texts``: a string, or with the ``field``
param an object whose ``field`` holds the string (so ``embed`` can take the objects that
``llm.generate`` outputs, with ``field: completion``). All texts of a batch are encoded
in one call. This module must never pick the normalization itself: it is the ``normalize``
param's, even for a model whose pipeline ends in a Normalize module (that module is
dropped at load and normalization applied on request instead).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from flowmesh_core.models import ModelRef
from flowmesh_worker.executors.base import Batch, Executor, ItemError, Loaded
from flowmesh_worker.weights.cache import nbytes_of

__all__ = ["EmbedExecutor"]


class EmbedExecutor(Executor):
    """Embeds texts with a SentenceTransformer; one ``list[float]`` per item."""

    kind: ClassVar[str] = "embed"
    needs_model: ClassVar[bool] = True

    def load(self, path: Path, model: ModelRef) -> Loaded:
        from sentence_transformers import SentenceTransformer

        try:
            from sentence_transformers.sentence_transformer.modules import Normalize
        except ImportError:  # sentence-transformers < 6
            from sentence_transformers.models import Normalize  # type: ignore[no-redef]

        encoder = SentenceTransformer(str(path), device=self.device, local_files_only=True)
        while len(encoder) > 1 and isinstance(encoder[len(encoder) - 1], Normalize):
            del encoder[len(encoder) - 1]
        encoder.eval()
        # One batch at a time per loaded model: run() changes max_seq_length for the
        # length of one encode call, and a Rust tokenizer fails when two threads share it.
        return Loaded(model=encoder, nbytes=nbytes_of(encoder), extra={"lock": threading.Lock()})

    def run(self, batch: Batch, loaded: Loaded | None) -> list[Any]:
        assert loaded is not None, "embed needs a model"
        field = batch.params.get("field")
        texts: list[str | ItemError] = [_text_of(item.inputs, field) for item in batch.items]
        valid = [text for text in texts if isinstance(text, str)]
        vectors = self._encode(loaded, valid, batch.params) if valid else []
        found = iter(vectors)
        return [text if isinstance(text, ItemError) else next(found) for text in texts]

    def _encode(
        self, loaded: Loaded, texts: list[str], params: Mapping[str, Any]
    ) -> list[list[float]]:
        import torch

        encoder = loaded.model
        max_seq_length = params.get("max_seq_length")
        with loaded.extra["lock"], torch.inference_mode():
            default_length = encoder.max_seq_length
            if max_seq_length is not None:
                encoder.max_seq_length = _within_model(encoder, int(max_seq_length))
            try:
                vectors = encoder.encode(
                    texts,
                    batch_size=len(texts),
                    normalize_embeddings=bool(params.get("normalize", True)),
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            finally:
                encoder.max_seq_length = default_length
        rows: list[list[float]] = vectors.tolist()
        return rows


def _within_model(encoder: Any, length: int) -> int:
    """``length``, cut to the positions the underlying transformer has (a longer input
    would fail the whole batch). The tokenizer's ``model_max_length`` cannot tell:
    sentence-transformers keeps it equal to ``max_seq_length``."""
    config = getattr(getattr(encoder[0], "auto_model", None), "config", None)
    limit = getattr(config, "max_position_embeddings", None)
    return min(length, limit) if isinstance(limit, int) else length


def _text_of(inputs: Mapping[str, Any], field: str | None) -> str | ItemError:
    element = inputs.get("texts")
    if field is None:
        if isinstance(element, str):
            return element
        hint = (
            "; to embed one field of an object, set the 'field' param (e.g. field: completion)"
            if isinstance(element, dict)
            else ""
        )
        return ItemError(
            f"embed: each text must be a string, got {_describe(element)}{hint}", deterministic=True
        )
    if not isinstance(element, dict):
        return ItemError(
            f"embed: with field {field!r} each text must be an object holding that key, "
            f"got {_describe(element)}; drop the 'field' param to embed plain strings",
            deterministic=True,
        )
    if field not in element:
        return ItemError(
            f"embed: the object has no key {field!r} (it has: {', '.join(sorted(element))}); "
            "set the 'field' param to the key that holds the text",
            deterministic=True,
        )
    text = element[field]
    if not isinstance(text, str):
        return ItemError(
            f"embed: field {field!r} must hold a string, got {_describe(text)}; "
            "set the 'field' param to the key that holds the text",
            deterministic=True,
        )
    return text


def _describe(value: Any) -> str:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{type(value).__name__} {shown}"
