"""The kinds FlowMesh ships: embed, llm.generate, score, data.*, python.

Each params model fills in defaults, so ``{}`` and the explicit defaults produce the same
op key. Training kinds (``train.*``) are registered when their executors exist; until then
an operator of that kind is an unknown kind, not work that no worker can run.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from flowmesh_core.registry import KindSpec

__all__ = ["BUILTIN_KINDS"]


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
        kind="python",
        version=None,
        params_model=PythonParams,
        open_inputs=True,
        description="an allow-listed importable function; version = its source hash",
    ),
)
