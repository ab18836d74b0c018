"""The one typed settings object, read from arguments, ``FLOWMESH_*`` variables and a file.

Precedence, highest first: values passed to ``load_settings``, environment variables
(``FLOWMESH_REDIS_URL``...), the TOML config file, the defaults. The file is the path
given, else ``$FLOWMESH_CONFIG``, else ``./flowmesh.toml`` when it exists.

Unknown keys are errors everywhere: an argument, a key in the file, and a ``FLOWMESH_*``
variable that misspells a setting (``FLOWMESH_REDIS_ULR``): a typo must not silently fall
back to a default. Any other ``FLOWMESH_*`` variable (a user's own ``FLOWMESH_BIN``) is
ignored with a logged warning. Nothing here reads the environment at import time; call
``load_settings``.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flowmesh_core.autoscale.pools import PoolSpec, check_pool_name
from flowmesh_core.errors import ConfigError, UnknownSettingError

__all__ = ["DedupDomain", "Settings", "default_state_dir", "load_settings"]

log = logging.getLogger(__name__)

ENV_PREFIX = "FLOWMESH_"
CONFIG_ENV = "FLOWMESH_CONFIG"
DEFAULT_CONFIG_FILE = "flowmesh.toml"
DEFAULT_FAIRNESS_HALF_LIFE_S = 300.0
"""The default of ``fairness_half_life_s`` (also the store's, for callers without settings)."""


class DedupDomain(StrEnum):
    """Who shares results: everyone, an organisation's tenants, or each tenant alone."""

    GLOBAL = "global"
    ORGANISATION = "organisation"
    TENANT = "tenant"


def default_state_dir() -> Path:
    """``$FLOWMESH_STATE_DIR``, else ``$XDG_STATE_HOME/flowmesh``, else
    ``~/.local/state/flowmesh``."""
    explicit = os.environ.get("FLOWMESH_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "flowmesh"


def _default_blob_url() -> str:
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return "file://" + str(Path(data_home) / "flowmesh" / "blobs")


class Settings(BaseSettings):
    """Every knob FlowMesh reads. Frozen: pass a new object rather than mutate one."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, case_sensitive=False
    )

    redis_url: str = Field(
        default="memory://",
        description="redis://host:port/db for a Redis server; memory:// (the default) for "
        "the embedded store, a Valkey server FlowMesh starts in state_dir and shares "
        "between its processes; memory://NAME for a second, separate one",
    )
    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="where the embedded store keeps its server and data, and `flowmesh up` "
        "its state (default: $XDG_STATE_HOME/flowmesh or ~/.local/state/flowmesh)",
    )
    blob_url: str = Field(
        default_factory=_default_blob_url,
        description="file:///path (default: the user data dir) or s3://bucket/prefix",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 API endpoint for s3:// blob URLs (MinIO, moto, ...)"
    )
    s3_region: str | None = Field(default=None, description="S3 region for s3:// blob URLs")
    key_prefix: str = Field(
        default="fm",
        description="prefix of every Redis key FlowMesh writes (wrap in {} to pin one slot)",
    )
    dedup_domain: DedupDomain = Field(
        default=DedupDomain.GLOBAL, description="global, organisation or tenant"
    )
    max_inline_bytes: int = Field(
        default=1 << 20, gt=0, description="largest inline input; larger goes through the CAS"
    )
    inline_result_bytes: int = Field(
        default=8192,
        ge=0,
        description=(
            "results (and node manifests) up to this size are kept in Redis with their "
            "action-cache entry instead of the CAS: no blob write, no fsync (0: never)"
        ),
    )

    server_url: str = Field(
        default="http://127.0.0.1:8470",
        description="the control plane's URL, for clients and the CLI (`flowmesh serve` listens)",
    )
    token: SecretStr | None = Field(
        default=None, description="this client's tenant token (`flowmesh tenant create`)"
    )
    max_body_bytes: int = Field(
        default=16 << 20, gt=0, description="largest request body the API accepts"
    )
    max_upload_bytes: int = Field(
        default=4 << 30,
        gt=0,
        description="largest blob one PUT /v1/blobs/{digest} accepts (streamed, never held "
        "in memory)",
    )
    tenant_max_in_flight: int = Field(
        default=100_000,
        ge=0,
        description="items a tenant may have in flight (requested, not settled); 0: no limit",
    )
    tenant_submit_rate: float = Field(
        default=100.0,
        ge=0,
        allow_inf_nan=False,
        description="submissions per second a tenant may make (bursts of twice that); 0: no limit",
    )
    tenant_max_upload_bytes: int = Field(
        default=100 << 30,
        ge=0,
        description="bytes the blobs a tenant uploaded (PUT /v1/blobs) may hold in all, each "
        "blob counted once per tenant that owns it; 0: no limit",
    )
    max_grants_per_tenant: int = Field(
        default=10_000,
        ge=0,
        description="blob grants (POST /v1/blobs/{digest}/grants) a tenant may hold at once; "
        "0: no limit",
    )
    max_attempts: int = Field(
        default=3, ge=1, le=100, description="runs of a failing item before it fails for good"
    )
    worker_ttl_s: float = Field(
        default=15.0, gt=0, description="a worker silent this long is dead; its work is re-planned"
    )
    lease_ttl_s: float = Field(
        default=10.0, gt=0, description="scheduler lease TTL; a new leader takes over after it"
    )
    scheduler_policy: str = Field(
        default="utility", description="utility (FlowMesh), fifo, cheapest or fastest"
    )
    scheduler_max_batch: int | None = Field(
        default=None,
        ge=1,
        description="most items the scheduler puts in one batch on any worker "
        "(default: each worker's own max_batch); 1 turns batching off",
    )
    utility_weights: dict[str, float] = Field(
        default_factory=dict,
        description="overrides of the utility weights (see control/utility.py UtilityWeights)",
    )
    fairness_half_life_s: float = Field(
        default=DEFAULT_FAIRNESS_HALF_LIFE_S,
        gt=0,
        allow_inf_nan=False,
        description="a tenant's worker-seconds count half as much toward its fair share "
        "after this many seconds (the scheduler's fairness looks at recent use)",
    )

    pools: dict[str, PoolSpec] = Field(
        default_factory=dict,
        description="worker pools the autoscaler sizes ([flowmesh.pools.NAME] tables; "
        "JSON in the environment); see docs/autoscaling.md",
    )
    autoscale_drain_s: float = Field(
        default=60.0,
        gt=0,
        allow_inf_nan=False,
        description="the autoscaler asks for enough replicas to drain the backlog this fast",
    )
    autoscale_idle_s: float = Field(
        default=60.0,
        ge=0,
        allow_inf_nan=False,
        description="a replica idle for longer than this may be released",
    )
    worker_pool: str | None = Field(
        default=None,
        description="the pool this worker belongs to (`flowmesh worker --pool NAME`)",
    )

    worker_python_modules: list[str] = Field(
        default_factory=list,
        description="modules (and their submodules) whose functions the python kind may "
        'call on this worker, e.g. ["myteam.ops"]; empty = the python kind is refused',
    )
    worker_model_dir: str | None = Field(
        default=None,
        description="where a worker keeps models it builds or unpacks "
        "(default: the user cache dir, ~/.cache/flowmesh/models)",
    )
    model_roots: list[str] = Field(
        default_factory=list,
        description="directories under which a local model directory may be named as a "
        "model (absolute paths on the workers); empty = the worker's model directory "
        "(worker_model_dir). Any other path is an unknown model",
    )
    worker_model_cache_mb: int = Field(
        default=4096, ge=1, description="memory a worker may spend keeping models warm (MiB)"
    )
    worker_blob_cache_mb: int = Field(
        default=2048,
        ge=0,
        description="local disk a worker may spend keeping copies of the input blobs of "
        "64 KiB or more that it read (MiB, under worker_model_dir/input-blobs; least "
        "recently used first out); 0 = keep none",
    )
    worker_checkpoint_disk_mb: int = Field(
        default=12288,
        ge=0,
        description="local disk a worker may spend keeping checkpoints it trained or "
        "fetched (MiB, ckpt-* under worker_model_dir; least recently used first out, "
        "never one a running batch uses); 0 = keep none past its batch",
    )
    worker_generate_backend: str = Field(
        default="auto",
        description="llm.generate engine: transformers, vllm, or auto (vllm on a GPU with "
        "vllm installed, else transformers)",
    )

    @field_validator("worker_generate_backend")
    @classmethod
    def _check_backend(cls, value: str) -> str:
        if value not in {"auto", "transformers", "vllm"}:
            raise ValueError("use auto, transformers or vllm")
        return value

    @field_validator("pools")
    @classmethod
    def _check_pools(cls, value: dict[str, PoolSpec]) -> dict[str, PoolSpec]:
        for name in value:
            check_pool_name(name)
        return value

    @field_validator("key_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.{}-]{1,64}", value):
            raise ValueError("use 1-64 letters, digits, '_', '.', '-', '{', '}'")
        return value


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    section = data.get("flowmesh", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: [flowmesh] must be a table")
    if "flowmesh" in data and len(data) > 1:
        stray = sorted(k for k in data if k != "flowmesh")
        raise UnknownSettingError(
            f"config file {path}: {', '.join(map(repr, stray))} outside the [flowmesh] table "
            "would be ignored; move it into [flowmesh]"
        )
    _reject_unknown(section.keys(), f"config file {path}")
    return section


def _reject_unknown(keys: Any, where: str) -> None:
    known = set(Settings.model_fields)
    for key in keys:
        if key not in known:
            raise UnknownSettingError(
                f"{where}: unknown setting {key!r}; known settings: {', '.join(sorted(known))}"
            )


_warned: set[str] = set()


def _check_environment() -> None:
    """Refuse a ``FLOWMESH_*`` variable that misspells a setting; ignore any other stray
    one (a user's own ``FLOWMESH_BIN``) with a warning logged once per name."""
    names = [
        name[len(ENV_PREFIX) :].lower()
        for name in os.environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() != CONFIG_ENV
    ]
    known = set(Settings.model_fields)
    for name in names:
        if name in known:
            continue
        meant = _meant_setting(name, known)
        variable = f"{ENV_PREFIX}{name.upper()}"
        if meant is not None:
            raise UnknownSettingError(
                f"environment variable {variable} names no setting; known: "
                + ", ".join(ENV_PREFIX + k.upper() for k in sorted(known))
                + f". It looks like {ENV_PREFIX}{meant.upper()} misspelt: fix the name, or "
                f"rename the variable outside the {ENV_PREFIX} prefix"
            )
        if variable not in _warned:
            _warned.add(variable)
            log.warning("ignoring environment variable %s: it names no FlowMesh setting", variable)


def _meant_setting(name: str, known: set[str]) -> str | None:
    """The setting ``name`` misspells or wraps (``redis_ulr``, ``test_redis_url``), if any."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
    if close:
        return close[0]
    wrapped = [k for k in sorted(known) if "_" in k and (k in name)]
    return wrapped[0] if wrapped else None


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings (see the module docstring for precedence).

    Raises UnknownSettingError for unknown keys and ConfigError for values that do not
    validate, naming the setting and what it accepts.
    """
    _reject_unknown(overrides.keys(), "argument")
    _check_environment()
    path = config_file or os.environ.get(CONFIG_ENV)
    if path is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path = DEFAULT_CONFIG_FILE
    file_values = _read_config_file(Path(path)) if path is not None else {}
    env_set = {k for k in Settings.model_fields if (ENV_PREFIX + k.upper()) in _upper_env()}
    merged = {k: v for k, v in file_values.items() if k not in env_set}
    merged.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc


def _upper_env() -> set[str]:
    return {name.upper() for name in os.environ}
