"""Exceptions that mean bad input from the user: shown as one line, not a traceback."""

from mapper.config.models import ConfigError
from mapper.grid.admin import UnknownProvinceError

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, UnknownProvinceError, FileNotFoundError, PermissionError)

try:  # the cache module is optional until it exists
    from mapper.imagery.mbtiles import CacheCorruptError

    USER_ERRORS += (CacheCorruptError,)
except ImportError:  # pragma: no cover
    pass
