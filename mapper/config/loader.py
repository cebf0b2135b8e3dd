"""Load configs: packaged defaults, then user YAML files, then dotted overrides; save the resolved one."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mapper.config.models import ConfigError, MapperConfig
from mapper.store.atomic import atomic_write_text

DEFAULT_FILES = ("defaults.yaml", "sources.yaml")


def _read_yaml(path: Path | str, text: str | None = None) -> dict[str, Any]:
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


def default_config_dict() -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in DEFAULT_FILES:
        text = resources.files("mapper.configs").joinpath(name).read_text(encoding="utf-8")
        data = deep_merge(data, _read_yaml(f"<packaged {name}>", text))
    return data


def load_config(paths: list[Path] | tuple[Path, ...] = (), overrides: dict[str, Any] | None = None) -> MapperConfig:
    """Defaults < each YAML file in order < overrides ({"world.seed": 3})."""
    data = default_config_dict()
    for p in paths:
        data = deep_merge(data, _read_yaml(p))
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    try:
        return MapperConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(e, paths)) from None


def describe_validation_error(err: ValidationError, paths=()) -> str:
    where = f" (from {', '.join(map(str, paths))})" if paths else ""
    lines = [f"invalid config{where}:"]
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"] if not str(p).startswith("function-after"))
        if item["type"] == "extra_forbidden":
            lines.append(f"  unknown key '{loc}': remove it or check its spelling")
        else:
            lines.append(f"  {loc}: {item['msg']}")
    return "\n".join(lines)


def resolved_config_yaml(config: MapperConfig) -> str:
    """The resolved config as YAML. Tokens are never in it: configs hold variable names only."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def save_resolved_config(config: MapperConfig, path: Path) -> None:
    atomic_write_text(path, resolved_config_yaml(config))
