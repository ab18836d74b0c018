"""Bad input for the HTTP API: what is sent, and the error that must come back.

Each case is (id, method, path, body, headers, status, error type, a regex the message
must match). The API runs with ``max_body_bytes=8192`` and ``max_inline_bytes=1024``.
"""

from __future__ import annotations

import json
from typing import Any

YAML = {"Content-Type": "application/yaml"}
JSON = {"Content-Type": "application/json"}
ALIAS_PAIRS = [("a", "b"), ("b", "c"), ("c", "d"), ("d", "e")]  # e repeats x 10 * 5**4 times


def _workflow(**nodes: dict[str, Any]) -> str:
    return json.dumps({"nodes": nodes})


def _embed(texts: Any = None, **extra: Any) -> dict[str, Any]:
    return {"kind": "embed", "model": "mini", "inputs": {"texts": texts or ["a"]}, **extra}


# (id, method, path, body, headers, status, error type, regex the message must match)
BAD_INPUT: list[tuple[str, str, str, str | bytes | None, dict[str, str], int, str, str]] = [
    (
        "cycle",
        "POST",
        "/v1/workflows",
        _workflow(
            a=_embed(),
            left=_embed({"ref": "right"}),
            right=_embed({"ref": "left"}),
        ),
        JSON,
        400,
        "InvalidOperatorError",
        r"cycle: left -> right -> left",
    ),
    (
        "unknown kind",
        "POST",
        "/v1/workflows",
        _workflow(ok=_embed(), bad={"kind": "embedd", "inputs": {"texts": ["a"]}}),
        JSON,
        400,
        "UnknownKindError",
        r"node 'bad'.*'embedd'",
    ),
    (
        "reference to a missing node",
        "POST",
        "/v1/workflows",
        _workflow(first=_embed(), second=_embed({"ref": "ghost"})),
        JSON,
        400,
        "InvalidOperatorError",
        r"node 'second', input 'texts'.*'ghost'",
    ),
    (
        "type error in params",
        "POST",
        "/v1/workflows",
        _workflow(first=_embed(), second=_embed(params={"normalize": "very"})),
        JSON,
        400,
        "InvalidParamsError",
        r"node 'second'.*normalize",
    ),
    (
        "inline input over max_inline_bytes",
        "POST",
        "/v1/workflows",
        _workflow(first=_embed(), big=_embed(["x" * 3000])),
        JSON,
        413,
        "InputTooLargeError",
        r"node 'big'.*texts",
    ),
    (
        "body over max_body_bytes",
        "POST",
        "/v1/workflows",
        _workflow(first=_embed(["x" * 9000])),
        JSON,
        413,
        "InputTooLargeError",
        r"request body of \d+ bytes is over the limit of 8192 bytes",
    ),
    (
        "malformed YAML",
        "POST",
        "/v1/workflows",
        "nodes:\n  a: {kind: embed\n  b: [",
        YAML,
        400,
        "InvalidInputError",
        r"not valid YAML or JSON at line \d+",
    ),
    (
        "malformed JSON",
        "POST",
        "/v1/workflows",
        '{"nodes": {"a": }}',
        JSON,
        400,
        "InvalidInputError",
        r"not valid JSON at line 1, column 17",
    ),
    (
        "NaN in JSON",
        "POST",
        "/v1/operators",
        '{"kind": "data.top_k", "params": {"k": NaN}}',
        JSON,
        400,
        "InvalidInputError",
        r"NaN is not a JSON value",
    ),
    (
        "a reference in an operator",
        "POST",
        "/v1/operators",
        json.dumps(_embed({"ref": "other"})),
        JSON,
        400,
        "InvalidOperatorError",
        r"inputs: .*only inside a workflow",
    ),
    (
        "YAML aliases that expand past the limit",
        "POST",
        "/v1/workflows",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in ALIAS_PAIRS),
        YAML,
        413,
        "InputTooLargeError",
        r"expands to more than 8192 values",
    ),
    (
        "nesting too deep",
        "POST",
        "/v1/workflows",
        "[" * 4000 + "]" * 4000,
        JSON,
        400,
        "InvalidInputError",
        r"nested too deeply",
    ),
    ("empty body", "POST", "/v1/workflows", "", YAML, 400, "InvalidInputError", "empty body"),
    (
        "wrong content type",
        "POST",
        "/v1/workflows",
        "nodes: {}",
        {"Content-Type": "text/plain"},
        415,
        "UnsupportedMediaTypeError",
        r"'text/plain' is not accepted: send one of application/json, application/yaml",
    ),
    (
        "malformed digest",
        "GET",
        "/v1/results/sha256:xyz",
        None,
        {},
        400,
        "InvalidDigestError",
        r"malformed digest 'sha256:xyz'",
    ),
    (
        "negative wait timeout",
        "GET",
        "/v1/workflows/abc/wait?timeout=-1",
        None,
        {},
        400,
        "InvalidInputError",
        r"query parameter 'timeout'.*greater than or equal to 0",
    ),
    (
        "infinite wait timeout",
        "GET",
        "/v1/workflows/abc/wait?timeout=inf",
        None,
        {},
        400,
        "InvalidInputError",
        r"query parameter 'timeout'.*finite",
    ),
    (
        "a workflow id that is no id",
        "GET",
        "/v1/workflows/abc:def",
        None,
        {},
        400,
        "InvalidInputError",
        r"path parameter 'workflow_id'",
    ),
    (
        "a lineage flag that is no boolean",
        "GET",
        "/v1/workflows/abc?lineage=maybe",
        None,
        {},
        400,
        "InvalidInputError",
        r"query parameter 'lineage'",
    ),
    (
        "missing token",
        "POST",
        "/v1/workflows",
        _workflow(a=_embed()),
        {**JSON, "Authorization": ""},
        401,
        "AuthenticationError",
        r"missing bearer token",
    ),
    (
        "wrong token",
        "POST",
        "/v1/workflows",
        _workflow(a=_embed()),
        {**JSON, "Authorization": "Bearer fm_not-a-token"},
        401,
        "AuthenticationError",
        r"unknown token",
    ),
]
