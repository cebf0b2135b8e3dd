"""The one config loader: YAML files (or packaged text), merged in order, dotted overrides over them, validated
into a pydantic model; every failure a ConfigError naming the file, the key path and what is allowed.

Runs (`load_config`: packaged defaults < user files < overrides), the model registry
(mapper.models.registry), training recipes (IQA, segmentation: `load_settings`) and crop-type training
(`load_settings` of the command's options) all go through `load_yaml_config` / `validate_config`, so a typo
reads the same wherever it is made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from mapper.config.models import ConfigError, MapperConfig
from mapper.store.atomic import atomic_write_text

M = TypeVar("M", bound=BaseModel)

DEFAULT_FILES = ("defaults.yaml", "sources.yaml")


def read_yaml(path: Path | str, text: str | None = None) -> dict[str, Any]:
    """The mapping in YAML file `path` (or in `text`, `path` then only names it in messages); {} when empty."""
    try:
        data = yaml.safe_load(text if text is not None else Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {path}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def describe_validation_error(err: ValidationError, where: str = "", what: str = "config", prefix: str = "") -> str:
    """'invalid <what> (<where>):' then one line per problem: its key path (below `prefix`, the path of the
    validated part in its file) and what is wrong or allowed."""
    lines = [f"invalid {what}{f' ({where})' if where else ''}:"]
    for item in err.errors():
        keys = [str(p) for p in item["loc"] if not str(p).startswith("function-after")]
        loc = ".".join([prefix, *keys] if prefix else keys)
        if item["type"] == "extra_forbidden":
            lines.append(f"  unknown key '{loc}': remove it or check its spelling")
        else:
            lines.append(f"  {loc}: {item['msg']}" if loc else f"  {item['msg']}")
    return "\n".join(lines)


def validate_config(model: type[M], data: Any, where: str = "", what: str = "config", prefix: str = "") -> M:
    """`data` validated into `model`; a ConfigError (describe_validation_error) when it does not fit."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(e, where, what, prefix)) from None


def load_yaml_config(
    model: type[M],
    paths: Sequence[Path | str] = (),
    overrides: Mapping[str, Any] | None = None,
    *,
    base: dict[str, Any] | None = None,
    what: str = "config",
) -> M:
    """`base` (e.g. packaged defaults) < each YAML file in order < `overrides` ({"world.seed": 3}), validated
    into `model`. Messages name the files as '(from a.yaml, b.yaml)'."""
    data = dict(base or {})
    for p in paths:
        data = deep_merge(data, read_yaml(p))
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    where = f"from {', '.join(map(str, paths))}" if paths else ""
    return validate_config(model, data, where, what)


def load_settings(
    model: type[M], path: Path | str | None = None, *, what: str = "training settings", **overrides: Any
) -> M:
    """Settings of `model` from an optional YAML file, with the non-None `overrides` (command-line options)
    over it: the loader of training recipes and crop-type training."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return load_yaml_config(model, [path] if path is not None else [], given, what=what)


def default_config_dict() -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in DEFAULT_FILES:
        text = resources.files("mapper.configs").joinpath(name).read_text(encoding="utf-8")
        data = deep_merge(data, read_yaml(f"<packaged {name}>", text))
    return data


def load_config(paths: list[Path] | tuple[Path, ...] = (), overrides: dict[str, Any] | None = None) -> MapperConfig:
    """Defaults < each YAML file in order < overrides ({"world.seed": 3})."""
    return load_yaml_config(MapperConfig, paths, overrides, base=default_config_dict())


def resolved_config_yaml(config: MapperConfig) -> str:
    """The resolved config as YAML. Tokens are never in it: configs hold variable names only."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def save_resolved_config(config: MapperConfig, path: Path) -> None:
    atomic_write_text(path, resolved_config_yaml(config))
