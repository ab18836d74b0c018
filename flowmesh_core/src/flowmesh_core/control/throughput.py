"""The online throughput model: how fast a worker type runs a kind and model at a batch size.

The scheduler's utility function asks it two questions: how many seconds a batch of
``size`` items of ``kind`` on ``model`` takes on an ``accelerator``, and how many seconds
loading a cold model takes there. Completed batches and model loads teach it (an
exponentially weighted moving average per key); until a key has a measurement, a seeded
prior answers.

Measured rates are keyed by (accelerator, kind, model, batch-size bucket), where buckets
are powers of two: sizes 1 -> 1, 2 -> 2, 3..4 -> 4, 5..8 -> 8, and so on. An item that
stands for many units of work (a training run: its examples times epochs, the utility's
item weight) is learned and asked per unit: the control plane observes its seconds
divided by its weight, and the utility multiplies the answer by it. So a training kind's
rate is examples per second on that accelerator, and a run twice as long is expected to
take twice as long.

The model is plain, JSON-serialisable state (``to_dict`` / ``from_dict``) so the control
plane can persist it in Redis and any replica can rebuild it. This module must never
perform I/O or read the clock: the simulator and the unit tests import it as it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from flowmesh_core.errors import ConfigError, FlowMeshError, InvalidInputError

__all__ = ["DEFAULT_SEEDS", "Observation", "ThroughputModel", "bucket"]

WILDCARD = "*"

# Items per second at batch size 1, by (accelerator, kind); WILDCARD matches any. These are
# order-of-magnitude priors that only rank hardware until the first batches are measured.
DEFAULT_SEEDS: Mapping[tuple[str, str], float] = {
    ("cpu", "embed"): 50.0,
    ("cpu", "score"): 10.0,
    ("cpu", "llm.generate"): 0.2,
    ("L4", "embed"): 1000.0,
    ("L4", "score"): 200.0,
    ("L4", "llm.generate"): 3.0,
    ("L40S", "embed"): 2500.0,
    ("L40S", "score"): 450.0,
    ("L40S", "llm.generate"): 6.0,
    ("A100", "embed"): 3000.0,
    ("A100", "score"): 600.0,
    ("A100", "llm.generate"): 8.0,
    ("H100", "embed"): 5000.0,
    ("H100", "score"): 1000.0,
    ("H100", "llm.generate"): 12.0,
    # Any other kind (training, custom python): only the hardware's relative speed, so
    # that a kind never seen is not assumed as fast on a CPU as on a GPU. The simulator
    # showed the cost of a flat prior: a training run placed on a CPU node because every
    # accelerator looked equally fast for it (bench/RESULTS.md).
    ("cpu", WILDCARD): 0.02,
    ("L4", WILDCARD): 1.0,
    ("L40S", WILDCARD): 2.0,
    ("A100", WILDCARD): 3.0,
    ("H100", WILDCARD): 5.0,
    # The data.* kinds move a few records of JSON on the worker's CPU whatever its
    # accelerator: microseconds an item, so the batch overhead is all they cost. Without
    # these, the CPU wildcard above priced a first data.top_k at 50 s an item, and the
    # utility held it back ~18 s on an idle worker until its value had aged enough.
    (WILDCARD, "data.template"): 1000.0,
    (WILDCARD, "data.filter"): 1000.0,
    (WILDCARD, "data.dedup"): 1000.0,
    (WILDCARD, "data.top_k"): 1000.0,
    (WILDCARD, "data.pairs"): 1000.0,
}

_FORMAT = 1
_MEMO_KEYS = 4096  # memoised (accelerator, kind, model) keys before the memo starts over
_CurveKey = tuple[str, str, str | None]


def bucket(size: int) -> int:
    """The power-of-two bucket of a batch size: the smallest power of two >= ``size``."""
    if size < 1:
        raise InvalidInputError(f"batch size must be at least 1, got {size}")
    return 1 << (size - 1).bit_length()


class Observation(NamedTuple):
    """One measured batch: ``size`` items in ``exec_s`` seconds, after ``load_s`` seconds
    of loading ``model`` cold (0 when it was warm)."""

    accelerator: str
    kind: str
    model: str | None
    size: int
    exec_s: float
    load_s: float = 0.0


@dataclass(slots=True)
class _Ewma:
    """A moving average and how many observations shaped it."""

    value: float
    samples: int

    def update(self, sample: float, alpha: float) -> None:
        self.value = (1.0 - alpha) * self.value + alpha * sample
        self.samples += 1


def _positive(name: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"throughput model: {name} must be a finite number > 0, got {value!r}")
    return float(value)


class ThroughputModel:
    """Batch and model-load seconds per worker type, learned online.

    ``batch_seconds(accelerator, kind, model, n)`` answers, first match wins:

    1. the bucket of ``n`` is measured: ``n / rate[bucket]`` (measured seconds are end to
       end, so no overhead is added on top);
    2. other buckets of the same (accelerator, kind, model) are measured: the rate is
       interpolated linearly in log2(bucket) between the nearest measured buckets; above
       the largest it saturates at that bucket's rate; below the smallest it follows the
       seed's gain curve anchored at the smallest: ``rate[lo] * g(b) / g(lo)``;
    3. nothing measured: ``batch_overhead_s + n / (r1 * g(n))`` with ``g(n) =
       min(n, gain_cap) ** gain_exp`` and ``r1`` the seeded items/s at batch 1, looked up as
       (accelerator, kind), (family, kind), ("*", kind), (accelerator, "*"), (family, "*"),
       else ``default_rate`` (the family of "H100-80GB" is "H100"). A ("*", kind) seed says
       the kind runs as fast on any accelerator (CPU-side data transforms), which is more
       than a hardware-wide guess knows, so it comes before (accelerator, "*").

    ``load_seconds(accelerator, model)`` is the EWMA of observed loads, else ``default``
    (when given), else ``default_load_s``. Every EWMA starts at its first sample and then
    moves by ``alpha`` towards each new one.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.3,
        seeds: Mapping[tuple[str, str], float] = DEFAULT_SEEDS,
        default_rate: float = 1.0,
        gain_cap: int = 32,
        gain_exp: float = 0.7,
        batch_overhead_s: float = 0.02,
        default_load_s: float = 30.0,
    ) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ConfigError(f"throughput model: alpha must be in (0, 1], got {alpha!r}")
        if gain_cap < 1:
            raise ConfigError(f"throughput model: gain_cap must be >= 1, got {gain_cap!r}")
        if not 0.0 <= gain_exp <= 1.0:
            raise ConfigError(f"throughput model: gain_exp must be in [0, 1], got {gain_exp!r}")
        if not (math.isfinite(batch_overhead_s) and batch_overhead_s >= 0):
            raise ConfigError("throughput model: batch_overhead_s must be a finite number >= 0")
        if not (math.isfinite(default_load_s) and default_load_s >= 0):
            raise ConfigError("throughput model: default_load_s must be a finite number >= 0")
        self.alpha = float(alpha)
        self.seeds = {key: _positive(f"seed {key}", rate) for key, rate in seeds.items()}
        self.default_rate = _positive("default_rate", default_rate)
        self.gain_cap = int(gain_cap)
        self.gain_exp = float(gain_exp)
        self.batch_overhead_s = float(batch_overhead_s)
        self.default_load_s = float(default_load_s)
        self._curves: dict[_CurveKey, dict[int, _Ewma]] = {}
        self._loads: dict[tuple[str, str], _Ewma] = {}
        # batch_seconds answers by key and size; the scheduler asks the same few many times
        # a second. observe() drops the one key it changes.
        self._memo: dict[_CurveKey, dict[int, float]] = {}

    # -- learning -------------------------------------------------------------------------

    def observe(
        self, accelerator: str, kind: str, model: str | None, size: int, seconds: float
    ) -> None:
        """Record that a batch of ``size`` items took ``seconds`` end to end."""
        if not (math.isfinite(seconds) and seconds > 0):
            raise InvalidInputError(f"batch seconds must be a finite number > 0, got {seconds!r}")
        key = (accelerator, kind, model)
        curve = self._curves.setdefault(key, {})
        self._memo.pop(key, None)
        b = bucket(size)
        stat = curve.get(b)
        if stat is None:
            curve[b] = _Ewma(size / seconds, 1)
        else:
            stat.update(size / seconds, self.alpha)

    def observe_load(self, accelerator: str, model: str, seconds: float) -> None:
        """Record that loading ``model`` on ``accelerator`` took ``seconds``."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise InvalidInputError(f"load seconds must be a finite number >= 0, got {seconds!r}")
        stat = self._loads.get((accelerator, model))
        if stat is None:
            self._loads[(accelerator, model)] = _Ewma(float(seconds), 1)
        else:
            stat.update(seconds, self.alpha)

    def learn(self, observation: Observation) -> None:
        """Record one measured batch and its model load (``observe`` and ``observe_load``).

        Replaying the same observations onto the same state always gives the same model:
        that is how replicas merge what each learned into the one model Redis holds.
        """
        acc, kind, model, size, exec_s, load_s = observation
        loaded = model is not None and load_s > 0
        if loaded and not math.isfinite(load_s):  # all or nothing: check before observing
            raise InvalidInputError(f"load seconds must be a finite number >= 0, got {load_s!r}")
        self.observe(acc, kind, model, size, exec_s)
        if model is not None and loaded:
            self.observe_load(acc, model, load_s)

    # -- answering ------------------------------------------------------------------------

    def batch_seconds(self, accelerator: str, kind: str, model: str | None, size: int) -> float:
        """Expected seconds for a batch of ``size`` items (the class docstring says how)."""
        key = (accelerator, kind, model)
        memo = self._memo.get(key)
        if memo is None:
            if len(self._memo) >= _MEMO_KEYS:
                self._memo.clear()
            memo = self._memo[key] = {}
        seconds = memo.get(size)
        if seconds is None:
            seconds = memo[size] = self._batch_seconds(key, size)
        return seconds

    def _batch_seconds(self, key: _CurveKey, size: int) -> float:
        b = bucket(size)
        curve = self._curves.get(key)
        if curve is None:
            rate = self._seed_rate(key[0], key[1], size)
            return self.batch_overhead_s + size / rate
        stat = curve.get(b)
        return size / (stat.value if stat is not None else self._interpolate(curve, b))

    def rate(self, accelerator: str, kind: str, model: str | None, size: int) -> float:
        """Expected items per second at ``size`` (``size / batch_seconds``)."""
        return size / self.batch_seconds(accelerator, kind, model, size)

    def load_seconds(self, accelerator: str, model: str, default: float | None = None) -> float:
        """Expected seconds to load ``model`` cold on ``accelerator``."""
        stat = self._loads.get((accelerator, model))
        if stat is not None:
            return stat.value
        return self.default_load_s if default is None else default

    def samples(self, accelerator: str, kind: str, model: str | None, size: int) -> int:
        """How many batches were observed in the bucket of ``size`` for that key."""
        stat = self._curves.get((accelerator, kind, model), {}).get(bucket(size))
        return 0 if stat is None else stat.samples

    def load_samples(self, accelerator: str, model: str) -> int:
        """How many loads of ``model`` on ``accelerator`` were observed."""
        stat = self._loads.get((accelerator, model))
        return 0 if stat is None else stat.samples

    def _gain(self, size: int) -> float:
        return math.pow(min(size, self.gain_cap), self.gain_exp)

    def _seed_rate(self, accelerator: str, kind: str, size: int) -> float:
        seeds = self.seeds
        # "H100-80GB" falls back to its family "H100" when it has no seed of its own.
        family = accelerator.split("-", 1)[0]
        r1 = seeds.get((accelerator, kind))
        if r1 is None:
            r1 = seeds.get((family, kind))
        if r1 is None:
            r1 = seeds.get((WILDCARD, kind))
        if r1 is None:
            r1 = seeds.get((accelerator, WILDCARD))
        if r1 is None:
            r1 = seeds.get((family, WILDCARD), self.default_rate)
        return r1 * self._gain(size)

    def _interpolate(self, curve: dict[int, _Ewma], b: int) -> float:
        measured = sorted(curve)
        lo = max((m for m in measured if m < b), default=None)
        hi = min((m for m in measured if m > b), default=None)
        if hi is None:  # above the largest measured bucket: throughput saturates
            assert lo is not None
            return curve[lo].value
        if lo is None:  # below the smallest: the seed's gain curve, anchored there
            return curve[hi].value * self._gain(b) / self._gain(hi)
        t = (math.log2(b) - math.log2(lo)) / (math.log2(hi) - math.log2(lo))
        return curve[lo].value + t * (curve[hi].value - curve[lo].value)

    # -- persistence ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole model as JSON-serialisable data; ``from_dict`` rebuilds it exactly."""
        return {
            "format": _FORMAT,
            "alpha": self.alpha,
            "seeds": [[acc, kind, rate] for (acc, kind), rate in sorted(self.seeds.items())],
            "default_rate": self.default_rate,
            "gain_cap": self.gain_cap,
            "gain_exp": self.gain_exp,
            "batch_overhead_s": self.batch_overhead_s,
            "default_load_s": self.default_load_s,
            "rates": [
                [acc, kind, model, b, stat.value, stat.samples]
                for (acc, kind, model), curve in self._curves.items()
                for b, stat in sorted(curve.items())
            ],
            "loads": [
                [acc, model, stat.value, stat.samples] for (acc, model), stat in self._loads.items()
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThroughputModel:
        """Rebuild a model from ``to_dict`` output; InvalidInputError if it is malformed."""
        if data.get("format") != _FORMAT:
            raise InvalidInputError(
                f"throughput model state has format {data.get('format')!r}; "
                f"this version reads format {_FORMAT}"
            )
        try:
            model = cls(
                alpha=float(data["alpha"]),
                seeds={(str(a), str(k)): float(r) for a, k, r in data["seeds"]},
                default_rate=float(data["default_rate"]),
                gain_cap=int(data["gain_cap"]),
                gain_exp=float(data["gain_exp"]),
                batch_overhead_s=float(data["batch_overhead_s"]),
                default_load_s=float(data["default_load_s"]),
            )
            for acc, kind, name, b, value, samples in data["rates"]:
                key = (str(acc), str(kind), None if name is None else str(name))
                curve = model._curves.setdefault(key, {})
                curve[bucket(int(b))] = _Ewma(_positive("rate", float(value)), int(samples))
            for acc, name, value, samples in data["loads"]:
                if not (math.isfinite(value) and value >= 0):
                    raise ValueError(f"load seconds {value!r}")
                model._loads[(str(acc), str(name))] = _Ewma(float(value), int(samples))
        except (KeyError, TypeError, ValueError, FlowMeshError) as exc:
            raise InvalidInputError(f"throughput model state is malformed: {exc!r}") from exc
        return model
