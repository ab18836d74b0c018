"""The ``flowmesh`` command as a user runs it: a real process, real Redis, real S3 API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from flowmesh_core import Registry, expand, parse_operator
from flowmesh_core.blobs import open_blob_store

FLOWMESH = str(Path(sys.executable).with_name("flowmesh"))

OPERATOR = """\
kind: embed
model: all-MiniLM-L6-v2
inputs:
  texts: [the cat sat, on the mat, the cat sat]
"""


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMESH_")}
    return subprocess.run(
        [FLOWMESH, *args],
        env={**base, **(env or {})},
        cwd=cwd,
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    return {"FLOWMESH_BLOB_URL": f"file://{tmp_path / 'blobs'}"}


@pytest.fixture
def redis_env(redis_url: str, key_prefix: str, tmp_path: Path) -> dict[str, str]:
    return {
        "FLOWMESH_REDIS_URL": redis_url,
        "FLOWMESH_KEY_PREFIX": key_prefix,
        "FLOWMESH_BLOB_URL": f"file://{tmp_path / 'blobs'}",
    }


def test_help_explains_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in (b"key", b"cas", b"doctor"):
        assert command in result.stdout


def test_doctor_passes_on_the_embedded_default(embedded_env: dict[str, str]) -> None:
    result = run("doctor", env=embedded_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"embedded" in result.stdout
    assert b"all checks passed" in result.stdout


def test_doctor_passes_on_real_redis_and_leaves_no_keys(
    redis_env: dict[str, str], redis_url: str, key_prefix: str
) -> None:
    result = run("doctor", env=redis_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"dedup round trip" in result.stdout
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match=f"{key_prefix}:*")) == []
    finally:
        client.close()


def test_doctor_says_what_is_wrong_when_redis_is_down(embedded_env: dict[str, str]) -> None:
    result = run("doctor", env={**embedded_env, "FLOWMESH_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.returncode == 1
    assert b"does not answer" in result.stdout
    assert b"Traceback" not in result.stdout + result.stderr


def test_doctor_on_s3_blobs(
    embedded_env: dict[str, str], s3_endpoint: str, s3_bucket_url: str
) -> None:
    env = {
        **embedded_env,
        "FLOWMESH_BLOB_URL": s3_bucket_url,
        "FLOWMESH_S3_ENDPOINT_URL": s3_endpoint,
    }
    result = run("doctor", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"CAS round trip" in result.stdout


def test_key_prints_the_same_keys_as_the_library(
    tmp_path: Path, embedded_env: dict[str, str]
) -> None:
    path = tmp_path / "op.yaml"
    path.write_text(OPERATOR)
    result = run("key", str(path), "--json", env=embedded_env)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    import yaml

    expected = expand(
        parse_operator(yaml.safe_load(OPERATOR)), Registry.default(), max_inline_bytes=1 << 20
    )
    assert printed["op_key"] == expected.op_key
    item_keys = [item["op_key"] for item in printed["items"]]
    assert item_keys == [item.op_key for item in expected.items]
    assert item_keys[0] == item_keys[2]  # equal texts, equal items

    table = run("key", str(path), env=embedded_env)
    assert expected.op_key.encode() in table.stdout


def test_key_of_a_workflow_prints_ready_nodes_and_waits_for_others(
    tmp_path: Path, embedded_env: dict[str, str]
) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        "nodes:\n"
        "  gen: {kind: llm.generate, model: tiny, inputs: {prompts: [hi]}}\n"
        "  emb: {kind: embed, model: mini, inputs: {texts: {ref: gen}}}\n"
    )
    result = run("key", str(path), env=embedded_env)
    assert result.returncode == 0, result.stderr
    assert b"gen: llm.generate" in result.stdout
    assert b"emb: key known once gen finish" in result.stdout


def test_key_reads_a_list_passed_as_a_blob(tmp_path: Path, embedded_env: dict[str, str]) -> None:
    inline = tmp_path / "inline.yaml"
    inline.write_text(OPERATOR)
    by_value = json.loads(run("key", str(inline), "--json", env=embedded_env).stdout)
    # Canonical JSON bytes address the same list as the inline value: the same op key.
    # Other spellings of the list are other bytes (another parent key), yet the same items.
    for spelling, same_parent in (
        ('["the cat sat","on the mat","the cat sat"]', True),
        ('[ "the cat sat", "on the mat", "the cat sat" ]\n', False),
    ):
        rows = tmp_path / "texts.json"
        rows.write_text(spelling)
        # What `flowmesh cas put` uploads lands in this store (`key` reads it locally).
        digest = open_blob_store(embedded_env["FLOWMESH_BLOB_URL"]).put_file(rows).digest
        path = tmp_path / "op.yaml"
        path.write_text(
            f"kind: embed\nmodel: all-MiniLM-L6-v2\ninputs:\n  texts: {{blob: '{digest}'}}\n"
        )
        by_blob = json.loads(run("key", str(path), "--json", env=embedded_env).stdout)
        assert (by_blob["op_key"] == by_value["op_key"]) is same_parent
        assert by_blob["items"] == by_value["items"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("kind: nope\n", b"unknown operator kind 'nope'"),
        (
            "kind: embed\nmodel: m\ninputs: {texts: [a]}\nparams: {normalize: maybe}\n",
            b"params.normalize",
        ),
        ("kind: embed\nmodel: m\ninputs: {texts: {blob: 'sha256:xyz'}}\n", b"malformed digest"),
        ("kind: [unclosed\n", b"not valid YAML or JSON at line"),
    ],
)
def test_key_mistakes_are_one_line_errors(
    document: str, message: bytes, tmp_path: Path, embedded_env: dict[str, str]
) -> None:
    path = tmp_path / "op.yaml"
    path.write_text(document)
    result = run("key", str(path), env=embedded_env)
    assert result.returncode == 2
    assert message in result.stderr
    assert b"Traceback" not in result.stderr


def test_unknown_setting_is_rejected(tmp_path: Path, embedded_env: dict[str, str]) -> None:
    result = run("doctor", env={**embedded_env, "FLOWMESH_REDIS_ULR": "redis://x"})
    assert result.returncode == 2
    assert b"FLOWMESH_REDIS_ULR names no setting" in result.stderr

    (tmp_path / "flowmesh.toml").write_text('[flowmesh]\nredis_ur = "memory://"\n')
    result = run("doctor", env=embedded_env, cwd=tmp_path)
    assert result.returncode == 2
    assert b"unknown setting 'redis_ur'" in result.stderr


def test_config_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "flowmesh.toml").write_text(
        f'[flowmesh]\nblob_url = "file://{tmp_path / "from-file"}"\n'
    )
    result = run("doctor", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "from-file").is_dir()
