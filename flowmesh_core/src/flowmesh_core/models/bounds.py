"""Bounding what a document costs to parse, checked before it is parsed.

A small body must not cost seconds: a 5000-digit number (Python refuses to convert it
past 4300 digits), YAML aliases that repeat a subtree into millions of values, and
thousands of nesting levels are each refused here, from one linear scan of the text (or
of libyaml's event stream), before any object is built. ``loads_json`` is the one way
FlowMesh reads JSON that a tenant wrote, in a body or in a blob.

This module must never build the document it checks.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from flowmesh_core.errors import InputTooLargeError, InvalidInputError

__all__ = ["MAX_DEPTH", "MAX_NUMBER_CHARS", "check_yaml", "loads_json"]

MAX_DEPTH = 64
"""The deepest nesting of lists and mappings a document may have."""

MAX_NUMBER_CHARS = 100
"""The longest number literal a document may hold (digits, sign, point and exponent)."""

_LONG_NUMBER = "[-+0-9.eE]{" + str(MAX_NUMBER_CHARS + 1) + ",}"
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]|' + _LONG_NUMBER)
_NUMBER = re.compile(r"[-+]?(?:0[xob])?[0-9_.]+(?:[eE][-+]?[0-9]+)?")

_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _too_deep(source: str) -> InvalidInputError:
    return InvalidInputError(
        f"{source}: the document is nested too deeply (over {MAX_DEPTH} levels); flatten it "
        "or put the value into the CAS and refer to it as {blob: sha256:...}"
    )


def _too_long(source: str, text: str) -> InvalidInputError:
    return InvalidInputError(
        f"{source}: a number of {len(text)} characters ({text[:20]}...) is longer than "
        f"{MAX_NUMBER_CHARS}; write it as a string"
    )


def _check_json_text(text: str, source: str) -> None:
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise _too_deep(source)
        elif token in ("]", "}"):
            depth -= 1
        elif not token.startswith('"'):
            raise _too_long(source, token)


def loads_json(text: str | bytes, source: str = "input") -> Any:
    """JSON text decoded, its depth and number lengths bounded first.

    Raises InvalidInputError (400) for text that is not JSON (bytes that are not UTF-8
    included), nests deeper than MAX_DEPTH, or holds a number longer than
    MAX_NUMBER_CHARS; NaN and Infinity are refused too.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"{source}: not UTF-8 text (byte {exc.start})") from exc
    _check_json_text(text, source)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{source}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc


def _reject_constant(name: str) -> Any:
    raise InvalidInputError(f"{name} is not a JSON value; write a number or a string")


def check_yaml(text: str, source: str, max_values: int) -> None:
    """Refuse YAML whose parse would cost more than its size suggests.

    One pass over libyaml's events (no objects built) counts the values the document
    expands to, aliases counted at the size of the subtree they repeat, and its depth.
    Raises InputTooLargeError (413) past ``max_values`` values and InvalidInputError
    (400) past MAX_DEPTH levels or for a plain number longer than MAX_NUMBER_CHARS.
    Text that is not YAML passes: the parser that follows says what is wrong with it.
    """
    anchors: dict[str, int] = {}
    open_: list[tuple[str | None, int]] = []  # (anchor, values before it) per collection
    total = 0
    try:
        for event in yaml.parse(text, Loader=_SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                open_.append((event.anchor, total))
                if len(open_) > MAX_DEPTH:
                    raise _too_deep(source)
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                anchor, before = open_.pop()
                total += 1
                if anchor is not None:
                    anchors[anchor] = total - before
            elif isinstance(event, yaml.ScalarEvent):
                _check_scalar(event, source)
                total += 1
                if event.anchor is not None:
                    anchors[event.anchor] = 1
            elif isinstance(event, yaml.AliasEvent):
                total += anchors.get(event.anchor or "", 1)
            if total > max_values:
                raise _expands(source, max_values)
    except yaml.YAMLError:
        return


def _check_scalar(event: Any, source: str) -> None:
    value = event.value
    typed = not event.style or event.tag is not None  # plain, or tagged like !!int
    if typed and len(value) > MAX_NUMBER_CHARS and _NUMBER.fullmatch(value):
        raise _too_long(source, value)


def _expands(source: str, limit: int) -> InputTooLargeError:
    return InputTooLargeError(
        f"{source}: the document expands to more than {limit} values (YAML anchors and "
        "aliases repeat whole subtrees); write the repeated parts out or use the CAS"
    )
