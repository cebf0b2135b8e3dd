"""What a selection strategy is, and the registry of them by name.

A strategy is a class in its own module of this package, registered with `@register`: it names the component
scores it ranks by (`needs`, given the table's sources: their pool columns must then be there, else SelectionError
names the stage that writes them, or the second source they need), takes the round's blocks from the picker
(`pick`) and says why each was taken (`reason`). The CLI's `--strategy` choices and the config's `al.strategy`
read `strategy_names()`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from mapper.al.picker import Pick, Picker
from mapper.al.pool import SOURCES
from mapper.al.scores import COMPONENTS, Scores
from mapper.config.models import SelectionSettings

_REGISTRY: dict[str, type[Strategy]] = {}


@dataclass
class Context:
    """One selection: the pool table in (iy, ix) order, its scores, the candidate rows and the picking state."""

    table: pd.DataFrame
    settings: SelectionSettings
    scores: Scores
    candidates: np.ndarray
    combined: np.ndarray  # the combined score (mapper.al.scores), reported by strategies that rank by it
    picker: Picker
    seed: int
    history: Mapping[str, int] = field(default_factory=dict)  # picks per part in the campaign's earlier rounds
    components: tuple[str, ...] = COMPONENTS  # those the combined score ranks by (combined_components)


class Strategy(ABC):
    """A way of choosing a round's blocks from the pool."""

    name: ClassVar[str]
    scores: ClassVar[tuple[str, ...]] = ()  # the component scores it ranks by
    reports_combined: ClassVar[bool] = False  # the output's combined_score column is its own

    def needs(self, settings: SelectionSettings, sources: tuple[str, ...] = SOURCES) -> tuple[str, ...]:
        """The component scores that must be computable for this strategy on a table of these sources."""
        return self.scores

    @abstractmethod
    def pick(self, ctx: Context, n: int) -> None:
        """Take up to n blocks with ctx.picker, in pick order."""

    @abstractmethod
    def reason(self, ctx: Context, pick: Pick) -> str:
        """A short line for the labeller: why this block."""


class TopScoreStrategy(Strategy):
    """The highest values of one component score first: the score of the strategy's own name."""

    def needs(self, settings: SelectionSettings, sources: tuple[str, ...] = SOURCES) -> tuple[str, ...]:
        return (self.name,)

    def pick(self, ctx: Context, n: int) -> None:
        ctx.picker.top_score(getattr(ctx.scores, self.name), n, self.name)


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make the strategy known by its name."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"two selection strategies are named {cls.name!r}; rename one")
    _REGISTRY[cls.name] = cls
    return cls


def strategy_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def get_strategy(name: str) -> Strategy:
    if name not in _REGISTRY:
        raise ValueError(f"unknown selection strategy {name!r}; known: {', '.join(strategy_names())}")
    return _REGISTRY[name]()
