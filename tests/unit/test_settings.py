"""Settings layering: packaged defaults < site file < FURUI_* environment."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import pytest

from correlator.errors import ConfigError
from correlator.settings import Settings, load_settings


def test_every_setting_is_documented_in_default_toml() -> None:
    text = resources.files("correlator.data").joinpath("default.toml").read_text()
    defaults = tomllib.loads(text)
    for section, field in Settings.model_fields.items():
        model = field.annotation
        assert section in defaults
        assert set(defaults[section]) == set(model.model_fields)  # type: ignore[union-attr]


def test_site_file_overrides_defaults_and_env_overrides_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site.toml"
    site.write_text('[network]\ninternal = ["192.0.2.0/24"]\n[store]\npath = "site.duckdb"\n')
    monkeypatch.setenv("FURUI_STORE__PATH", "/var/lib/furui/env.duckdb")
    loaded = load_settings(site)
    assert loaded.network.internal == ("192.0.2.0/24",)
    assert loaded.store.path == Path("/var/lib/furui/env.duckdb")
    assert loaded.correlation.window_seconds == 86400  # untouched default


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('[network]\ninternal = ["10.0.0.0/33"]\n', "network.internal"),
        ("[correlation]\nwindow_seconds = 0\n", "correlation.window_seconds"),
        ("[correlation]\nunknown = 1\n", "correlation.unknown"),
        ("[network\n", "site.toml"),
    ],
)
def test_invalid_site_values_are_config_errors(tmp_path: Path, content: str, needle: str) -> None:
    site = tmp_path / "site.toml"
    site.write_text(content)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_settings(site)


def test_missing_site_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such settings file"):
        load_settings(tmp_path / "absent.toml")
