"""Which files of the repository reach a Docker build context, per ``.dockerignore``.

Docker's rules (moby/patternmatcher), as far as these tests need them: each line is a
pattern relative to the context root, cleaned of a leading ``/`` and trailing ``/``;
``*`` matches within one path segment, ``?`` one character of it, ``**`` any number of
segments; a pattern that matches a directory excludes everything under it; a line
starting with ``!`` re-includes; the last matching line wins. Not covered: escapes
(``\\*``) and character classes (``[a-z]``), which the repository's file does not use
(a test asserts so).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

__all__ = ["is_excluded", "read_patterns"]


def read_patterns(path: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """``(negated, regex)`` per pattern line of a ``.dockerignore``."""
    patterns = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        body = line[1:].strip() if negated else line
        if "[" in body or "\\" in body:
            raise ValueError(f"{path}: {line!r} uses syntax this checker does not model")
        patterns.append((negated, _compile(body.strip("/"))))
    return patterns


@cache
def _compile(pattern: str) -> re.Pattern[str]:
    out = []
    segments = pattern.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "**":
            out.append(".*" if last else "(?:.*/)?")
            continue
        piece = "".join(
            "[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch) for ch in seg
        )
        out.append(piece if last else piece + "/")
    return re.compile("".join(out) + r"\Z")


def is_excluded(relpath: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether ``relpath`` (posix, relative to the context root) stays out of the context.

    A path is out when the last pattern matching it or one of its parent directories is
    not negated.
    """
    parts = relpath.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, regex in patterns:
        if any(regex.match(p) for p in prefixes):
            excluded = not negated
    return excluded
