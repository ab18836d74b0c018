"""The kinds FlowMesh ships: embed, llm.generate, score, data.*, train.*, python.

Each params model fills in defaults, so ``{}`` and the explicit defaults produce the same
op key. A training kind's key therefore covers its base model (a name or a checkpoint
digest), its dataset's digest, every hyperparameter and the seed: two tenants asking for
the same run share one (docs/training.md).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from flowmesh_core.registry import KindSpec

__all__ = [
    "BUILTIN_KINDS",
    "DpoParams",
    "LoraParams",
    "PairsParams",
    "SftParams",
    "TrainParams",
]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmbedParams(_Params):
    normalize: bool = True
    max_seq_length: int | None = Field(default=None, ge=1, le=32768)
    # With a field, each element of ``texts`` is an object and its ``field`` is the text
    # (e.g. ``completion`` to embed what ``llm.generate`` wrote).
    field: str | None = Field(default=None, min_length=1, max_length=256)


class GenerateParams(_Params):
    max_new_tokens: int = Field(default=128, ge=1, le=32768)
    temperature: float = Field(default=0.0, ge=0.0, le=10.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=1)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    n: int = Field(default=1, ge=1, le=1024)
    stop: list[str] = Field(default_factory=list, max_length=16)

    @model_validator(mode="after")
    def _n_needs_sampling(self) -> GenerateParams:
        if self.n > 1 and self.temperature == 0:
            raise ValueError(
                "n > 1 asks for several samples, but with temperature 0 (greedy) they would "
                "all be identical: set temperature > 0, or n to 1"
            )
        return self


def _generate_key_params(params: dict[str, Any]) -> dict[str, Any]:
    # Under greedy decoding the sampling knobs cannot change the output.
    if params["temperature"] == 0:
        return {k: v for k, v in params.items() if k not in {"seed", "top_p", "top_k"}}
    return params


class ScoreParams(_Params):
    activation: Literal["none", "sigmoid", "softmax"] = "none"
    max_length: int = Field(default=512, ge=1, le=32768)


class TemplateParams(_Params):
    template: str = Field(min_length=1, max_length=65536)


class FilterParams(_Params):
    min_score: float | None = None
    max_score: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> FilterParams:
        low, high = self.min_score, self.max_score
        if low is not None and high is not None and low > high:
            raise ValueError(
                f"min_score {self.min_score} is above max_score {self.max_score}: no item "
                "could pass; swap them"
            )
        return self


class DedupParams(_Params):
    field: str | None = None
    case_sensitive: bool = True


class TopKParams(_Params):
    k: int = Field(ge=1)
    descending: bool = True


class PairsParams(_Params):
    min_margin: float = Field(default=0.0, ge=0.0)


class TrainParams(_Params):
    """What every training kind takes: the usual hyperparameters and the seed."""

    learning_rate: float = Field(default=5e-4, gt=0.0, le=1.0)
    epochs: int = Field(default=1, ge=1, le=1000)
    batch_size: int = Field(default=8, ge=1, le=4096)
    max_length: int = Field(default=256, ge=8, le=32768)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    # Steps between intermediate checkpoints in the CAS, from which a run that lost its
    # worker resumes on another; 0: none. It cannot change the result: not in the key.
    checkpoint_every: int = Field(default=50, ge=0, le=10**9)


def _train_key_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != "checkpoint_every"}


class SftParams(TrainParams):
    """Supervised fine-tuning of every weight (loss on the completions only)."""


class LoraParams(SftParams):
    """SFT of a LoRA adapter only; the checkpoint holds the adapter and its base's
    reference, or with ``merge`` the full model with the adapter merged in (the base is
    still named in the tree, for lineage)."""

    lora_r: int = Field(default=8, ge=1, le=1024)
    lora_alpha: int = Field(default=16, ge=1, le=4096)
    lora_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    # Store the merged full model instead of the adapter: bigger, but a worker then
    # loads it without its base. It changes the result: part of the op key.
    merge: bool = False


class DpoParams(TrainParams):
    """Direct preference optimisation; ``beta`` is the strength of the KL tie to the base."""

    beta: float = Field(default=0.1, gt=0.0, le=100.0)
    loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"


class PythonParams(_Params):
    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
    kwargs: dict[str, JsonValue] = Field(default_factory=dict)


BUILTIN_KINDS: tuple[KindSpec, ...] = (
    KindSpec(
        kind="embed",
        version="1",
        params_model=EmbedParams,
        required_inputs=frozenset({"texts"}),
        batch_input="texts",
        needs_model=True,
        description="sentence embeddings of each text",
    ),
    KindSpec(
        kind="llm.generate",
        version="1",
        params_model=GenerateParams,
        required_inputs=frozenset({"prompts"}),
        batch_input="prompts",
        per_item_params=frozenset({"seed"}),
        needs_model=True,
        key_params=_generate_key_params,
        stochastic=lambda p: bool(p["temperature"] > 0),
        samples_param="n",
        description="a completion per prompt (n samples per prompt when sampling)",
    ),
    KindSpec(
        kind="score",
        version="1",
        params_model=ScoreParams,
        required_inputs=frozenset({"pairs"}),
        batch_input="pairs",
        needs_model=True,
        description="a reward or classifier score per {prompt, completion} pair",
    ),
    KindSpec(
        kind="data.template",
        version="1",
        params_model=TemplateParams,
        required_inputs=frozenset({"records"}),
        batch_input="records",
        description="render a format template once per record",
    ),
    KindSpec(
        kind="data.filter",
        version="1",
        params_model=FilterParams,
        required_inputs=frozenset({"items", "scores"}),
        description="keep the items whose score lies within [min_score, max_score]",
    ),
    KindSpec(
        kind="data.dedup",
        version="1",
        params_model=DedupParams,
        required_inputs=frozenset({"items"}),
        description="drop items whose text (or field) was already seen",
    ),
    KindSpec(
        kind="data.top_k",
        version="1",
        params_model=TopKParams,
        required_inputs=frozenset({"items", "scores"}),
        description="the k items with the highest (or lowest) scores",
    ),
    KindSpec(
        kind="data.pairs",
        version="1",
        params_model=PairsParams,
        required_inputs=frozenset({"samples", "scores"}),
        description=(
            "preference pairs from scored samples: per prompt, the best and the worst "
            "completion as {prompt, chosen, rejected, margin}, when their scores differ "
            "(by at least min_margin)"
        ),
    ),
    KindSpec(
        kind="train.sft",
        version="1",
        params_model=SftParams,
        required_inputs=frozenset({"dataset"}),
        needs_model=True,
        weight_input="dataset",
        key_params=_train_key_params,
        description=(
            "fine-tune the model on {prompt, completion} examples; the result is a "
            "checkpoint (a tree in the CAS) usable as a later operator's model"
        ),
    ),
    KindSpec(
        kind="train.lora",
        version="1",
        params_model=LoraParams,
        required_inputs=frozenset({"dataset"}),
        needs_model=True,
        weight_input="dataset",
        key_params=_train_key_params,
        description=(
            "train a LoRA adapter on {prompt, completion} examples; the checkpoint holds "
            "the adapter and its base model, and loads as the merged model (with "
            "`merge: true`, it holds the merged full model, its base named for lineage)"
        ),
    ),
    KindSpec(
        kind="train.dpo",
        version="1",
        params_model=DpoParams,
        required_inputs=frozenset({"dataset"}),
        needs_model=True,
        weight_input="dataset",
        key_params=_train_key_params,
        description=(
            "direct preference optimisation on {prompt, chosen, rejected} pairs (the base "
            "is the frozen reference); the result is a checkpoint"
        ),
    ),
    KindSpec(
        kind="python",
        version=None,
        params_model=PythonParams,
        open_inputs=True,
        description="an allow-listed importable function; version = its source hash",
    ),
)
