"""Configuration: pydantic models and YAML loading."""

from mapper.config.loader import load_config, save_resolved_config
from mapper.config.models import ConfigError, MapperConfig, MissingTokenError

__all__ = ["ConfigError", "MapperConfig", "MissingTokenError", "load_config", "save_resolved_config"]
