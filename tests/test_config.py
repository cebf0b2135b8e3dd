import pytest
from click.testing import CliRunner

from mapper.config import ConfigError, MissingTokenError, load_config, save_resolved_config
from mapper.config.loader import load_settings, read_yaml


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
        read_yaml(p)


# ---------------------------------------------------------------------------------------------- the one loader
# Every kind of config goes through mapper.config.loader: a typo is refused by name, in the same words.
TYPO = "  unknown key '{}': remove it or check its spelling"


def test_typo_in_a_run_config_names_file_and_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("run:\n  max_attemps: 2\n")
    with pytest.raises(ConfigError) as e:
        load_config([p])
    assert str(e.value) == f"invalid config (from {p}):\n" + TYPO.format("run.max_attemps")


def test_typo_in_the_model_registry_names_file_entry_and_key(tmp_path):
    from mapper.models.registry import load_model_registry

    p = tmp_path / "models.yaml"
    p.write_text("models:\n  m:\n    kind: iqa\n    input: {size: 64}\n    arch:\n      embedding_size: 8\n"
                 "      hidden_sizes: [8]\n      depths: [1]\n      layer_type: basic\n      hiden_act: relu\n")
    with pytest.raises(ConfigError) as e:
        load_model_registry(str(p))
    assert str(e.value) == f"invalid model registry entry 'm' (from {p}):\n" + TYPO.format("arch.hiden_act")


@pytest.mark.parametrize("loader", ["iqa", "seg"])
def test_typo_in_a_training_recipe_names_file_and_key(tmp_path, loader):
    from mapper.iqa.train import load_train_config
    from mapper.seg.train import load_seg_train_config

    load = {"iqa": load_train_config, "seg": load_seg_train_config}[loader]
    p = tmp_path / "recipe.yaml"
    p.write_text("seed: 1\naugment:\n  flip: false\n")
    with pytest.raises(ConfigError) as e:
        load(p)
    assert str(e.value) == f"invalid training settings (from {p}):\n" + TYPO.format("augment.flip")
    p.write_text("seed: 1\nlr: -1\n")
    with pytest.raises(ConfigError, match=r"\n  lr: Input should be greater than 0$"):
        load(p)
    with pytest.raises(ConfigError, match="config file not found"):
        load(tmp_path / "none.yaml")


def test_recipe_overrides_win_and_none_means_unset(tmp_path):
    from mapper.seg.train import SegTrainConfig, load_seg_train_config

    p = tmp_path / "recipe.yaml"
    p.write_text("steps: 30\nlr: 0.001\n")
    cfg = load_seg_train_config(p, steps=None, lr=0.002, seed=None)
    assert (cfg.steps, cfg.lr, cfg.seed) == (30, 0.002, 0)
    assert load_seg_train_config() == SegTrainConfig()


def test_crop_training_settings_are_strict():
    from mapper.croptype.train import CropTrainConfig

    assert load_settings(CropTrainConfig, width=32, device=None) == CropTrainConfig(width=32)
    with pytest.raises(ConfigError) as e:
        load_settings(CropTrainConfig, what="crop-type training settings", widht=32)
    assert str(e.value) == "invalid crop-type training settings:\n" + TYPO.format("widht")
    with pytest.raises(ConfigError, match=r"\n  epochs: Input should be greater than or equal to 1$"):
        load_settings(CropTrainConfig, epochs=0)


def test_packaged_recipes_keep_their_meaning():
    """The shipped recipes load, and every key in them is one the settings know."""
    from importlib import resources

    from mapper.iqa.train import IQATrainConfig, load_train_config
    from mapper.seg.train import SegTrainConfig, load_seg_train_config

    root = resources.files("mapper.configs")
    for name, load, cls in [("train_iqa_default.yaml", load_train_config, IQATrainConfig),
                            ("train_seg_default.yaml", load_seg_train_config, SegTrainConfig),
                            ("train_seg_finetune.yaml", load_seg_train_config, SegTrainConfig)]:  # fmt: skip
        raw = read_yaml(name, root.joinpath(name).read_text(encoding="utf-8"))
        cfg = load(str(root.joinpath(name)))
        assert isinstance(cfg, cls) and set(raw) <= set(cls.model_fields)


def test_cli_refuses_a_typo_in_a_recipe_in_one_line(tmp_path):
    from mapper.cli import cli

    p = tmp_path / "recipe.yaml"
    p.write_text("epoch: 3\n")
    result = CliRunner().invoke(cli, ["train", "iqa", "--labels", str(tmp_path), "--out", str(tmp_path / "o"),
                                      "--config", str(p)])  # fmt: skip
    assert result.exit_code == 2
    assert "unknown key 'epoch': remove it or check its spelling" in result.output
