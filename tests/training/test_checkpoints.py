"""Checkpoints in the CAS as trees (docs/training.md): a worker's training result is a
tree of file blobs whose digest is the result; the same digest, used as a model on a
worker with an empty model directory, is fetched, verified and loads like any model; a
LoRA checkpoint loads as its base with the adapter merged; a corrupt file is an error.

These tests drive the worker's ``BatchRunner`` directly (no Redis): the part between an
assignment and the CAS. tests/training/test_pipelines.py runs the same through the fabric.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from flowmesh_core.blobs import BlobStore, open_blob_store
from flowmesh_core.blobs.file import FileBlobStore
from flowmesh_core.blobs.s3 import S3BlobStore
from flowmesh_core.checkpoint import build_tree, check_file_path, read_tree
from flowmesh_core.errors import CorruptBlobError, InvalidInputError, InvalidOperatorError
from flowmesh_core.keys import expand
from flowmesh_core.models import ModelRef, Operator
from flowmesh_core.protocol import AssignedItem, Assignment
from flowmesh_core.registry import Registry
from flowmesh_worker.executors import create_executor
from flowmesh_worker.runner import BatchRunner
from flowmesh_worker.weights import TINY_GPT, WarmCache, resolve_model
from flowmesh_worker.weights.checkpoints import checkpoint_dir, held, materialise

# The first test in a process imports torch, transformers, TRL and PEFT (tens of seconds
# of CPU on a loaded machine); each test after that trains in seconds.
pytestmark = pytest.mark.timeout(240)

REGISTRY = Registry.default()
SFT_ROWS = [{"prompt": f"question {i} :", "completion": " the answer is blue ."} for i in range(8)]
FAST = {"epochs": 2, "learning_rate": 1e-2, "batch_size": 4, "seed": 1}


def runner(blobs: BlobStore, model_dir: Path) -> BatchRunner:
    return BatchRunner(blobs, create_executor, WarmCache(1 << 30), model_dir, "w-test")


def assignment(kind: str, model: str, params: dict[str, Any], inputs: Any) -> Assignment:
    """One batch of ``kind`` as the scheduler would send it (keys from the registry)."""
    op = Operator(kind=kind, model=model, params=params, inputs=inputs)  # type: ignore[arg-type]
    expansion = expand(op, REGISTRY, max_inline_bytes=1 << 20)
    return Assignment(
        batch_id="b1",
        signature=expansion.signature,
        kind=kind,
        version=expansion.version,
        model=op.model,
        items=[
            AssignedItem(domain="d", op_key=item.op_key, attempt=1, spec=item)
            for item in expansion.items
        ],
    )


def train(blobs: BlobStore, model_dir: Path, kind: str, model: str, params: dict[str, Any]) -> str:
    run = runner(blobs, model_dir)
    executed = run.execute(assignment(kind, model, params, {"dataset": SFT_ROWS}))
    assert executed.scratch
    assert all(p.is_dir() for p in executed.scratch)
    completion = run.store(executed)
    assert not any(p.exists() for p in executed.scratch)  # the local copy goes once stored
    (result,) = completion.results
    assert result.error is None, result.error
    assert result.inline is None  # a tree is always a blob: workers read it from the CAS
    assert result.digest is not None
    return result.digest


def greedy(path: Path, prompt: str) -> list[int]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(input_ids=ids, max_new_tokens=4, do_sample=False)
    return [int(t) for t in out[0, ids.shape[1] :]]


def test_a_trained_checkpoint_round_trips_through_the_cas(tmp_path: Path, model_dir: Path) -> None:
    blobs = open_blob_store(f"file://{tmp_path / 'blobs'}")
    digest = train(blobs, model_dir, "train.sft", TINY_GPT, FAST)

    tree = read_tree(blobs.get_bytes(digest))
    assert tree.format == "full"
    assert tree.base == ModelRef(name=TINY_GPT)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(tree.files)
    assert not any(p.startswith(".") for p in tree.files)  # the trainer's scratch stays out
    assert all(blobs.exists(d) for d in tree.digests)
    assert tree.metrics["nll_after"] < tree.metrics["nll_before"]
    assert tree.metrics["examples"] == len(SFT_ROWS) * FAST["epochs"]

    # The worker that trained it keeps its own output as its local copy, and says so.
    kept = checkpoint_dir(digest, model_dir)
    assert digest in held(model_dir)
    for rel, file_digest in tree.files.items():
        assert blobs.stat(file_digest).size == (kept / rel).stat().st_size
    nothing = open_blob_store(f"file://{tmp_path / 'nothing'}")
    assert resolve_model(ModelRef(digest=digest), model_dir=model_dir, blobs=nothing) == kept

    # Another worker, with nothing on its disk: the digest is a model it can load.
    elsewhere = tmp_path / "other-worker"
    path = resolve_model(ModelRef(digest=digest), model_dir=elsewhere, blobs=blobs)
    for rel, file_digest in tree.files.items():
        assert blobs.stat(file_digest).size == (path / rel).stat().st_size
    assert len(greedy(path, "question 3 :")) == 4
    # Kept on this worker's disk: a second use reads nothing from the CAS.
    empty = open_blob_store(f"file://{tmp_path / 'empty'}")
    assert resolve_model(ModelRef(digest=digest), model_dir=elsewhere, blobs=empty) == path


# PEFT reads a property this transformers release renamed; the warning is theirs.
@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
def test_a_lora_checkpoint_stores_its_adapter_and_loads_merged(
    tmp_path: Path, model_dir: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    blobs = open_blob_store(f"file://{tmp_path / 'blobs'}")
    params = {**FAST, "learning_rate": 2e-2, "lora_r": 8}
    digest = train(blobs, model_dir, "train.lora", TINY_GPT, params)
    tree = read_tree(blobs.get_bytes(digest))
    assert tree.format == "lora"
    assert tree.base == ModelRef(name=TINY_GPT)
    assert "adapter_config.json" in tree.files
    assert "model.safetensors" not in tree.files  # the adapter only, not the base's weights
    config = json.loads(blobs.get_bytes(tree.files["adapter_config.json"]))
    assert config["base_model_name_or_path"] == TINY_GPT  # not a worker's local path

    merged = resolve_model(ModelRef(digest=digest), model_dir=tmp_path / "w2", blobs=blobs)
    assert (merged / "model.safetensors").is_file()
    # The merged model computes what the adapter on its base computes.
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for rel, file_digest in tree.files.items():
        blobs.get_to_file(file_digest, adapter / rel)
    base = resolve_model(ModelRef(name=TINY_GPT), model_dir=model_dir)
    on_base = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)), adapter)
    whole = AutoModelForCausalLM.from_pretrained(str(merged))
    ids = torch.tensor([[2, 2000, 2001, 2002, 2003]])
    with torch.inference_mode():
        expected = on_base.eval()(input_ids=ids).logits
        got = whole.eval()(input_ids=ids).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
def test_a_merged_lora_checkpoint_is_a_full_model_that_needs_no_base(
    tmp_path: Path, model_dir: Path
) -> None:
    blobs = open_blob_store(f"file://{tmp_path / 'blobs'}")
    params = {**FAST, "learning_rate": 2e-2, "lora_r": 8}
    digest = train(blobs, model_dir, "train.lora", TINY_GPT, {**params, "merge": True})
    tree = read_tree(blobs.get_bytes(digest))
    assert tree.format == "full"
    assert tree.base == ModelRef(name=TINY_GPT)  # lineage still names the base
    assert tree.metrics["merged"] is True
    assert "model.safetensors" in tree.files
    assert "adapter_config.json" not in tree.files

    def no_base(ref: ModelRef) -> Path:
        raise AssertionError(f"the base {ref.key} was loaded")

    # A worker with an empty model directory loads it as it is, never asking for a base.
    path = materialise(digest, blobs=blobs, model_dir=tmp_path / "w2", resolve_base=no_base)
    assert len(greedy(path, "question 3 :")) == 4
    # It computes what the same run stored as an adapter computes once merged on load.
    adapter = train(blobs, model_dir, "train.lora", TINY_GPT, params)
    assert adapter != digest  # merge is part of the op key and of the result
    on_load = resolve_model(ModelRef(digest=adapter), model_dir=tmp_path / "w3", blobs=blobs)
    assert greedy(on_load, "question 3 :") == greedy(path, "question 3 :")


def test_a_corrupt_checkpoint_file_is_detected(tmp_path: Path, model_dir: Path) -> None:
    blobs = open_blob_store(f"file://{tmp_path / 'blobs'}")
    assert isinstance(blobs, FileBlobStore)
    digest = train(blobs, model_dir, "train.sft", TINY_GPT, FAST)
    tree = read_tree(blobs.get_bytes(digest))
    weights = blobs.path_of(tree.files["model.safetensors"])
    weights.chmod(0o644)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))

    fresh = tmp_path / "fresh-worker"
    with pytest.raises(CorruptBlobError, match=r"file 'model\.safetensors'.*corrupt"):
        resolve_model(ModelRef(digest=digest), model_dir=fresh, blobs=blobs)
    assert not any(p.name.startswith("ckpt-") for p in fresh.iterdir())  # nothing published

    # Through the worker: the item fails with the same clear error, not a traceback.
    run = runner(blobs, fresh)
    batch = assignment("llm.generate", digest, {"max_new_tokens": 2}, {"prompts": ["hi"]})
    (result,) = run.store(run.execute(batch)).results
    assert result.digest is None
    assert result.error is not None
    assert "model.safetensors" in result.error
    assert "corrupt" in result.error


def test_checkpoint_files_stream_through_s3_multipart(
    tmp_path: Path, model_dir: Path, s3_bucket_url: str, s3_endpoint: str, s3_client: Any
) -> None:
    blobs = S3BlobStore(
        s3_bucket_url,
        endpoint_url=s3_endpoint,
        multipart_threshold=5 << 20,
        multipart_chunksize=5 << 20,
    )
    digest = train(blobs, model_dir, "train.sft", TINY_GPT, FAST)
    tree = read_tree(blobs.get_bytes(digest))
    weights = tree.files["model.safetensors"]
    assert blobs.stat(weights).size > 5 << 20  # big enough to go up in parts
    head = s3_client.head_object(Bucket=blobs.bucket, Key=blobs.key_of(weights))
    assert "-" in head["ETag"]  # a multipart upload's ETag counts its parts
    path = resolve_model(ModelRef(digest=digest), model_dir=tmp_path / "w", blobs=blobs)
    assert len(greedy(path, "question 3 :")) == 4


def test_a_model_digest_must_be_a_checkpoint(tmp_path: Path) -> None:
    blobs = open_blob_store(f"file://{tmp_path / 'blobs'}")
    plain = blobs.put_bytes(b'["not", "a", "tree"]').digest
    with pytest.raises(InvalidOperatorError, match="not a checkpoint"):
        resolve_model(ModelRef(digest=plain), model_dir=tmp_path / "m", blobs=blobs)


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../b", ".hidden", "a//b", "a\\b", ""])
def test_a_tree_cannot_name_a_path_outside_its_directory(path: str) -> None:
    with pytest.raises(InvalidInputError, match="relative path of plain names"):
        check_file_path(path)
    files = {path: "sha256:" + "0" * 64}
    with pytest.raises(InvalidInputError):
        build_tree(files, format="full", base=None)
    raw = {"checkpoint": {"format": "full", "files": files, "base": None}}
    with pytest.raises(InvalidInputError):
        read_tree(json.dumps(raw).encode())


class Points:
    """Resume points kept in a dict: the runner's side of ``ResumeStore`` (the worker
    loop's own keeps them in Redis; tests/training/test_resume.py runs that one)."""

    def __init__(self) -> None:
        self.points: dict[tuple[str, str], dict[str, Any]] = {}
        self.saved: list[dict[str, Any]] = []

    def get(self, domain: str, op_key: str) -> dict[str, Any] | None:
        return self.points.get((domain, op_key))

    def put(self, domain: str, op_key: str, point: Any) -> None:
        self.points[(domain, op_key)] = dict(point)
        self.saved.append(dict(point))


def test_a_rerun_resumes_from_the_latest_intermediate_checkpoint(
    tmp_path: Path, model_dir: Path
) -> None:
    blobs = open_blob_store(f"file://{tmp_path / 'blobs'}")
    points = Points()
    params = {**FAST, "batch_size": 2, "checkpoint_every": 3}  # 8 steps: saved at 3 and 6
    batch = assignment("train.sft", TINY_GPT, params, {"dataset": SFT_ROWS})
    first = runner(blobs, model_dir)
    first.resume_store = points
    (done,) = first.store(first.execute(batch)).results
    assert [p["step"] for p in points.saved] == [3, 6]
    point = points.saved[1]
    saved = read_tree(blobs.get_bytes(point["digest"]))
    assert saved.format == "resume"
    assert "trainer_state.json" in saved.files
    assert read_tree(blobs.get_bytes(str(done.digest))).metrics["resumed_from_step"] == 0

    # The same item again (its worker died after step 6): it goes on from there.
    ((key, _),) = points.points.items()
    points.points[key] = point
    again = runner(blobs, tmp_path / "other-worker")
    again.resume_store = points
    (resumed,) = again.store(again.execute(batch)).results
    assert resumed.error is None, resumed.error
    tree = read_tree(blobs.get_bytes(str(resumed.digest)))
    first_tree = read_tree(blobs.get_bytes(str(done.digest)))
    assert tree.metrics["resumed_from_step"] == 6
    assert tree.metrics["steps"] == 8
    assert tree.metrics["losses"] == pytest.approx(first_tree.metrics["losses"])
    # A resume point is never a model.
    with pytest.raises(InvalidOperatorError, match="intermediate state"):
        resolve_model(ModelRef(digest=point["digest"]), model_dir=tmp_path / "m", blobs=blobs)
