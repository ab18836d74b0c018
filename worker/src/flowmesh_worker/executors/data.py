"""The ``data.*`` executors: cheap CPU transforms over JSON values.

``data.template`` renders one string per record; ``data.filter``, ``data.dedup`` and
``data.top_k`` and ``data.pairs`` each take whole lists (one item per operator) and
return a list. Input a
transform cannot use (a missing field, lists of unequal length, a score that is not a
number) fails that item with a message naming what to fix, never the batch.

These executors must never evaluate anything that comes from a request: a template names
plain fields only, so ``{0.__class__}`` or ``{text.__globals__}`` is refused, not followed
into Python's internals. They never mutate their inputs either: the worker may run the
same items again, one at a time.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from flowmesh_core.hashing import canonical_json
from flowmesh_worker.executors.base import Batch, Executor, ItemError, Loaded, WorkItem

__all__ = [
    "DedupExecutor",
    "FilterExecutor",
    "PairsExecutor",
    "TemplateExecutor",
    "TopKExecutor",
    "make_pairs",
]

MAX_FORMAT_NUMBER = 4096
"""The largest width or precision a template's format spec may ask for (``{x:>9999999999}``
would otherwise make a worker allocate gigabytes)."""


class _Rejected(ValueError):
    """An item's input or params that the transform cannot use; becomes an ItemError."""


def _each(batch: Batch, compute: Callable[[WorkItem], Any]) -> list[Any]:
    outcomes: list[Any] = []
    for item in batch.items:
        try:
            outcomes.append(compute(item))
        except _Rejected as exc:
            outcomes.append(ItemError(f"{batch.kind}: {exc}", deterministic=True))
    return outcomes


_JSON_TYPES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}


def _describe(value: Any) -> str:
    """What a JSON value is, in the words of its author (``an object``, not ``dict``)."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


# ---------------------------------------------------------------------------- template


@dataclass(frozen=True)
class _Field:
    name: str
    conversion: str | None
    spec: str


_Piece = str | _Field
_CONVERSIONS: Mapping[str, Callable[[object], str]] = {"r": repr, "s": str, "a": ascii}


@lru_cache(maxsize=64)
def _compile(template: str) -> tuple[_Piece, ...]:
    """The template as literal text and plain-name fields; raises _Rejected otherwise."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise _Rejected(
            f"malformed template ({exc}); write a literal brace as {{{{ or }}}}"
        ) from exc
    pieces: list[_Piece] = []
    for literal, name, spec, conversion in parsed:
        if literal:
            pieces.append(literal)
        if name is None:
            continue
        _check_field(name, conversion, spec or "")
        pieces.append(_Field(name, conversion, spec or ""))
    return tuple(pieces)


def _check_field(name: str, conversion: str | None, spec: str) -> None:
    if not name.isidentifier():
        raise _Rejected(
            f"template field {{{name}}} is not a plain name: fields name a record's keys "
            "(like {title}, or {text} for string records); positions, attributes and "
            "indexes ({0}, {x.attr}, {x[0]}) are not allowed"
        )
    if conversion is not None and conversion not in _CONVERSIONS:
        raise _Rejected(
            f"template field {{{name}!{conversion}}} has an unknown conversion; use !r, !s or !a"
        )
    if "{" in spec or "}" in spec:
        raise _Rejected(
            f"template field {{{name}:{spec}}} has a field inside its format spec; "
            "write the format spec out literally"
        )
    # The length test first: int() refuses strings of more than 4300 digits.
    too_big = [n for n in re.findall(r"\d+", spec) if len(n) > 9 or int(n) > MAX_FORMAT_NUMBER]
    if too_big:
        raise _Rejected(
            f"template field {{{name}:{spec}}} asks for width or precision {too_big[0]}, "
            f"over the limit of {MAX_FORMAT_NUMBER}"
        )


def _fields_of(record: Any) -> Mapping[str, Any]:
    if isinstance(record, dict):
        return record
    if isinstance(record, str):
        return {"text": record}
    raise _Rejected(
        f"a record must be an object (its keys are the template's fields) or a string "
        f"(used as {{text}}), got {_describe(record)}"
    )


def _render(pieces: tuple[_Piece, ...], record: Any) -> str:
    fields = _fields_of(record)
    out: list[str] = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
            continue
        if piece.name not in fields:
            has = ", ".join(sorted(fields)) or "none"
            raise _Rejected(
                f"the record has no field {piece.name!r}, which the template uses as "
                f"{{{piece.name}}}; the record's fields: {has}"
            )
        value = fields[piece.name]
        if piece.conversion is not None:
            value = _CONVERSIONS[piece.conversion](value)
        try:
            out.append(format(value, piece.spec))
        except (TypeError, ValueError) as exc:
            raise _Rejected(
                f"cannot format field {piece.name!r} with {piece.spec!r}: {exc}"
            ) from exc
    return "".join(out)


class TemplateExecutor(Executor):
    """``data.template``: ``params.template`` rendered with one record's fields.

    The semantics are ``str.format_map``'s for plain field names: conversions (``!r``) and
    literal format specs (``:>10``) work, values render as Python's ``format`` renders
    them (a JSON ``null`` as ``None``). A string record is the field ``text``.
    """

    kind: ClassVar[str] = "data.template"

    def run(self, batch: Batch, loaded: Loaded | None) -> list[Any]:
        def render(item: WorkItem) -> str:
            pieces = _compile(str(item.params["template"]))
            return _render(pieces, item.inputs["records"])

        return _each(batch, render)


# ------------------------------------------------------------------- lists and scores


def _list_input(item: WorkItem, name: str) -> list[Any]:
    value = item.inputs.get(name)
    if not isinstance(value, list):
        raise _Rejected(f"input {name!r} must be a list, got {_describe(value)}")
    return value


def _score_of(index: int, entry: Any) -> float:
    value = entry.get("score") if isinstance(entry, dict) else entry
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Rejected(
            f"scores[{index}] is {_describe(entry)}; each score must be a number or an "
            'object with a numeric "score"'
        )
    return float(value)


def _scored(item: WorkItem) -> tuple[list[Any], list[float]]:
    """The ``items`` input and one number per item from the ``scores`` input."""
    items = _list_input(item, "items")
    scores = _list_input(item, "scores")
    if len(items) != len(scores):
        raise _Rejected(
            f"'items' has {len(items)} entries but 'scores' has {len(scores)}; "
            "they must pair up one to one"
        )
    return items, [_score_of(i, entry) for i, entry in enumerate(scores)]


class FilterExecutor(Executor):
    """``data.filter``: the items whose score lies within [min_score, max_score], in order.

    A bound left unset (null) is open. Both bounds are inclusive.
    """

    kind: ClassVar[str] = "data.filter"

    def run(self, batch: Batch, loaded: Loaded | None) -> list[Any]:
        return _each(batch, self._filter)

    @staticmethod
    def _filter(item: WorkItem) -> list[Any]:
        low, high = item.params.get("min_score"), item.params.get("max_score")
        if low is not None and high is not None and low > high:
            raise _Rejected(f"min_score {low} is above max_score {high}, so nothing could pass")
        items, scores = _scored(item)
        return [
            element
            for element, score in zip(items, scores, strict=True)
            if (low is None or score >= low) and (high is None or score <= high)
        ]


class TopKExecutor(Executor):
    """``data.top_k``: the ``k`` items with the highest (``descending``) or lowest scores.

    Best first; equal scores keep their original order. Fewer than ``k`` items: all of them.
    """

    kind: ClassVar[str] = "data.top_k"

    def run(self, batch: Batch, loaded: Loaded | None) -> list[Any]:
        return _each(batch, self._top_k)

    @staticmethod
    def _top_k(item: WorkItem) -> list[Any]:
        items, scores = _scored(item)
        k = int(item.params["k"])
        # sorted() is stable, with reverse=True too: ties stay in their original order.
        order = sorted(
            range(len(items)), key=scores.__getitem__, reverse=bool(item.params["descending"])
        )
        return [items[i] for i in order[:k]]


# ------------------------------------------------------------------------------ dedup


class DedupExecutor(Executor):
    """``data.dedup``: the items whose text was not seen before, first occurrence kept.

    An item's text is the item itself when it is a string, else its ``params.field``
    (which every object must have). With no field set, non-string items are compared
    whole, by their canonical JSON. ``case_sensitive: false`` compares text with
    ``str.casefold``; items compared whole are compared exactly.
    """

    kind: ClassVar[str] = "data.dedup"

    def run(self, batch: Batch, loaded: Loaded | None) -> list[Any]:
        return _each(batch, self._dedup)

    @staticmethod
    def _dedup(item: WorkItem) -> list[Any]:
        field = item.params.get("field")
        fold = not item.params.get("case_sensitive", True)
        seen: set[tuple[str, str]] = set()
        kept: list[Any] = []
        for index, element in enumerate(_list_input(item, "items")):
            key = _dedup_key(index, element, field, fold)
            if key not in seen:
                seen.add(key)
                kept.append(element)
        return kept


def _dedup_key(index: int, element: Any, field: str | None, fold: bool) -> tuple[str, str]:
    """What ``element`` is compared by: ("text", its text) or ("json", its canonical JSON)."""
    value = element
    if field is not None and not isinstance(element, str):
        if not isinstance(element, dict):
            raise _Rejected(f"items[{index}] is {_describe(element)}, which has no field {field!r}")
        if field not in element:
            has = ", ".join(sorted(element)) or "none"
            raise _Rejected(f"items[{index}] has no field {field!r}; its fields: {has}")
        value = element[field]
    if isinstance(value, str):
        return ("text", value.casefold() if fold else value)
    return ("json", canonical_json(value).decode("utf-8"))


# ------------------------------------------------------------------------------ pairs


class PairsExecutor(Executor):
    """``data.pairs``: preference pairs for ``train.dpo`` from scored samples.

    ``samples`` are ``{prompt, completion}`` objects (what ``llm.generate`` writes) and
    ``scores`` one score per sample, in the same order (what ``score`` writes).
    """

    kind: ClassVar[str] = "data.pairs"

    def run(self, batch: Batch, loaded: Loaded | None) -> list[Any]:
        return _each(batch, self._pairs)

    @staticmethod
    def _pairs(item: WorkItem) -> list[Any]:
        samples = _list_input(item, "samples")
        scores = _list_input(item, "scores")
        return make_pairs(samples, scores, min_margin=float(item.params.get("min_margin", 0.0)))


def make_pairs(
    samples: list[Any], scores: list[Any], *, min_margin: float = 0.0
) -> list[dict[str, Any]]:
    """Per prompt with two or more samples, the highest-scored completion as ``chosen``
    and the lowest as ``rejected``, in the order prompts first appear. A prompt whose
    best and worst scores are equal, differ by less than ``min_margin``, or whose best and
    worst completions are the same text gives no pair. Raises ValueError naming the
    sample or score to fix."""
    if len(samples) != len(scores):
        raise _Rejected(
            f"{len(samples)} samples but {len(scores)} scores; give one score per sample, "
            "in the same order"
        )
    by_prompt: dict[str, list[tuple[float, str]]] = {}
    for i, (sample, entry) in enumerate(zip(samples, scores, strict=True)):
        if not isinstance(sample, Mapping) or not isinstance(sample.get("prompt"), str):
            raise _Rejected(f"samples[{i}] needs a string 'prompt'")
        if not isinstance(sample.get("completion"), str):
            raise _Rejected(f"samples[{i}] needs a string 'completion'")
        score = _score_of(i, entry)
        if not math.isfinite(score):
            raise _Rejected(f"scores[{i}] must be a finite number, got {score!r}")
        by_prompt.setdefault(sample["prompt"], []).append((score, sample["completion"]))
    pairs: list[dict[str, Any]] = []
    for prompt, scored in by_prompt.items():
        best = max(scored, key=lambda s: s[0])
        worst = min(scored, key=lambda s: s[0])
        margin = best[0] - worst[0]
        if margin <= 0 or margin < min_margin or best[1] == worst[1]:
            continue
        pairs.append({"prompt": prompt, "chosen": best[1], "rejected": worst[1], "margin": margin})
    return pairs
