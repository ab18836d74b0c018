"""Settings: one typed object, from arguments > FLOWMESH_* variables > TOML file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from flowmesh_core.errors import ConfigError
from flowmesh_core.settings import DedupDomain, Settings, load_settings

pytestmark = pytest.mark.usefixtures("clean_env")


def write_config(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def test_defaults(clean_env: Path) -> None:
    settings = load_settings()
    assert settings.redis_url == "memory://"
    assert settings.blob_url == "file://" + str(clean_env / "xdg" / "flowmesh" / "blobs")
    assert settings.key_prefix == "fm"
    assert settings.dedup_domain is DedupDomain.GLOBAL
    assert settings.max_inline_bytes == 1 << 20
    assert settings.s3_endpoint_url is None
    assert settings.s3_region is None


@pytest.mark.parametrize(
    ("in_file", "in_env", "override", "expected"),
    [
        (False, False, False, "fm"),
        (True, False, False, "from-file"),
        (False, True, False, "from-env"),
        (True, True, False, "from-env"),
        (False, False, True, "from-arg"),
        (True, False, True, "from-arg"),
        (False, True, True, "from-arg"),
        (True, True, True, "from-arg"),
    ],
)
def test_precedence(
    monkeypatch: pytest.MonkeyPatch, in_file: bool, in_env: bool, override: bool, expected: str
) -> None:
    if in_file:
        write_config(Path("flowmesh.toml"), 'key_prefix = "from-file"\n')
    if in_env:
        monkeypatch.setenv("FLOWMESH_KEY_PREFIX", "from-env")
    overrides = {"key_prefix": "from-arg"} if override else {}
    assert load_settings(**overrides).key_prefix == expected


def test_precedence_is_per_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(
        Path("flowmesh.toml"),
        'redis_url = "redis://file:6379/0"\nkey_prefix = "file"\nmax_inline_bytes = 10\n',
    )
    monkeypatch.setenv("FLOWMESH_KEY_PREFIX", "env")
    monkeypatch.setenv("FLOWMESH_MAX_INLINE_BYTES", "20")
    settings = load_settings(max_inline_bytes=30)
    assert settings.redis_url == "redis://file:6379/0"  # only the file sets it
    assert settings.key_prefix == "env"
    assert settings.max_inline_bytes == 30


def test_an_override_of_none_leaves_the_lower_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWMESH_S3_REGION", "eu-west-1")
    assert load_settings(s3_region=None).s3_region == "eu-west-1"


def test_an_invalid_file_value_hidden_by_the_environment_is_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_config(Path("flowmesh.toml"), "max_inline_bytes = 0\n")
    monkeypatch.setenv("FLOWMESH_MAX_INLINE_BYTES", "64")
    assert load_settings().max_inline_bytes == 64


@pytest.mark.parametrize(
    "body",
    [
        'redis_url = "redis://cache:6379/1"\ndedup_domain = "tenant"\n',
        '[flowmesh]\nredis_url = "redis://cache:6379/1"\ndedup_domain = "tenant"\n',
    ],
    ids=["top-level keys", "[flowmesh] table"],
)
def test_config_file_layouts(body: str) -> None:
    write_config(Path("flowmesh.toml"), body)
    settings = load_settings()
    assert settings.redis_url == "redis://cache:6379/1"
    assert settings.dedup_domain is DedupDomain.TENANT


def test_flowmesh_config_picks_the_file(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    write_config(Path("flowmesh.toml"), 'key_prefix = "cwd"\n')
    chosen = write_config(clean_env / "elsewhere.toml", '[flowmesh]\nkey_prefix = "chosen"\n')
    monkeypatch.setenv("FLOWMESH_CONFIG", str(chosen))
    assert load_settings().key_prefix == "chosen"


def test_an_explicit_file_beats_flowmesh_config(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    monkeypatch.setenv(
        "FLOWMESH_CONFIG", str(write_config(clean_env / "env.toml", 'key_prefix = "env"\n'))
    )
    explicit = write_config(clean_env / "arg.toml", 'key_prefix = "arg"\n')
    assert load_settings(explicit).key_prefix == "arg"
    assert load_settings(str(explicit)).key_prefix == "arg"


def test_no_file_is_read_when_there_is_none(clean_env: Path) -> None:
    write_config(clean_env / "not-the-default-name.toml", 'key_prefix = "nope"\n')
    assert load_settings().key_prefix == "fm"


@pytest.mark.parametrize(
    ("source", "value", "expected"),
    [
        ("override", "tenant", DedupDomain.TENANT),
        ("override", DedupDomain.ORGANISATION, DedupDomain.ORGANISATION),
        ("env", "organisation", DedupDomain.ORGANISATION),
        ("file", "global", DedupDomain.GLOBAL),
        ("file", "tenant", DedupDomain.TENANT),
    ],
)
def test_dedup_domain_parses_the_enum(
    monkeypatch: pytest.MonkeyPatch, source: str, value: str, expected: DedupDomain
) -> None:
    overrides = {}
    if source == "override":
        overrides["dedup_domain"] = value
    elif source == "env":
        monkeypatch.setenv("FLOWMESH_DEDUP_DOMAIN", value)
    else:
        write_config(Path("flowmesh.toml"), f'dedup_domain = "{value}"\n')
    domain = load_settings(**overrides).dedup_domain
    assert domain is expected


@pytest.mark.parametrize("value", ["planet", "Tenant", "org", ""])
def test_dedup_domain_rejects_other_values(value: str) -> None:
    with pytest.raises(ConfigError, match="dedup_domain"):
        load_settings(dedup_domain=value)


@pytest.mark.parametrize("prefix", ["fm", "{fm}", "team-a.prod_1", "x", "a" * 64])
def test_key_prefix_accepts(prefix: str) -> None:
    assert load_settings(key_prefix=prefix).key_prefix == prefix


@pytest.mark.parametrize("prefix", ["", "a" * 65, "fm:x", "fm x", "fm*", "fm/x", "fm\n", "préfixe"])
def test_key_prefix_rejects(prefix: str) -> None:
    with pytest.raises(ConfigError, match=r"key_prefix: .*1-64 letters"):
        load_settings(key_prefix=prefix)


def test_environment_values_are_coerced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWMESH_MAX_INLINE_BYTES", "4096")
    monkeypatch.setenv("FLOWMESH_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    settings = load_settings()
    assert settings.max_inline_bytes == 4096
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.key_prefix = "other"  # type: ignore[misc]


def test_settings_reject_unknown_keys_when_built_directly() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Settings(redis_ulr="redis://x")  # type: ignore[call-arg]


def test_loading_reads_the_environment_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().key_prefix == "fm"
    monkeypatch.setenv("FLOWMESH_KEY_PREFIX", "later")
    assert load_settings().key_prefix == "later"
