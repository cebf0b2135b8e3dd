"""The crop-type model kinds, one module each (see base.py for what a kind is).

Every module of this package is imported here, so a kind registers itself: adding a crop-type model is one new
module plus its test.
"""

from __future__ import annotations

import importlib
import pkgutil

from mapper.croptype.kinds.base import CropTypeModel, get_kind, kind_names, load_model, register

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["CropTypeModel", "get_kind", "kind_names", "load_model", "register"]
