"""The selection strategies of an active-learning round, one module each (see base.py for what a strategy is).

Every module of this package is imported here, so a strategy registers itself: adding one is one new module
plus its test.
"""

from __future__ import annotations

import importlib
import pkgutil

from mapper.al.strategies.base import Context, Strategy, get_strategy, register, strategy_names

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Context", "Strategy", "get_strategy", "register", "strategy_names"]
