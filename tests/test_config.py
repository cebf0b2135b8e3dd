import pytest

from mapper.config import ConfigError, MissingTokenError, load_config, save_resolved_config
from mapper.config.loader import _read_yaml


def test_defaults_load_and_sets_resolve():
    cfg = load_config()
    assert cfg.zoom == 16
    assert cfg.resolve_sources("demo") == ["demo-a", "demo-b"]
    assert cfg.resolve_sources("mapbox,google") == ["mapbox", "google"]
    with pytest.raises(ConfigError, match="unknown source 'bing'"):
        cfg.resolve_sources("bing")


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("mosaic:\n  compres: lzw\n")
    with pytest.raises(ConfigError, match=r"unknown key 'mosaic.compres'"):
        load_config([p])


def test_url_template_without_xyz(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("sources:\n  bad:\n    kind: xyz\n    url: https://example.com/tiles.png\n")
    with pytest.raises(ConfigError, match=r"must contain \{z\}, \{x\} and \{y\}"):
        load_config([p])


def test_missing_token_names_the_variable(monkeypatch):
    monkeypatch.delenv("MAPBOX_ACCESS_TOKEN", raising=False)
    cfg = load_config()
    with pytest.raises(MissingTokenError, match="MAPBOX_ACCESS_TOKEN"):
        cfg.sources["mapbox"].token()


def test_saved_config_round_trips_without_tokens(tmp_path, monkeypatch):
    monkeypatch.setenv("MAPBOX_ACCESS_TOKEN", "pk.SECRET-TOKEN-VALUE")
    cfg = load_config(overrides={"world.seed": 7})
    out = tmp_path / "resolved.yaml"
    save_resolved_config(cfg, out)
    text = out.read_text()
    assert "SECRET-TOKEN-VALUE" not in text
    assert "MAPBOX_ACCESS_TOKEN" in text
    again = load_config([out])
    assert again.world.seed == 7 and again == cfg


def test_bad_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("zoom: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        _read_yaml(p)
