"""Imagery source kinds register themselves: a config class beside its source, found by the config's union."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from mapper.config import ConfigError, load_config
from mapper.config import models as config_models
from mapper.config.loader import resolved_config_yaml
from mapper.config.models import SourceConfig, register_source
from mapper.imagery.sources import open_source
from mapper.imagery.tiles import TileResult

ROOT = Path(__file__).resolve().parents[1]


class FlatSource:
    """A tile source of one colour everywhere."""

    def __init__(self, name: str, value: int):
        self.name, self.value = name, value

    def get_tiles(self, keys):
        return {k: TileResult.image(np.full((256, 256, 3), self.value, np.uint8)) for k in keys}

    def close(self) -> None:
        pass


class FlatSourceConfig(SourceConfig):
    kind: Literal["flat"] = "flat"
    value: int = 128

    def open(self, name: str, config) -> FlatSource:
        return FlatSource(name, self.value)


@pytest.fixture
def flat_kind(monkeypatch):
    """Kind "flat" registered for this test only."""
    monkeypatch.setattr(config_models, "_source_kinds", dict(config_models.source_kinds()))
    register_source(FlatSourceConfig)


def test_a_new_kind_registers_its_config_class_and_parses_from_yaml(tmp_path, flat_kind):
    path = tmp_path / "flat.yaml"
    path.write_text("sources:\n  grey:\n    kind: flat\n    value: 77\nsource_sets:\n  both: [demo-a, grey]\n")
    config = load_config([path])
    assert isinstance(config.sources["grey"], FlatSourceConfig) and config.sources["grey"].value == 77
    assert type(config.sources["demo-a"]).__name__ == "WorldSourceConfig"  # the installed kinds are still there
    source = open_source("grey", config)
    assert source.get_tiles([(16, 1, 2)])[(16, 1, 2)].rgb[0, 0, 0] == 77
    saved = tmp_path / "resolved.yaml"
    saved.write_text(resolved_config_yaml(config))
    assert "value: 77" in saved.read_text() and load_config([saved]) == config

    path.write_text("sources:\n  grey:\n    kind: flat\n    valu: 77\n")
    with pytest.raises(ConfigError, match=r"unknown key 'sources.grey.flat.valu'"):
        load_config([path])


def test_a_config_class_without_a_kind_is_refused():
    class Nameless(SourceConfig):
        value: int = 1

    with pytest.raises(TypeError, match="needs a field kind"):
        register_source(Nameless)


def test_an_unknown_source_kind_names_the_installed_ones():
    with pytest.raises(ConfigError, match=r"sources.x: Input tag 'nope' found using 'kind'") as err:
        load_config(overrides={"sources.x": {"kind": "nope"}})
    assert all(f"'{kind}'" in str(err.value) for kind in ("xyz", "google_tiles", "world", "raster"))


def test_simulated_is_the_worlds_sources_only():
    config = load_config()
    assert config.sources["demo-a"].simulated and not config.sources["mapbox"].simulated
    assert config.simulated(["demo-a", "demo-b"])
    assert not config.simulated(["demo-a", "mapbox"])
    assert not config.simulated(["demo-a", "not-configured"])


def test_imagery_modules_import_no_circle():
    """Module-level imports inside mapper/imagery run one way (the tile types below the sources)."""
    graph = {}
    for path in (ROOT / "mapper" / "imagery").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = [n for n in tree.body if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("mapper.imagery.")]
        graph[path.stem] = {n.module.split(".")[2] for n in top}

    def reaches(start, goal, seen=()):
        return any(m == goal or (m not in seen and reaches(m, goal, (*seen, m))) for m in graph.get(start, ()))

    circles = sorted(m for m in graph if reaches(m, m))
    assert not circles, f"module-level import circle through mapper.imagery.{', '.join(circles)}"
