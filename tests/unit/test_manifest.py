"""Manifests (flowmesh_core.manifest): one format, written and recognised in one place."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmesh_core.errors import InvalidDigestError, InvalidInputError
from flowmesh_core.hashing import canonical_json, digest_value
from flowmesh_core.manifest import build_manifest, is_manifest, parse_manifest, read_manifest

DIGESTS = [digest_value("alpha"), digest_value("beta"), digest_value("alpha")]
digests = st.lists(st.text(max_size=8).map(digest_value), max_size=6)


@given(listed=digests)
def test_a_manifest_round_trips(listed: list[str]) -> None:
    data = build_manifest(listed)
    assert read_manifest(data) == listed
    assert parse_manifest(json.loads(data)) == listed
    assert is_manifest(json.loads(data))


def test_a_manifest_is_the_canonical_json_split_nodes_have_always_written() -> None:
    # Node results already in the CAS were written this way; a change would re-key them.
    assert build_manifest(DIGESTS) == canonical_json({"manifest": DIGESTS})
    assert build_manifest(iter(DIGESTS)) == build_manifest(DIGESTS)
    assert build_manifest([]) == b'{"manifest":[]}'


def test_building_a_manifest_of_a_malformed_digest_fails() -> None:
    with pytest.raises(InvalidDigestError):
        build_manifest([DIGESTS[0], "sha256:nope"])


@pytest.mark.parametrize(
    "value",
    [
        DIGESTS,
        "manifest",
        None,
        {"manifest": DIGESTS[0]},
        {"manifest": [1, 2]},
        {"manifest": DIGESTS, "extra": 1},
        {"Manifest": DIGESTS},
        {"blob": DIGESTS[0]},
    ],
    ids=["list", "string", "null", "not a list", "not strings", "extra key", "case", "blob"],
)
def test_other_values_are_not_manifests(value: Any) -> None:
    assert parse_manifest(value) is None
    assert not is_manifest(value)


def test_a_manifest_listing_a_malformed_digest_is_an_error_not_a_value() -> None:
    with pytest.raises(InvalidDigestError):
        parse_manifest({"manifest": [DIGESTS[0], "../../etc/passwd"]})


@pytest.mark.parametrize(
    "data", [b"\xff\xfe", b"not json", b'["a"]', b'{"manifest": "x"}'], ids=repr
)
def test_reading_what_is_not_a_manifest_says_so(data: bytes) -> None:
    with pytest.raises(InvalidInputError, match="not a manifest"):
        read_manifest(data)
