"""Bad input gets the most specific FlowMesh error and a message that says what to fix.

Each case asserts the exact class (not just a base class) and a distinctive part of the
message, so a vaguer error or a generic message fails the test.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowmesh_core import errors
from flowmesh_core.blobs import open_blob_store
from flowmesh_core.errors import (
    ConfigError,
    FlowMeshError,
    InputTooLargeError,
    InvalidDigestError,
    InvalidInputError,
    InvalidOperatorError,
    InvalidParamsError,
    UnknownKindError,
    UnknownSettingError,
    UnsupportedSchemeError,
)
from flowmesh_core.hashing import digest_value, validate_digest
from flowmesh_core.keys import Expansion, expand
from flowmesh_core.models import Operator
from flowmesh_core.models.parse import parse_document, parse_operator, parse_workflow
from flowmesh_core.registry import Registry
from flowmesh_core.settings import load_settings
from flowmesh_core.store.connection import open_redis

REGISTRY = Registry.default()
GOOD_DIGEST = digest_value(["a"])
# What json.loads makes of an HTTP body that escapes half a surrogate pair.
SURROGATE_OPERATOR = '{"kind": "embed", "model": "m", "inputs": {"texts": ["\\ud800"]}}'


def expand_data(data: dict[str, Any], max_inline_bytes: int = 1 << 20) -> Expansion:
    return expand(parse_operator(data), REGISTRY, max_inline_bytes=max_inline_bytes)


def embed(**changes: Any) -> dict[str, Any]:
    return {"kind": "embed", "model": "mini", "inputs": {"texts": ["a"]}, **changes}


def cycle(kind: str = "embed") -> dict[str, Any]:
    return {
        "nodes": {
            "fetch": {"kind": kind, "inputs": {"texts": ["x"]}},
            "left": {"kind": kind, "inputs": {"texts": {"ref": "right"}}},
            "right": {"kind": kind, "inputs": {"texts": {"ref": "left"}}},
        }
    }


# (id, call, exact class, regex the message must contain)
OPERATOR_CASES: list[tuple[str, Callable[[], object], type[FlowMeshError], str]] = [
    (
        "malformed blob digest",
        lambda: parse_operator(embed(inputs={"texts": {"blob": "sha256:xyz"}})),
        InvalidDigestError,
        r"inputs\.texts.*malformed digest 'sha256:xyz'.*64 lowercase hex",
    ),
    (
        "uppercase blob digest",
        lambda: parse_operator(embed(inputs={"texts": {"blob": GOOD_DIGEST.upper()}})),
        InvalidDigestError,
        r"inputs\.texts.*malformed digest",
    ),
    (
        "malformed model digest",
        lambda: parse_operator(embed(model="sha256:" + "g" * 64)),
        InvalidDigestError,
        r"model.*malformed digest",
    ),
    (
        "path traversal as digest",
        lambda: validate_digest("../etc/passwd"),
        InvalidDigestError,
        r"malformed digest '\.\./etc/passwd'.*sha256:",
    ),
    (
        "digest with a trailing newline",
        lambda: validate_digest(GOOD_DIGEST + "\n"),
        InvalidDigestError,
        r"malformed digest",
    ),
    (
        "non-string digest",
        lambda: validate_digest(None),
        InvalidDigestError,
        r"malformed digest None",
    ),
    (
        "unknown kind",
        lambda: expand_data(embed(kind="embedd")),
        UnknownKindError,
        r"unknown operator kind 'embedd'; known kinds: .*\bembed\b.*llm\.generate",
    ),
    (
        "training kind without its dataset",
        lambda: expand_data(embed(kind="train.sft")),
        InvalidOperatorError,
        r"kind 'train\.sft' needs input 'dataset'",
    ),
    (
        "wrong param type",
        lambda: expand_data(
            {
                "kind": "llm.generate",
                "model": "lm",
                "params": {"max_new_tokens": "many"},
                "inputs": {"prompts": ["p"]},
            }
        ),
        InvalidParamsError,
        r"kind 'llm\.generate': params\.max_new_tokens: .*integer",
    ),
    (
        "param out of range",
        lambda: expand_data(
            {
                "kind": "llm.generate",
                "model": "lm",
                "params": {"temperature": -1},
                "inputs": {"prompts": ["p"]},
            }
        ),
        InvalidParamsError,
        r"params\.temperature: .*greater than or equal to 0",
    ),
    (
        "wrong nested param type",
        lambda: expand_data(embed(params={"normalize": "maybe"})),
        InvalidParamsError,
        r"kind 'embed': params\.normalize: .*boolean",
    ),
    (
        "unknown param name",
        lambda: expand_data(embed(params={"normalise": True})),
        InvalidParamsError,
        r"params\.normalise: Extra inputs are not permitted",
    ),
    (
        "missing required param",
        lambda: expand_data(
            {"kind": "data.top_k", "inputs": {"items": [1], "scores": [1]}},
        ),
        InvalidParamsError,
        r"kind 'data\.top_k': params\.k: Field required",
    ),
    (
        "missing required input",
        lambda: expand_data(embed(inputs={})),
        InvalidOperatorError,
        r"kind 'embed' needs input 'texts'",
    ),
    (
        "one of two inputs missing",
        lambda: expand_data({"kind": "data.filter", "inputs": {"items": [1]}}),
        InvalidOperatorError,
        r"needs input 'scores' \(it takes: items, scores\)",
    ),
    (
        "unexpected input name",
        lambda: expand_data(embed(inputs={"texts": ["a"], "text": ["b"]})),
        InvalidOperatorError,
        r"kind 'embed' has no input 'text' \(it takes: texts\)",
    ),
    (
        "missing model",
        lambda: expand_data({"kind": "embed", "inputs": {"texts": ["a"]}}),
        InvalidOperatorError,
        r"kind 'embed' needs a model \(set 'model:'\)",
    ),
    (
        "python kind without a version",
        lambda: expand_data({"kind": "python", "params": {"function": "m:f"}}),
        InvalidOperatorError,
        r"kind 'python' needs an explicit 'version'",
    ),
    (
        "a version this control plane cannot run",
        lambda: expand_data(embed(version="9")),
        InvalidOperatorError,
        r"kind 'embed' is at version '1'.*cannot run version '9'.*drop 'version'",
    ),
    (
        "oversized inline input",
        lambda: expand_data(embed(inputs={"texts": ["x" * 200]}), max_inline_bytes=100),
        InputTooLargeError,
        r"input 'texts' is 2\d\d bytes inline, over the 100-byte limit.*`flowmesh cas put",
    ),
    (
        "batch input that is not a list",
        lambda: expand_data(embed(inputs={"texts": "just one"})),
        InvalidOperatorError,
        r"kind 'embed': input 'texts' must be a list.*got str",
    ),
    (
        "blob batch input without a blob store",
        lambda: expand_data(embed(inputs={"texts": {"blob": GOOD_DIGEST}})),
        InvalidOperatorError,
        r"input 'texts' is a blob; splitting it into items needs the blob store",
    ),
    (
        "NaN in an inline input",
        lambda: expand_data(embed(inputs={"texts": [float("nan")]})),
        InvalidInputError,
        r"not plain JSON",
    ),
    (
        "infinity in python kwargs",
        lambda: expand_data(
            {
                "kind": "python",
                "version": "h",
                "params": {"function": "m:f", "kwargs": {"x": 1e999}},
            }
        ),
        InvalidInputError,
        r"not plain JSON",
    ),
    (
        "lone surrogate in an inline input",
        lambda: expand_data(json.loads(SURROGATE_OPERATOR)),
        InvalidInputError,
        r"surrogate",
    ),
    (
        "workflow with a cycle",
        lambda: parse_workflow(cycle()),
        InvalidOperatorError,
        r"has a cycle: .*(left.*right|right.*left)",
    ),
    (
        "workflow node reading itself",
        lambda: parse_workflow(
            {"nodes": {"loop": {"kind": "embed", "inputs": {"texts": {"ref": "loop"}}}}}
        ),
        InvalidOperatorError,
        r"has a cycle: .*\bloop\b",
    ),
    (
        "reference to a missing node",
        lambda: parse_workflow(
            {"nodes": {"embed": {"kind": "embed", "inputs": {"texts": {"ref": "generate"}}}}}
        ),
        InvalidOperatorError,
        r"node 'embed', input 'texts': refers to node 'generate', which this workflow does not",
    ),
    (
        "empty workflow",
        lambda: parse_workflow({"nodes": {}}),
        InvalidOperatorError,
        r"nodes: .*at least 1 item",
    ),
    (
        "node name unsafe in a Redis key",
        lambda: parse_workflow({"nodes": {"a:b": {"kind": "embed"}}}),
        InvalidOperatorError,
        r"'a:b' is not a valid name",
    ),
    (
        "{ref: ...} inside a plain operator",
        lambda: parse_operator(embed(inputs={"texts": {"ref": "other"}})),
        InvalidOperatorError,
        r"inputs: \{ref: \.\.\.\} inputs exist only inside a workflow",
    ),
    (
        "misspelled operator field",
        lambda: parse_operator({"kind": "embed", "modle": "mini"}),
        InvalidOperatorError,
        r"invalid operator: modle: Extra inputs are not permitted",
    ),
    (
        "operator document that is a list",
        lambda: parse_operator(["kind", "embed"]),
        InvalidOperatorError,
        r"operator must be a mapping .*got list",
    ),
    (
        "workflow document that is a string",
        lambda: parse_workflow("nodes"),
        InvalidOperatorError,
        r"workflow must be a mapping .*got str",
    ),
    (
        "invalid YAML",
        lambda: parse_document("kind: embed\nmodel: mini\n  texts: [a, b]\n", "op.yaml"),
        InvalidInputError,
        r"op\.yaml: not valid YAML or JSON at line 3, column \d+",
    ),
    (
        "unterminated JSON",
        lambda: parse_document('{"kind": "embed",\n "model": "mini"\n', "op.json"),
        InvalidInputError,
        r"op\.json: not valid YAML or JSON at line \d+",
    ),
    (
        "unknown Redis URL scheme",
        lambda: open_redis("http://localhost:6379/0"),
        UnsupportedSchemeError,
        r"unsupported scheme 'http'; use redis://.*memory://",
    ),
    (
        "unknown blob URL scheme",
        lambda: open_blob_store("ftp://host/blobs"),
        UnsupportedSchemeError,
        r"scheme 'ftp://'; supported schemes: file://, s3://",
    ),
    (
        "blob URL with no scheme",
        lambda: open_blob_store("/var/lib/flowmesh/blobs"),
        UnsupportedSchemeError,
        r"has no scheme; supported schemes: file://, s3://",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [case[1:] for case in OPERATOR_CASES],
    ids=[case[0] for case in OPERATOR_CASES],
)
def test_bad_input_raises_the_most_specific_error(
    call: Callable[[], object], error: type[FlowMeshError], message: str
) -> None:
    with pytest.raises(FlowMeshError, match=message) as info:
        call()
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"


def test_a_cycle_message_names_only_the_nodes_on_the_cycle() -> None:
    # 'fetch' feeds nothing into the cycle, and a node that merely reads from the cycle is
    # not part of it: naming it would send the user to remove the wrong reference. 'audit'
    # sorts first, so a search that starts from it must still trim it off.
    data = cycle()
    data["nodes"]["audit"] = {"kind": "embed", "inputs": {"texts": {"ref": "left"}}}
    with pytest.raises(InvalidOperatorError, match=r"cycle") as info:
        parse_workflow(data)
    message = str(info.value)
    assert "left" in message
    assert "right" in message
    assert "fetch" not in message
    assert "audit" not in message


# --- settings ----------------------------------------------------------------------------

# (id, environment, flowmesh.toml text, overrides, exact class, message regex)
SettingsCase = tuple[str, dict[str, str], str | None, dict[str, Any], type[FlowMeshError], str]
SETTINGS_CASES: list[SettingsCase] = [
    (
        "unknown override",
        {},
        None,
        {"foo": 1},
        UnknownSettingError,
        r"argument: unknown setting 'foo'; known settings: .*redis_url",
    ),
    (
        "unknown FLOWMESH_ variable",
        {"FLOWMESH_REDIS_ULR": "redis://x"},
        None,
        {},
        UnknownSettingError,
        r"FLOWMESH_REDIS_ULR names no setting; known: .*FLOWMESH_REDIS_URL",
    ),
    (
        "unknown key in the config file",
        {},
        'redis_url = "memory://"\nblob_ulr = "file:///tmp"\n',
        {},
        UnknownSettingError,
        r"flowmesh\.toml: unknown setting 'blob_ulr'",
    ),
    (
        "unknown key in the [flowmesh] table",
        {},
        "[flowmesh]\nprefix = 'x'\n",
        {},
        UnknownSettingError,
        r"unknown setting 'prefix'",
    ),
    (
        "config file that is not TOML",
        {},
        "redis_url = \n",
        {},
        ConfigError,
        r"cannot read config file .*flowmesh\.toml",
    ),
    (
        "[flowmesh] that is not a table",
        {},
        "flowmesh = 3\n",
        {},
        ConfigError,
        r"\[flowmesh\] must be a table",
    ),
    (
        "invalid value",
        {},
        None,
        {"max_inline_bytes": 0},
        ConfigError,
        r"invalid settings: max_inline_bytes: .*greater than 0",
    ),
    (
        "invalid value from the environment",
        {"FLOWMESH_MAX_INLINE_BYTES": "lots"},
        None,
        {},
        ConfigError,
        r"invalid settings: max_inline_bytes: .*integer",
    ),
    (
        "invalid enum",
        {},
        None,
        {"dedup_domain": "planet"},
        ConfigError,
        r"dedup_domain: .*'global', 'organisation' or 'tenant'",
    ),
    (
        "config file that does not exist",
        {"FLOWMESH_CONFIG": "/nonexistent/flowmesh.toml"},
        None,
        {},
        ConfigError,
        r"config file /nonexistent/flowmesh\.toml does not exist",
    ),
]


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("env", "file_text", "overrides", "error", "message"),
    [case[1:] for case in SETTINGS_CASES],
    ids=[case[0] for case in SETTINGS_CASES],
)
def test_bad_settings_raise_the_most_specific_error(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    file_text: str | None,
    overrides: dict[str, Any],
    error: type[FlowMeshError],
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if file_text is not None:
        Path("flowmesh.toml").write_text(file_text, encoding="utf-8")
    with pytest.raises(FlowMeshError, match=message) as info:
        load_settings(**overrides)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"


@pytest.mark.usefixtures("clean_env")
def test_a_setting_outside_the_flowmesh_table_is_not_silently_ignored() -> None:
    # Unknown keys are errors everywhere; a key beside [flowmesh] that FlowMesh then skips
    # is a typo (or a misplaced line) falling back to a default without a word.
    Path("flowmesh.toml").write_text(
        'redis_url = "redis://cache:6379/0"\n[flowmesh]\nkey_prefix = "team"\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"redis_url"):
        load_settings()


# --- the error tree ------------------------------------------------------------------------

ERROR_CLASSES = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, Exception) and cls.__module__ == errors.__name__
]


def test_every_case_uses_a_flowmesh_error() -> None:
    used = {case[2] for case in OPERATOR_CASES} | {case[4] for case in SETTINGS_CASES}
    assert used <= set(ERROR_CLASSES)
    assert all(issubclass(cls, FlowMeshError) for cls in ERROR_CLASSES)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_status_codes_follow_the_tree(cls: type[FlowMeshError]) -> None:
    if issubclass(cls, InvalidInputError):
        assert 400 <= cls.status_code < 500
    if issubclass(cls, ConfigError):
        assert cls.status_code == 500


def test_specific_status_codes() -> None:
    assert InvalidInputError.status_code == 400
    assert InputTooLargeError.status_code == 413
    assert errors.NotFoundError.status_code == 404
    assert errors.ConflictError.status_code == 409
    assert errors.ServiceUnavailableError.status_code == 503


def test_bad_operator_leaves_the_operator_untouched() -> None:
    op = Operator.model_validate(embed(params={"normalise": True}))
    before = op.model_dump()
    with pytest.raises(InvalidParamsError):
        expand(op, REGISTRY, max_inline_bytes=1 << 20)
    assert op.model_dump() == before
